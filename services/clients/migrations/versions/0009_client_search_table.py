"""Search a narrow table of its own: `client_search` (id, created_at, status, search), kept by triggers.

A common term's exact count rechecks its LIKE on almost every page that holds the search text (the trigram index
only narrows the candidates). On the wide `clients` row (238 MB at a million) that was the search tail; this table
holds only what a search filters, counts and orders by, about 40% of the size (98 against 238 MB at a million), so
a count reads 40% of the pages. Searches move here; the code no longer reads `clients.search`.

The generated column `clients.search` stays, without its trigram index (the new code never reads it, and the index
was the cost of keeping it): during a rolling upgrade a replica still on the old code searches with a sequential scan,
slower but right, instead of failing on a missing column. A later migration drops it, once no such replica is left.

Never out of step with `clients`: statement-level triggers (one run per statement, so a COPY of 50,000 rows is one
INSERT … SELECT here) write it in the same transaction as the change, for INSERT, UPDATE (an update that changes
none of its columns writes nothing), DELETE and TRUNCATE. `status` says live or archived (the clients table's check
ties status 'archived' to `archived_at`), so a search never needs the wide row but for the page's 20 rows.
Indexes: trigram over live and, apart, over archived clients (each search reads only its own), and live newest
first, so a common term's page walks the newest rows until it has 20.

At a million clients the upgrade takes 12-21 s (copy, three index builds; the downgrade 19 s) on the shared 2-core
machine; writes to clients wait for it, reads go on. A bulk COPY costs PostgreSQL about
1.2x the CPU it did (the search table's rows and indexes against the wide table's one trigram index; bench/README.md).

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The search text: lower(name), newline, lower(company). A term may not contain control characters, so a match
# cannot span the newline. The same text the generated column of 0002 held.
SEARCH_TEXT = "lower(name) || E'\\n' || lower(coalesce(company, ''))"
COLUMNS = "id, created_at, status, search"
ROWS = f"id, created_at, status, {SEARCH_TEXT}"

SYNC_CLIENT_SEARCH = f"""
CREATE FUNCTION clients.sync_client_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO clients.client_search ({COLUMNS}) SELECT {ROWS} FROM new_rows;
    ELSIF TG_OP = 'UPDATE' THEN
        DELETE FROM clients.client_search WHERE id IN (SELECT id FROM old_rows EXCEPT SELECT id FROM new_rows);
        INSERT INTO clients.client_search AS s ({COLUMNS}) SELECT {ROWS} FROM new_rows
        ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, status = excluded.status,
            search = excluded.search
        WHERE (s.created_at, s.status, s.search) IS DISTINCT FROM (excluded.created_at, excluded.status,
            excluded.search);
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM clients.client_search s USING old_rows o WHERE s.id = o.id;
    ELSE
        TRUNCATE clients.client_search;
    END IF;
    RETURN NULL;
END $$
"""  # noqa: S608 (constants only)

TRIGGERS = {
    "insert": "AFTER INSERT ON clients.clients REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT",
    "update": "AFTER UPDATE ON clients.clients REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT",
    "delete": "AFTER DELETE ON clients.clients REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT",
    "truncate": "AFTER TRUNCATE ON clients.clients FOR EACH STATEMENT",
}


def upgrade() -> None:
    op.execute(
        "CREATE TABLE clients.client_search (id uuid NOT NULL, created_at timestamptz NOT NULL, status text NOT NULL,"
        " search text NOT NULL, CONSTRAINT pk_client_search PRIMARY KEY (id))"
    )
    # The triggers first: creating them locks out writes to clients until this transaction commits, so no change
    # falls between the copy below and the triggers.
    op.execute(SYNC_CLIENT_SEARCH)
    for event, when in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER sync_client_search_{event} {when} EXECUTE FUNCTION clients.sync_client_search()")
    op.execute(f"INSERT INTO clients.client_search ({COLUMNS}) SELECT {ROWS} FROM clients.clients")  # noqa: S608
    op.execute(
        "CREATE INDEX ix_client_search_live_trgm ON clients.client_search USING gin (search gin_trgm_ops) "
        "WHERE status <> 'archived'"
    )
    op.execute(
        "CREATE INDEX ix_client_search_archived_trgm ON clients.client_search USING gin (search gin_trgm_ops) "
        "WHERE status = 'archived'"
    )
    op.execute(
        "CREATE INDEX ix_client_search_live_newest ON clients.client_search (created_at DESC, id DESC) "
        "WHERE status <> 'archived'"
    )
    op.execute("ANALYZE clients.client_search")  # the planner's statistics now, not at autovacuum's next round
    # The old column's index: no reader left on the new code (the column stays for old replicas, see above).
    op.execute("DROP INDEX clients.ix_clients_live_search_trgm")


def downgrade() -> None:
    op.execute(
        "CREATE INDEX ix_clients_live_search_trgm ON clients.clients USING gin (search gin_trgm_ops) "
        "WHERE archived_at IS NULL"
    )
    op.execute("DROP FUNCTION clients.sync_client_search() CASCADE")  # and its triggers
    op.execute("DROP TABLE clients.client_search")
