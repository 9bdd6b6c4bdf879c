"""A task may carry the key of what made it (`origin_key`), unique per client and creator: a create that names a
key its creator already used in that client answers the task made then instead of a second one. The vault's
rotation work on leave uses it (`leaver:<userId>:<credentialId>:<lastRevealedAt>`), so a redelivered event adds
nothing. Per creator, so no other caller can take a key first and hide a rotation task.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("origin_key", sa.Text(), nullable=True), schema="clients")
    op.create_unique_constraint(
        op.f("uq_tasks_client_id_created_by_user_id_origin_key"),
        "tasks",
        ["client_id", "created_by_user_id", "origin_key"],
        schema="clients",
    )


def downgrade() -> None:
    op.drop_column("tasks", "origin_key", schema="clients")
