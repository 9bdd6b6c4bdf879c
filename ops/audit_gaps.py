"""What `clientvault audit verify` compares between the producers' outboxes and the audit log: events a producer
sent that the log lacks, and log entries no producer sent.

This reads two services' schemas (`vault.outbox` and `audit.events`/`audit.dead_letters`) in one query, which
no service may do: a service reads only its own schema. The operator layer may, with the operator's database
role; with a role that cannot read the outbox the comparison is skipped and `verify` says so.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import text

from clientvault.db import Database
from services.vault.admin import OUTBOX_RETENTION

# Sent more than a minute ago (time enough to be consumed), and neither an entry nor a dead letter. The vault's
# outbox keeps sent events OUTBOX_RETENTION, so that is how far back the comparison reaches.
UNRECORDED = text(
    """
SELECT o.event_id, o.sent_at AS at FROM vault.outbox o
WHERE o.sent_at < :sent_before
  AND NOT EXISTS (SELECT 1 FROM audit.events e WHERE e.event_id = o.event_id)
  AND NOT EXISTS (SELECT 1 FROM audit.dead_letters d WHERE d.msg_id = o.event_id::text)
ORDER BY o.sent_at
"""
)
# Entries of the outbox's retention (less a margin for clocks) whose event the outbox never held: chained without
# being produced (an injected row, or an event made up by whoever held a producer's key and NATS password).
UNSENT = text(
    """
SELECT e.event_id, e.occurred_at AS at FROM audit.events e
WHERE e.occurred_at > :occurred_after
  AND NOT EXISTS (SELECT 1 FROM vault.outbox o WHERE o.event_id = e.event_id)
ORDER BY e.seq
"""
)
READABLE = text(
    "SELECT CASE WHEN to_regclass('vault.outbox') IS NULL THEN false "
    "ELSE has_table_privilege('vault.outbox', 'SELECT') END"
)
CLOCK_MARGIN = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Gap:
    event_id: UUID
    at: datetime  # when it was sent (unrecorded) or occurred (unsent)


@dataclass(frozen=True, slots=True)
class Gaps:
    unrecorded: list[Gap]  # sent by the vault, not in the log, oldest first
    unsent: list[Gap]  # in the log, never in the vault's outbox, in chain order
    compared: bool  # False: this database role may not read the vault's outbox


async def gaps(database_url: str, settle: timedelta = timedelta(minutes=1)) -> Gaps:
    """Events the vault sent more than `settle` ago that the audit log lacks, and recent entries it never sent."""
    async with Database(database_url, pool_size=1) as db, db.read() as conn:
        if not (await conn.execute(READABLE)).scalar_one():
            return Gaps([], [], compared=False)
        now = datetime.now(UTC)
        unrecorded = await conn.execute(UNRECORDED, {"sent_before": now - settle})
        unsent = await conn.execute(UNSENT, {"occurred_after": now - OUTBOX_RETENTION + CLOCK_MARGIN})
        return Gaps(
            [Gap(row.event_id, row.at) for row in unrecorded],
            [Gap(row.event_id, row.at) for row in unsent],
            compared=True,
        )
