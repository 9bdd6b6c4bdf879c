"""Create clients (with trigram search and live counts) and tasks in schema "clients".

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

COUNT_LIVE_CLIENTS = """
CREATE FUNCTION clients.count_live_clients() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Net change of live (not archived) clients per status for the whole statement; rows whose status
    -- did not change cancel out, so a rename writes nothing here.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO clients.client_counts AS c (status, live)
        SELECT status, count(*) FROM new_rows WHERE archived_at IS NULL GROUP BY status
        ON CONFLICT (status) DO UPDATE SET live = c.live + excluded.live;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO clients.client_counts AS c (status, live)
        SELECT status, -count(*) FROM old_rows WHERE archived_at IS NULL GROUP BY status
        ON CONFLICT (status) DO UPDATE SET live = c.live + excluded.live;
    ELSE
        INSERT INTO clients.client_counts AS c (status, live)
        SELECT status, sum(delta) FROM (
            SELECT status, -1 AS delta FROM old_rows WHERE archived_at IS NULL
            UNION ALL
            SELECT status, 1 AS delta FROM new_rows WHERE archived_at IS NULL
        ) AS changes GROUP BY status HAVING sum(delta) <> 0
        ON CONFLICT (status) DO UPDATE SET live = c.live + excluded.live;
    END IF;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "clients",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("company", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("owner_user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status in ('lead', 'active', 'inactive', 'archived')", name=op.f("ck_clients_status")),
        sa.CheckConstraint("(status = 'archived') = (archived_at is not null)", name=op.f("ck_clients_archived")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
        schema="clients",
    )
    op.execute(
        "CREATE INDEX ix_clients_live_newest ON clients.clients (created_at DESC, id DESC) WHERE archived_at IS NULL"
    )
    op.execute("CREATE INDEX ix_clients_name_trgm ON clients.clients USING gin (name gin_trgm_ops)")
    op.execute("CREATE INDEX ix_clients_company_trgm ON clients.clients USING gin (company gin_trgm_ops)")
    op.create_table(
        "client_counts",
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("live", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("status", name=op.f("pk_client_counts")),
        schema="clients",
    )
    op.execute(COUNT_LIVE_CLIENTS)
    for event, tables in (
        ("INSERT", "NEW TABLE AS new_rows"),
        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        ("DELETE", "OLD TABLE AS old_rows"),
    ):
        op.execute(
            f"CREATE TRIGGER count_live_clients_{event.lower()} AFTER {event} ON clients.clients "
            f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION clients.count_live_clients()"
        )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("priority", sa.Text(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("assignee_user_id", sa.Uuid(), nullable=True),
        sa.Column("created_by_user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status in ('todo', 'in_progress', 'done')", name=op.f("ck_tasks_status")),
        sa.CheckConstraint("priority in ('low', 'medium', 'high')", name=op.f("ck_tasks_priority")),
        sa.ForeignKeyConstraint(["client_id"], ["clients.clients.id"], name=op.f("fk_tasks_client_id_clients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        schema="clients",
    )
    op.create_index(
        op.f("ix_tasks_client_id_created_at_id"), "tasks", ["client_id", "created_at", "id"], schema="clients"
    )


def downgrade() -> None:
    op.drop_table("tasks", schema="clients")
    op.execute("DROP TABLE clients.clients")
    op.execute("DROP FUNCTION clients.count_live_clients()")
    op.drop_table("client_counts", schema="clients")
