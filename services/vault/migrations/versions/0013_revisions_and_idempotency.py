"""Safe concurrent edits: a revision on credentials (their ETag; an update with If-Match checks and sets it in one
UPDATE; a reveal leaves it), and the idempotency keys of creates (per user, kept 24 hours, with the first reply).

Revision ID: 0013
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "credentials", sa.Column("revision", sa.BigInteger(), server_default="1", nullable=False), schema="vault"
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_idempotency_keys")),
        schema="vault",
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys", schema="vault")
    op.drop_column("credentials", "revision", schema="vault")
