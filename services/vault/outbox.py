"""The outbox relay: publishes committed audit events from `vault.outbox` to NATS JetStream.

Stream `AUDIT` (file storage, subjects `audit.>`); each event goes to `audit.vault.<action>` as a
serialized `clientvault.v1.AuditEvent` with `Nats-Msg-Id` = event id. A batch of unsent rows is locked
(`FOR UPDATE SKIP LOCKED`, so replicas share the work), published, and marked sent only after JetStream
acknowledged every message; on any failure the transaction rolls back and the rows stay unsent. A row
published but not marked (a crash between the ack and the commit) is published again with the same
Nats-Msg-Id: JetStream drops it within the stream's duplicate window, and the audit service stores each
event id once anyway.

The relay is woken in-process right after an operation commits, and sweeps every
`CLIENTVAULT_OUTBOX_SWEEP_S` for rows of crashed or other replicas. (No LISTEN/NOTIFY: a NOTIFY in the
operation's transaction takes a database-wide lock at commit that serializes committing transactions and
so defeats group commit on the reveal path.) While NATS is down it retries with exponential backoff.
"""

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NoStreamResponseError, NotFoundError

from clientvault.convert import timestamp
from clientvault.db import Database
from clientvault.errors import Unavailable
from clientvault.logging import get_logger, log_nats_error
from clientvault.nats_access import AUDIT_STREAM, BOOTSTRAP_HINT, connect
from clientvault.v1 import events_pb2 as pb
from services.vault import store

log = get_logger(__name__)

STREAM = AUDIT_STREAM
SUBJECTS = ["audit.>"]
DUPLICATE_WINDOW_S = 3600.0
PUBLISH_TIMEOUT_S = 3.0
MAX_BACKOFF_S = 5.0
ACTIONS = {
    "credential_create": pb.AUDIT_ACTION_CREDENTIAL_CREATE,
    "credential_reveal": pb.AUDIT_ACTION_CREDENTIAL_REVEAL,
    "credential_update": pb.AUDIT_ACTION_CREDENTIAL_UPDATE,
    "credential_delete": pb.AUDIT_ACTION_CREDENTIAL_DELETE,
}


def subject_of(action: str) -> str:
    return f"audit.vault.{action}"


def event_of(row: Any) -> pb.AuditEvent:
    return pb.AuditEvent(
        event_id=str(row.id),
        action=ACTIONS[row.action],
        occurred_at=timestamp(row.occurred_at),
        actor=pb.Actor(user_id=str(row.actor_user_id), email=row.actor_email, full_name=row.actor_full_name),
        credential_id=str(row.credential_id),
        credential_label=row.credential_label,
        client_id=str(row.client_id),
        ip=row.ip,
        user_agent=row.user_agent,
        request_id=row.request_id,
    )


async def ensure_stream(nc: NATS, replicas: int = 1) -> None:
    """Creates the stream unless it exists: the operator's start-up step (clientvault/runtime/jetstream.py).
    The relay and the consumer only use it: their NATS users may not create, change or look up a stream."""
    js = nc.jetstream()
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=STREAM,
                subjects=SUBJECTS,
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_S,
                num_replicas=replicas,
            )
        )
        log.info("outbox.stream_created", stream=STREAM, replicas=replicas)


class Relay:
    def __init__(self, db: Database, nats_url: str, *, batch: int, sweep_s: float) -> None:
        self._db = db
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
        delay = 0.2
        while True:
            try:
                while await self.relay_batch() == self._batch:
                    pass
                delay = 0.2
            except NoStreamResponseError:  # nothing stores audit.vault.*: the operator has not created the stream
                log.error("outbox.stream_missing", stream=STREAM, fix=BOOTSTRAP_HINT, retry_in_s=delay)
            except (OSError, NatsError, TimeoutError, Unavailable) as error:
                log.warning("outbox.unpublished", error=type(error).__name__, retry_in_s=delay)
            except Exception:  # logged with its traceback: the relay must outlive any one failure
                log.exception("outbox.failed", retry_in_s=delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._sweep_s)
                self._wake.clear()
                continue
            await self._disconnect()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _connection(self) -> NATS:
        if self._nc is None or self._nc.is_closed or not self._nc.is_connected:
            await self._disconnect()
            self._nc = await connect(self._nats_url, allow_reconnect=False, connect_timeout=2, error_cb=log_nats_error)
            log.info("outbox.connected")
        return self._nc

    async def _disconnect(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(OSError, NatsError, TimeoutError):
                await nc.close()

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
                        subject_of(row.action),
                        event_of(row).SerializeToString(),
                        timeout=PUBLISH_TIMEOUT_S,
                        headers={"Nats-Msg-Id": str(row.id)},
                    )
                    for row in rows
                )
            )
            await store.mark_sent(conn, [row.id for row in rows], datetime.now(UTC))
        self.published += len(rows)
        duplicates = sum(1 for ack in acks if ack.duplicate)
        log.debug("outbox.published", events=len(rows), duplicates=duplicates)
        return len(rows)

    async def purge_forever(self, keep: timedelta = timedelta(days=7), every_s: float = 3600.0) -> None:
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
