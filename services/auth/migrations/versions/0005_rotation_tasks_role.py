"""A service identity's role: `rotation_tasks`, the vault's account for rotation work on leave, which may call
exactly Clients/CreateTask (clientvault/policy.py). The operator issues it; the API never gives it.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PEOPLE = "'admin', 'manager', 'read_only'"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_users_role"), "users", schema="auth", type_="check")
    op.create_check_constraint(op.f("ck_users_role"), "users", f"role in ({PEOPLE}, 'rotation_tasks')", schema="auth")


def downgrade() -> None:
    op.execute("DELETE FROM auth.users WHERE role = 'rotation_tasks'")
    op.drop_constraint(op.f("ck_users_role"), "users", schema="auth", type_="check")
    op.create_check_constraint(op.f("ck_users_role"), "users", f"role in ({PEOPLE})", schema="auth")
