"""`secret_changed_at`: when a credential's secret last changed (a label edit moves `updated_at`, not this).

Rows written before it take their `updated_at`: the last time anything changed is the best bound we have (the
secret changed then or earlier), so an exposure report errs towards listing a credential, never towards
dropping one.

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
    op.add_column("credentials", sa.Column("secret_changed_at", sa.DateTime(timezone=True)), schema="vault")
    op.execute("UPDATE vault.credentials SET secret_changed_at = updated_at")
    op.alter_column("credentials", "secret_changed_at", nullable=False, schema="vault")


def downgrade() -> None:
    op.drop_column("credentials", "secret_changed_at", schema="vault")
