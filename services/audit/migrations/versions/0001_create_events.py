"""Create the hash-chained events and the dead letters in schema "audit", and the append-only role.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

WRITER = "clientvault_audit_writer"

# A role that may read and add audit rows, never change or remove one: what the audit service needs.
# Deployments grant it to the service's login role (deploy/README.md). Creating a role needs CREATEROLE;
# a migration role without it leaves that to an administrator instead of failing the migration.
CREATE_WRITER = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{WRITER}') THEN
        CREATE ROLE {WRITER} NOLOGIN;
    END IF;
    GRANT USAGE ON SCHEMA audit TO {WRITER};
    GRANT SELECT, INSERT ON audit.events, audit.dead_letters TO {WRITER};
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot create role {WRITER}: an administrator grants SELECT, INSERT on audit tables';
END $$
"""


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("user_email", sa.Text(), nullable=False),
        sa.Column("user_full_name", sa.Text(), nullable=False),
        sa.Column("credential_id", sa.Uuid(), nullable=False),
        sa.Column("credential_label", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("ip", sa.Text(), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.Column("user_id_ordinal", sa.BigInteger(), nullable=False),
        sa.Column("client_id_ordinal", sa.BigInteger(), nullable=False),
        sa.Column("credential_id_ordinal", sa.BigInteger(), nullable=False),
        sa.Column("action_ordinal", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
        schema="audit",
    )
    for dimension in ("user_id", "client_id", "credential_id", "action"):
        op.create_index(f"ix_events_{dimension}_ordinal", "events", [dimension, f"{dimension}_ordinal"], schema="audit")
    op.create_index("ix_events_occurred_at", "events", ["occurred_at"], schema="audit")
    op.create_table(
        "dead_letters",
        sa.Column("stream_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("msg_id", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("stream_seq", name=op.f("pk_dead_letters")),
        schema="audit",
    )
    op.execute(CREATE_WRITER)


def downgrade() -> None:
    op.drop_table("dead_letters", schema="audit")
    op.drop_table("events", schema="audit")
