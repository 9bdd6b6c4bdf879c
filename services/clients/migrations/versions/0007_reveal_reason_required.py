"""A client may require a reason for every reveal of its credentials (`revealReasonRequired`, off by default).

The vault reads it through the clients service (GetClient) and refuses a reveal without a reason with 428.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "clients",
        sa.Column("reveal_reason_required", sa.Boolean(), server_default=sa.false(), nullable=False),
        schema="clients",
    )


def downgrade() -> None:
    op.drop_column("clients", "reveal_reason_required", schema="clients")
