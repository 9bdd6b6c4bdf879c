"""Audit ingest as the relay does it: each batch of outbox rows goes to JetStream as one atomic batch, and a batch
that holds events JetStream has already stored (published, then the vault died before marking them sent) is
published again message by message, so each event is chained exactly once, in order, and the chain verifies."""

import time
import uuid
from datetime import UTC, datetime

import psycopg

from tests.system import System

WAIT_S = 60.0
COLUMNS = (
    "event_id, action, occurred_at, user_id, user_email, user_full_name, credential_id, credential_label, client_id, "
    "ip, user_agent, request_id"
)


def add_events(conn: psycopg.Connection, count: int, marker: str) -> list[uuid.UUID]:
    """`count` reveal events committed to the vault's outbox, as a reveal writes them."""
    ids = [uuid.uuid4() for _ in range(count)]
    with conn.cursor().copy(f"COPY vault.outbox ({COLUMNS}) FROM STDIN") as copy:
        for event_id in ids:
            copy.write_row([event_id, "credential_reveal", datetime.now(UTC), uuid.uuid4(), marker, "Ingest Test",
                            uuid.uuid4(), "ingest", uuid.uuid4(), "10.0.0.2", "test", "r"])  # fmt: skip
    conn.commit()
    return ids


def chained(conn: psycopg.Connection, marker: str) -> list[tuple[uuid.UUID, int]]:
    """(event id, seq) of the marked events in the chain, by seq."""
    rows = conn.execute("SELECT event_id, seq FROM audit.events WHERE user_email = %s ORDER BY seq", (marker,))
    found = [(row[0], row[1]) for row in rows]
    conn.commit()
    return found


def wait_until_chained(conn: psycopg.Connection, marker: str, count: int) -> list[tuple[uuid.UUID, int]]:
    deadline = time.monotonic() + WAIT_S
    while len(found := chained(conn, marker)) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} events chained after {WAIT_S:.0f}s"
        time.sleep(0.2)
    unsent = conn.execute("SELECT count(*) FROM vault.outbox WHERE user_email = %s AND sent_at IS NULL", (marker,))
    assert unsent.fetchone() == (0,)
    conn.commit()
    return found


def test_events_published_again_after_a_crash_are_chained_once_and_in_order(system: System) -> None:
    marker = f"ingest-{uuid.uuid4().hex[:8]}@example.com"
    with psycopg.connect(system.info()["database_url"]) as conn:
        first = add_events(conn, 1450, marker)  # more than a batch (CLIENTVAULT_OUTBOX_BATCH, 1000)
        assert [event_id for event_id, _ in wait_until_chained(conn, marker, 1450)] == first

        # The vault died after JetStream acknowledged these, before it marked them sent: they go out again, with
        # new events behind them in the same batches.
        conn.execute("UPDATE vault.outbox SET sent_at = NULL WHERE event_id = ANY(%s)", (first[-150:],))
        conn.commit()
        second = add_events(conn, 100, marker)
        found = wait_until_chained(conn, marker, 1550)

    assert [event_id for event_id, _ in found] == first + second  # each once, in the order they happened
    assert len({seq for _, seq in found}) == 1550
    refused = [line for line in system.data_dir.joinpath("logs", "vault.log").read_text().splitlines()
               if "outbox.batch_refused" in line]  # fmt: skip
    assert refused, "the batch with events already in the stream was not refused as a whole"
    # and only such a batch: every other one was stored atomically
    assert all("atomic publish batch contains duplicate message id" in line for line in refused), refused
    verified = system.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
