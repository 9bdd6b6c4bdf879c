"""Access requests and grants (per-client access, docs/access.md): one row per request; an approved one, or a
break-glass, is a grant (its id the grant's id) that gives what membership gives until `expires_at`, unless
revoked. `ended_at` is set once when its end is recorded (a revoke, or the sweep noticing the expiry: one
`access_grant_ended` event each). A user has at most one pending request per client.

Scoping reads active grants by (user_id, client_id) from the partial index over approved rows.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "client_id",
            sa.Uuid(),
            sa.ForeignKey("clients.clients.id", name="fk_access_requests_client_id_clients"),
            nullable=False,
        ),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ticket_ref", sa.Text(), nullable=True),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("break_glass", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by_user_id", sa.Uuid(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by_user_id", sa.Uuid(), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_requests")),
        sa.CheckConstraint("status in ('pending', 'approved', 'denied')", name=op.f("ck_access_requests_status")),
        sa.CheckConstraint("(status = 'approved') = (expires_at is not null)", name=op.f("ck_access_requests_granted")),
        sa.CheckConstraint("minutes > 0", name=op.f("ck_access_requests_minutes")),
        schema="clients",
    )
    op.create_index(
        "ix_access_requests_grants",
        "access_requests",
        ["user_id", "client_id", "expires_at"],
        schema="clients",
        postgresql_where=sa.text("status = 'approved' AND revoked_at IS NULL"),
    )
    op.create_index(
        "ix_access_requests_one_pending",
        "access_requests",
        ["client_id", "user_id"],
        unique=True,
        schema="clients",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_access_requests_unended",
        "access_requests",
        ["expires_at"],
        schema="clients",
        postgresql_where=sa.text("status = 'approved' AND ended_at IS NULL"),
    )
    op.create_index("ix_access_requests_user_newest", "access_requests", ["user_id", "created_at"], schema="clients")
    op.create_index("ix_access_requests_newest", "access_requests", ["created_at"], schema="clients")


def downgrade() -> None:
    op.drop_table("access_requests", schema="clients")
