"""Old versions of a secret: an update of the secret keeps the one it replaces (sealed as it was, under the
data key that sealed it: a foreign key to `client_keys`, like a credential's). A credential numbers its
current secret (`secret_version`) and remembers who set it (`secret_changed_by_user_id`; rows written before
this take `updated_by_user_id`, the last writer, which is the best we know).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "credentials", sa.Column("secret_version", sa.Integer(), nullable=False, server_default="1"), schema="vault"
    )
    op.alter_column("credentials", "secret_version", server_default=None, schema="vault")
    op.add_column("credentials", sa.Column("secret_changed_by_user_id", sa.Uuid()), schema="vault")
    op.execute("UPDATE vault.credentials SET secret_changed_by_user_id = updated_by_user_id")
    op.alter_column("credentials", "secret_changed_by_user_id", nullable=False, schema="vault")
    op.create_table(
        "credential_versions",
        sa.Column("credential_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("key_generation", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_user_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("credential_id", "version", name=op.f("pk_credential_versions")),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["vault.credentials.id"],
            name=op.f("fk_credential_versions_credential_id_credentials"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_id", "key_generation"],
            ["vault.client_keys.client_id", "vault.client_keys.generation"],
            name=op.f("fk_credential_versions_client_id_client_keys"),
        ),
        schema="vault",
    )
    op.create_index(
        op.f("ix_credential_versions_client_id_key_generation"),
        "credential_versions",
        ["client_id", "key_generation"],
        schema="vault",
    )


def downgrade() -> None:
    op.drop_table("credential_versions", schema="vault")
    op.drop_column("credentials", "secret_changed_by_user_id", schema="vault")
    op.drop_column("credentials", "secret_version", schema="vault")
