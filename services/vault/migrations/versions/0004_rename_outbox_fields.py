"""Outbox columns take the names the event has everywhere else (the proto, the audit chain): `id` becomes
`event_id`, `actor_user_id`, `actor_email`, `actor_full_name` become `user_id`, `user_email`, `user_full_name`.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RENAMES = {
    "id": "event_id",
    "actor_user_id": "user_id",
    "actor_email": "user_email",
    "actor_full_name": "user_full_name",
}


def upgrade() -> None:
    for old, new in RENAMES.items():
        op.alter_column("outbox", old, new_column_name=new, schema="vault")


def downgrade() -> None:
    for old, new in RENAMES.items():
        op.alter_column("outbox", new, new_column_name=old, schema="vault")
