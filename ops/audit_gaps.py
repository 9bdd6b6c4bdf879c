"""Events the vault sent that the audit log lacks, for `clientvault audit verify`.

This reads two services' schemas (`vault.outbox` and `audit.events`/`audit.dead_letters`) in one query, which
no service may do: a service reads only its own schema. The operator layer may, with the operator's database
role; with a role that cannot read the outbox the check is skipped and `verify` says so.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import text

from clientvault.db import Database

# Sent more than a minute ago (time enough to be consumed), and neither an entry nor a dead letter. The vault's
# outbox keeps sent events 7 days, so that is how far back the comparison reaches.
UNRECORDED = text(
    """
SELECT o.event_id, o.sent_at FROM vault.outbox o
WHERE o.sent_at < :sent_before
  AND NOT EXISTS (SELECT 1 FROM audit.events e WHERE e.event_id = o.event_id)
  AND NOT EXISTS (SELECT 1 FROM audit.dead_letters d WHERE d.msg_id = o.event_id::text)
ORDER BY o.sent_at
"""
)
READABLE = text(
    "SELECT CASE WHEN to_regclass('vault.outbox') IS NULL THEN false "
    "ELSE has_table_privilege('vault.outbox', 'SELECT') END"
)


@dataclass(frozen=True, slots=True)
class Unrecorded:
    event_id: UUID
    sent_at: datetime


async def unrecorded(database_url: str, settle: timedelta = timedelta(minutes=1)) -> list[Unrecorded] | None:
    """Events the vault sent more than `settle` ago that the audit log lacks, oldest first; None when this
    database role may not read the vault's outbox."""
    async with Database(database_url, pool_size=1) as db, db.read() as conn:
        if not (await conn.execute(READABLE)).scalar_one():
            return None
        rows = await conn.execute(UNRECORDED, {"sent_before": datetime.now(UTC) - settle})
        return [Unrecorded(row.event_id, row.sent_at) for row in rows]
