"""A credential's other sealed fields (its TOTP seed, its notes), each in a row of its own with its own data key
generation, so that key rotation and re-encryption treat them as they treat secrets; and `has_totp` on the
credential, so that its metadata says so without a join.

Revision ID: 0014
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credential_fields",
        sa.Column("credential_id", sa.Uuid(), nullable=False),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("key_generation", sa.Integer(), nullable=False),
        sa.CheckConstraint("field IN ('totp', 'notes')", name=op.f("ck_credential_fields_field")),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["vault.credentials.id"],
            name=op.f("fk_credential_fields_credential_id_credentials"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_id", "key_generation"],
            ["vault.client_keys.client_id", "vault.client_keys.generation"],
            name=op.f("fk_credential_fields_client_id_client_keys"),
        ),
        sa.PrimaryKeyConstraint("credential_id", "field", name=op.f("pk_credential_fields")),
        schema="vault",
    )
    op.create_index(
        op.f("ix_credential_fields_client_id_key_generation"),
        "credential_fields",
        ["client_id", "key_generation"],
        schema="vault",
    )
    op.add_column(
        "credentials",
        sa.Column("has_totp", sa.Boolean(), nullable=False, server_default=sa.false()),
        schema="vault",
    )


def downgrade() -> None:
    op.drop_column("credentials", "has_totp", schema="vault")
    op.drop_table("credential_fields", schema="vault")
