"""The outbox takes the kit's shape (clientvault/outbox.py), which every producer shares: an event may name a
subject user and a detail, and an id that names nothing is NULL.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OPTIONAL_IDS = ("user_id", "credential_id", "client_id")


def upgrade() -> None:
    for name in OPTIONAL_IDS:
        op.alter_column("outbox", name, nullable=True, schema="vault")
    op.add_column("outbox", sa.Column("target_user_id", sa.Uuid(), nullable=True), schema="vault")
    op.add_column(
        "outbox", sa.Column("target_user_email", sa.Text(), nullable=False, server_default=""), schema="vault"
    )
    op.add_column("outbox", sa.Column("detail", sa.Text(), nullable=False, server_default=""), schema="vault")


def downgrade() -> None:
    op.drop_column("outbox", "detail", schema="vault")
    op.drop_column("outbox", "target_user_email", schema="vault")
    op.drop_column("outbox", "target_user_id", schema="vault")
    for name in OPTIONAL_IDS:
        op.alter_column("outbox", name, nullable=False, schema="vault")
