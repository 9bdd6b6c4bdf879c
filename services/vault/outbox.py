"""The outbox relay: publishes committed audit events from `vault.outbox` to NATS JetStream.

The stream's contract is the kit's (clientvault/events.py): stream `AUDIT`, each event on
`audit.vault.<action>` as a serialized `clientvault.v1.AuditEvent`, signed with the vault's event key when it is
published (so rows written before an upgrade are signed too), with `Nats-Msg-Id` = event id.
A batch of unsent rows is locked (`FOR UPDATE SKIP LOCKED`, so replicas share the work), published, and
marked sent only after JetStream acknowledged every message; on any failure the transaction rolls back and
the rows stay unsent. A row published but not marked (a crash between the ack and the commit) is published
again with the same Nats-Msg-Id: JetStream drops it within the stream's duplicate window, and the audit
service stores each event id once anyway.

The relay is woken in-process right after an operation commits, and sweeps every
`CLIENTVAULT_OUTBOX_SWEEP_S` for rows of crashed or other replicas. (No LISTEN/NOTIFY: a NOTIFY in the
operation's transaction takes a database-wide lock at commit that serializes committing transactions and
so defeats group commit on the reveal path.) While NATS is down it retries with backoff
(clientvault/retrying.py).
"""

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client as NATS
from nats.js.errors import NoStreamResponseError

from clientvault import events, metrics, retrying, tracing
from clientvault.db import Database
from clientvault.errors import Unavailable
from clientvault.logging import get_logger
from clientvault.nats_access import BOOTSTRAP_HINT
from services.vault import store

log = get_logger(__name__)

PRODUCER = "vault"
PUBLISH_TIMEOUT_S = 3.0
# Sent events stay this long: `audit verify` compares the chain's recent entries with them (ops/audit_gaps.py).
RETENTION = timedelta(days=7)


class Relay:
    def __init__(self, db: Database, nats_url: str, signer: events.EventSigner, *, batch: int, sweep_s: float) -> None:
        self._db = db
        self._signer = signer
        self._nats_url = nats_url
        self._batch = batch
        self._sweep_s = sweep_s
        self._wake = asyncio.Event()
        self._nc: NATS | None = None
        self.published = 0

    def wake(self) -> None:
        """Called after an operation committed an event."""
        self._wake.set()

    async def run(self) -> None:
        await retrying.forever(
            self._relay_then_wait, outage="outbox.unpublished", failure="outbox.failed", reset=self._disconnect
        )

    async def _relay_then_wait(self) -> None:
        """Publishes every unsent event, then waits to be woken (or for the sweep)."""
        try:
            while await self.relay_batch() == self._batch:
                pass
        except NoStreamResponseError:  # nothing stores audit.vault.*: the operator has not created the stream
            log.error("outbox.stream_missing", stream=events.STREAM, fix=BOOTSTRAP_HINT)
            raise
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._sweep_s)
        self._wake.clear()

    async def _connection(self) -> NATS:
        if self._nc is None or self._nc.is_closed or not self._nc.is_connected:
            await self._disconnect()
            self._nc = await events.connect(self._nats_url)
            log.info("outbox.connected")
        return self._nc

    async def _disconnect(self) -> None:
        nc, self._nc = self._nc, None
        await events.disconnect(nc)

    async def relay_batch(self) -> int:
        """Publishes one batch of unsent events; the number of events it published."""
        async with self._db.begin() as conn:
            rows = await store.unsent_events(conn, self._batch)
            if not rows:
                return 0
            js = (await self._connection()).jetstream()
            acks = await asyncio.gather(
                *(
                    js.publish(
                        events.subject(PRODUCER, row.action),
                        self._signer.event(row).SerializeToString(),
                        timeout=PUBLISH_TIMEOUT_S,
                        headers={"Nats-Msg-Id": str(row.event_id), **tracing.headers(row.traceparent)},
                    )
                    for row in rows
                )
            )
            await store.mark_sent(conn, [row.event_id for row in rows], datetime.now(UTC))
        self.published += len(rows)
        metrics.OUTBOX_PUBLISHED.inc(len(rows))
        duplicates = sum(1 for ack in acks if ack.duplicate)
        log.debug("outbox.published", events=len(rows), duplicates=duplicates)
        return len(rows)

    async def purge_forever(self, keep: timedelta = RETENTION, every_s: float = 3600.0) -> None:
        """Deletes events sent long ago: JetStream and the audit service hold them from then on."""
        while True:
            await asyncio.sleep(every_s)
            try:
                async with self._db.begin() as conn:
                    await store.purge_sent(conn, datetime.now(UTC) - keep)
            except Unavailable:
                log.warning("outbox.purge_postponed")

    async def close(self) -> None:
        await self._disconnect()
