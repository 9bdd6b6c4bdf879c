"""Create KEK checks, client data keys, credentials, the audit outbox and rotation jobs in schema "vault".

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kek_checks",
        sa.Column("kek_version", sa.Text(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kek_version", name=op.f("pk_kek_checks")),
        schema="vault",
    )
    op.create_table(
        "client_keys",
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("kek_version", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "generation", name=op.f("pk_client_keys")),
        schema="vault",
    )
    op.create_index(op.f("ix_client_keys_kek_version"), "client_keys", ["kek_version"], schema="vault")
    op.create_table(
        "credentials",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("username", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("key_generation", sa.Integer(), nullable=False),
        sa.Column("created_by_user_id", sa.Uuid(), nullable=False),
        sa.Column("updated_by_user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_accessed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credentials")),
        schema="vault",
    )
    op.create_index(
        op.f("ix_credentials_client_id_key_generation"), "credentials", ["client_id", "key_generation"], schema="vault"
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_user_id", sa.Uuid(), nullable=False),
        sa.Column("actor_email", sa.Text(), nullable=False),
        sa.Column("actor_full_name", sa.Text(), nullable=False),
        sa.Column("credential_id", sa.Uuid(), nullable=False),
        sa.Column("credential_label", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("ip", sa.Text(), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        schema="vault",
    )
    op.create_index(
        "ix_outbox_unsent", "outbox", ["occurred_at"], schema="vault", postgresql_where=sa.text("sent_at IS NULL")
    )
    op.create_table(
        "rotations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kek_version", sa.Text(), nullable=False),
        sa.Column("reencrypt", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rotations")),
        schema="vault",
    )


def downgrade() -> None:
    op.drop_table("rotations", schema="vault")
    op.drop_table("outbox", schema="vault")
    op.drop_table("credentials", schema="vault")
    op.drop_table("client_keys", schema="vault")
    op.drop_table("kek_checks", schema="vault")
