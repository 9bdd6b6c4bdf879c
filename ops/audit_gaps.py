"""What `clientvault audit verify` compares between the producers' outboxes and the audit log: events a producer
sent that the log lacks, and log entries no producer sent.

The producers that publish through an outbox (`OUTBOX_PRODUCERS`: the vault's `vault.outbox`, auth's
`auth.outbox`) are compared; the audit service's own `audit_log_read` entries are left out of "entries no producer
sent": it appends them to the chain itself, with no outbox (services/audit/reads.py), and their signature, which
`verify` checks, is their proof.

This reads several services' schemas (the outboxes and `audit.events`/`audit.dead_letters`) in one query, which no
service may do: a service reads only its own schema. The operator layer may, with the operator's database role;
with a role that cannot read every outbox the comparison is skipped and `verify` says so.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import bindparam, text

from clientvault.db import Database
from clientvault.events import OUTBOX_PRODUCERS, PRODUCER_OF
from clientvault.outbox import RETENTION as OUTBOX_RETENTION

# Every outbox's events, one relation (the schema names are the producers': constants, never a caller's text).
SENT = " UNION ALL ".join(f"SELECT event_id, sent_at FROM {producer}.outbox" for producer in OUTBOX_PRODUCERS)  # noqa: S608
# Sent more than a minute ago (time enough to be consumed), and neither an entry nor a dead letter. The outboxes
# keep sent events OUTBOX_RETENTION, so that is how far back the comparison reaches.
UNRECORDED = text(
    f"""
SELECT o.event_id, o.sent_at AS at FROM ({SENT}) o
WHERE o.sent_at < :sent_before
  AND NOT EXISTS (SELECT 1 FROM audit.events e WHERE e.event_id = o.event_id)
  AND NOT EXISTS (SELECT 1 FROM audit.dead_letters d WHERE d.msg_id = o.event_id::text)
ORDER BY o.sent_at
"""  # noqa: S608
)
# Entries of the outboxes' retention (less a margin for clocks) whose event no outbox ever held: chained without
# being produced (an injected row, or an event made up by whoever held a producer's key and NATS password). The
# actions of producers without an outbox are left out.
UNSENT = text(
    f"""
SELECT e.event_id, e.occurred_at AS at FROM audit.events e
WHERE e.occurred_at > :occurred_after
  AND e.action NOT IN :direct_actions
  AND NOT EXISTS (SELECT 1 FROM ({SENT}) o WHERE o.event_id = e.event_id)
ORDER BY e.seq
"""  # noqa: S608
).bindparams(bindparam("direct_actions", expanding=True))
DIRECT_ACTIONS = sorted(action for action, producer in PRODUCER_OF.items() if producer not in OUTBOX_PRODUCERS)
READABLE = text(
    "SELECT "
    + " AND ".join(
        f"CASE WHEN to_regclass('{producer}.outbox') IS NULL THEN false "
        f"ELSE has_table_privilege('{producer}.outbox', 'SELECT') END"
        for producer in OUTBOX_PRODUCERS
    )
)
CLOCK_MARGIN = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Gap:
    event_id: UUID
    at: datetime  # when it was sent (unrecorded) or occurred (unsent)


@dataclass(frozen=True, slots=True)
class Gaps:
    unrecorded: list[Gap]  # sent by a producer, not in the log, oldest first
    unsent: list[Gap]  # in the log, never in a producer's outbox, in chain order
    compared: bool  # False: this database role may not read every producer's outbox


async def gaps(database_url: str, settle: timedelta = timedelta(minutes=1)) -> Gaps:
    """Events the producers sent more than `settle` ago that the audit log lacks, and recent entries none sent."""
    async with Database(database_url, pool_size=1) as db, db.read() as conn:
        if not (await conn.execute(READABLE)).scalar_one():
            return Gaps([], [], compared=False)
        now = datetime.now(UTC)
        unrecorded = await conn.execute(UNRECORDED, {"sent_before": now - settle})
        unsent = await conn.execute(
            UNSENT, {"occurred_after": now - OUTBOX_RETENTION + CLOCK_MARGIN, "direct_actions": DIRECT_ACTIONS}
        )
        return Gaps(
            [Gap(row.event_id, row.at) for row in unrecorded],
            [Gap(row.event_id, row.at) for row in unsent],
            compared=True,
        )
