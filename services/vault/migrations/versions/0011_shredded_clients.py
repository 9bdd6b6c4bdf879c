"""Clients whose data keys and sealed secrets were destroyed (crypto-shred): what the vault keeps of them is
this row, so that their credentials answer 410 Gone from then on, with the counts the erasure event names.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shredded_clients",
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shredded_by_user_id", sa.Uuid(), nullable=False),
        sa.Column("credentials", sa.Integer(), nullable=False),
        sa.Column("versions", sa.Integer(), nullable=False),
        sa.Column("data_keys", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_shredded_clients")),
        schema="vault",
    )


def downgrade() -> None:
    op.drop_table("shredded_clients", schema="vault")
