"""Client members: the staff assigned to a client (per-client access, CLIENTVAULT_CLIENT_SCOPING).

One row per (client, user); the primary key answers "is this user a member of this client" and the
(user_id, client_id) index serves a scoped list ("the clients of this user"). Every existing client's owner (its
creator) becomes its member, as a new client's creator does.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "client_members",
        sa.Column(
            "client_id",
            sa.Uuid(),
            sa.ForeignKey("clients.clients.id", name="fk_client_members_client_id_clients"),
            nullable=False,
        ),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_by_user_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "user_id", name="pk_client_members"),
        schema="clients",
    )
    op.create_index("ix_client_members_user_id_client_id", "client_members", ["user_id", "client_id"], schema="clients")
    op.execute(
        "INSERT INTO clients.client_members (client_id, user_id, added_at, added_by_user_id) "
        "SELECT id, owner_user_id, created_at, owner_user_id FROM clients.clients"
    )


def downgrade() -> None:
    op.drop_table("client_members", schema="clients")
