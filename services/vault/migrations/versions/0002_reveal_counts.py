"""Reveal counters for the per-user and per-IP reveal limits (services/vault/limits.py), UNLOGGED.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reveal_counts",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name=op.f("pk_reveal_counts")),
        schema="vault",
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("reveal_counts", schema="vault")
