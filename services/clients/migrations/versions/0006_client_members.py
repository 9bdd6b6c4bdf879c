"""Client members: the staff assigned to a client (per-client access, CLIENTVAULT_CLIENT_SCOPING), and the clients
service's outbox for the audit events of member changes and unarchiving (the kit's shape, clientvault/outbox.py).

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
    op.create_table(
        "outbox",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("user_email", sa.Text(), nullable=False),
        sa.Column("user_full_name", sa.Text(), nullable=False),
        sa.Column("credential_id", sa.Uuid(), nullable=True),
        sa.Column("credential_label", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=True),
        sa.Column("ip", sa.Text(), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("target_user_id", sa.Uuid(), nullable=True),
        sa.Column("target_user_email", sa.Text(), nullable=False, server_default=""),
        sa.Column("detail", sa.Text(), nullable=False, server_default=""),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("traceparent", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_outbox"),
        schema="clients",
    )
    op.create_index(
        "ix_outbox_unsent", "outbox", ["occurred_at"], schema="clients", postgresql_where=sa.text("sent_at IS NULL")
    )
    op.execute(
        "INSERT INTO clients.client_members (client_id, user_id, added_at, added_by_user_id) "
        "SELECT id, owner_user_id, created_at, owner_user_id FROM clients.clients"
    )


def downgrade() -> None:
    op.drop_table("outbox", schema="clients")
    op.drop_table("client_members", schema="clients")
