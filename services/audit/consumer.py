"""The consumer: JetStream stream `AUDIT` → the hash chain, each event stored exactly once.

A durable pull consumer (`audit`, explicit ack) fetches batches. Each batch is decoded, appended to the
chain in one transaction (duplicates by event id skipped, malformed messages parked in
`audit.dead_letters` with the reason and the raw bytes) and committed; only then is every message of the
batch acknowledged, duplicates and parked ones too. A crash between the commit and the acks redelivers
the batch, and the unique event id absorbs it. So the log holds each event once, and a malformed message
never blocks the ones behind it. While NATS or PostgreSQL is down it retries with exponential backoff.
"""

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from clientvault.convert import enum_name, from_timestamp
from clientvault.db import Database
from clientvault.errors import Unavailable
from clientvault.logging import get_logger, log_nats_error
from clientvault.nats_access import AUDIT_DURABLE, BOOTSTRAP_HINT, connect
from clientvault.v1 import events_pb2 as pb
from services.audit import chain
from services.vault.outbox import STREAM

log = get_logger(__name__)

DURABLE = AUDIT_DURABLE
FETCH_WAIT_S = 1.0
ACK_WAIT_S = 30.0
MAX_BACKOFF_S = 5.0


@dataclass(frozen=True, slots=True)
class Malformed:
    reason: str


def decode(data: bytes) -> chain.Entry | Malformed:
    """An AuditEvent's bytes → an entry, or why it cannot be one."""
    try:
        event = pb.AuditEvent.FromString(data)
    except DecodeError:
        return Malformed("not an AuditEvent (undecodable protobuf)")
    action = enum_name(pb.AuditAction.DESCRIPTOR, event.action)
    if action not in chain.ACTIONS:
        return Malformed(f"unknown action {event.action}")
    if not event.HasField("occurred_at"):
        return Malformed("no occurred_at")
    ids: dict[str, UUID] = {}
    for name, value in (
        ("event_id", event.event_id),
        ("user_id", event.actor.user_id),
        ("credential_id", event.credential_id),
        ("client_id", event.client_id),
    ):
        try:
            ids[name] = UUID(value)
        except ValueError:
            return Malformed(f"{name} is not a UUID")
    try:
        occurred_at = from_timestamp(event.occurred_at)
    except (ValueError, OverflowError):
        return Malformed("occurred_at is out of range")
    texts = (event.actor.email, event.actor.full_name, event.credential_label, event.ip, event.user_agent)
    if any("\x00" in text for text in (*texts, event.request_id)):
        return Malformed("a text field contains NUL")  # PostgreSQL text cannot hold it: it would fail the batch
    return chain.Entry(
        action=action,
        occurred_at=occurred_at,
        user_email=event.actor.email,
        user_full_name=event.actor.full_name,
        credential_label=event.credential_label,
        ip=event.ip,
        user_agent=event.user_agent,
        request_id=event.request_id,
        **ids,
    )


def dead_letter(msg: Msg, reason: str) -> dict[str, Any]:
    return {
        "stream_seq": msg.metadata.sequence.stream,
        "subject": msg.subject,
        "msg_id": (msg.headers or {}).get("Nats-Msg-Id", ""),
        "reason": reason,
        "data": msg.data,
    }


class Consumer:
    def __init__(self, db: Database, nats_url: str, *, batch: int) -> None:
        self._db = db
        self._nats_url = nats_url
        self._batch = batch
        self._nc: NATS | None = None
        self._sub: Any = None

    async def run(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.consume_batch()
                delay = 0.2
                continue
            except NotFoundError:  # no stream AUDIT: the operator creates it (its user may not)
                log.error("audit.stream_missing", stream=STREAM, fix=BOOTSTRAP_HINT, retry_in_s=delay)
            except (OSError, NatsError, TimeoutError, Unavailable) as error:
                log.warning("audit.consume_paused", error=type(error).__name__, retry_in_s=delay)
            except Exception:  # logged with its traceback: the consumer must outlive any one failure
                log.exception("audit.consume_failed", retry_in_s=delay)
            await self._disconnect()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _subscription(self) -> Any:
        if self._nc is None or self._nc.is_closed or not self._nc.is_connected:
            await self._disconnect()
            self._nc = await connect(self._nats_url, allow_reconnect=False, connect_timeout=2, error_cb=log_nats_error)
            self._sub = await self._nc.jetstream().pull_subscribe(
                "audit.>",
                durable=DURABLE,
                stream=STREAM,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=ACK_WAIT_S,
                    max_ack_pending=20 * self._batch,
                ),
            )
            log.info("audit.consuming", stream=STREAM, durable=DURABLE)
        return self._sub

    async def _disconnect(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(OSError, NatsError, TimeoutError):
                await nc.close()

    async def consume_batch(self) -> int:
        """Fetches, stores and acknowledges one batch; the number of messages it handled."""
        sub = await self._subscription()
        try:
            msgs: list[Msg] = await sub.fetch(self._batch, timeout=FETCH_WAIT_S)
        except (NatsTimeout, TimeoutError):  # nothing to consume within FETCH_WAIT_S
            return 0
        entries, parked = [], []
        for msg in msgs:
            decoded = decode(msg.data)
            if isinstance(decoded, Malformed):
                parked.append(dead_letter(msg, decoded.reason))
            else:
                entries.append(decoded)
        appended = await chain.append(self._db, entries, parked)
        # Only after the commit. Plain acks then one flush (a round trip for the batch, not one per message):
        # an ack lost on the way only causes a redelivery, which the unique event id absorbs.
        for msg in msgs:
            await msg.ack()
        if msgs and self._nc is not None:
            await self._nc.flush(timeout=5)
        for letter in parked:
            log.warning("audit.parked", stream_seq=letter["stream_seq"], reason=letter["reason"])
        log.debug("audit.stored", events=appended.stored, duplicates=appended.duplicates, parked=appended.parked)
        return len(msgs)

    async def close(self) -> None:
        await self._disconnect()
