"""A temporary password ends: the time after which it no longer signs in (users.TEMPORARY_PASSWORD_TTL after it
was set). Temporary passwords set before this migration get the same time from now.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("temporary_password_expires_at", sa.DateTime(timezone=True), nullable=True), schema="auth"
    )
    op.execute(
        "UPDATE auth.users SET temporary_password_expires_at = now() + interval '72 hours'"
        " WHERE password_change_required"
    )


def downgrade() -> None:
    op.drop_column("users", "temporary_password_expires_at", schema="auth")
