"""Safe concurrent edits: a revision on clients and tasks (their ETag; an update with If-Match checks and sets it
in one UPDATE), and the idempotency keys of creates (per user, kept 24 hours, with the first reply).

Revision ID: 0004
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("clients", "tasks"):
        op.add_column(
            table, sa.Column("revision", sa.BigInteger(), server_default="1", nullable=False), schema="clients"
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
        schema="clients",
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys", schema="clients")
    for table in ("clients", "tasks"):
        op.drop_column(table, "revision", schema="clients")
