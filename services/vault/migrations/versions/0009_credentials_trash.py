"""The trash: a deleted credential keeps its row (and its old versions) with `deleted_at` and who deleted it,
until the vault purges it CLIENTVAULT_TRASH_DAYS later. The partial index serves that purge and the trash list.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("credentials", sa.Column("deleted_at", sa.DateTime(timezone=True)), schema="vault")
    op.add_column("credentials", sa.Column("deleted_by_user_id", sa.Uuid()), schema="vault")
    op.create_index(
        "ix_credentials_deleted",
        "credentials",
        ["deleted_at"],
        schema="vault",
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.execute("DELETE FROM vault.credentials WHERE deleted_at IS NOT NULL")
    op.drop_index("ix_credentials_deleted", "credentials", schema="vault")
    op.drop_column("credentials", "deleted_by_user_id", schema="vault")
    op.drop_column("credentials", "deleted_at", schema="vault")
