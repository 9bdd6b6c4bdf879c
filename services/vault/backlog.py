"""How far behind the audit trail is, as the vault (its producer) sees it, for the vault's metrics: the events
still in `vault.outbox` (and the age of the oldest), and the events in stream AUDIT the audit service's durable
consumer has not acknowledged yet.

Measured here rather than by the audit service: an audit process that is stuck or frozen cannot report its own
lag, and that is when the number matters. Read every `WATCH_EVERY_S`, so a scrape costs no query.
"""

import asyncio
from datetime import UTC, datetime

from nats.aio.client import Client as NATS

from clientvault import events, metrics, outbox, retrying
from clientvault.db import Database
from clientvault.nats_access import AUDIT_DURABLE
from services.vault import store

WATCH_EVERY_S = 5.0


class Backlog:
    def __init__(self, db: Database, nats_url: str) -> None:
        self._db = db
        self._nats_url = nats_url
        self._nc: NATS | None = None

    async def watch_forever(self) -> None:
        await retrying.forever(
            self._measure_then_wait, outage="backlog.unmeasured", failure="backlog.failed", reset=self._disconnect
        )

    async def _measure_then_wait(self) -> None:
        await self.measure()
        await asyncio.sleep(WATCH_EVERY_S)

    async def measure(self) -> None:
        async with self._db.read() as conn:
            backlog = await outbox.unsent_backlog(conn, store.outbox)
        metrics.OUTBOX_UNSENT.set(backlog.unsent)
        age = 0.0 if backlog.oldest is None else (datetime.now(UTC) - backlog.oldest).total_seconds()
        metrics.OUTBOX_OLDEST_AGE.set(max(0.0, age))
        if self._nc is None or self._nc.is_closed or not self._nc.is_connected:
            await self._disconnect()
            self._nc = await events.connect(self._nats_url)
        consumer = await self._nc.jetstream().consumer_info(events.STREAM, AUDIT_DURABLE)
        metrics.AUDIT_CONSUMER_PENDING.set((consumer.num_pending or 0) + (consumer.num_ack_pending or 0))

    async def _disconnect(self) -> None:
        nc, self._nc = self._nc, None
        await events.disconnect(nc)

    async def close(self) -> None:
        await self._disconnect()
