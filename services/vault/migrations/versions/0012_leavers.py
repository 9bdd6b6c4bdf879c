"""Who revealed: the name of the user at their last reveal, kept with the reveal record, so that the rotation tasks
made when that user leaves can say "revealed by <name>" from the vault's own data (services/vault/leavers.py).
Records from before have none (''), and the task names the user by the email of the event instead.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reveals", sa.Column("user_full_name", sa.Text(), nullable=False, server_default=""), schema="vault")


def downgrade() -> None:
    op.drop_column("reveals", "user_full_name", schema="vault")
