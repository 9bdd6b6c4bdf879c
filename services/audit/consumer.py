"""The consumer: JetStream stream `AUDIT` → the hash chain, each event stored exactly once.

A durable pull consumer (`audit`, explicit ack) fetches batches. Each batch is decoded, appended to the
chain in one transaction (duplicates by event id skipped; malformed messages, and events whose signature does not
verify with a key the operator trusts for the producer their subject names, parked in `audit.dead_letters` with
the reason and the raw bytes) and committed; only then is every message of the
batch acknowledged, duplicates and parked ones too. A crash between the commit and the acks redelivers
the batch, and the unique event id absorbs it. So the log holds each event once, and a malformed message
never blocks the ones behind it. A message that is not a JetStream delivery of this consumer (something
published straight to its inbox) has no place in the stream to park or acknowledge: it is logged and dropped.
While NATS or PostgreSQL is down it retries with backoff
(clientvault/retrying.py). The stream and the event are the kit's contract (clientvault/events.py).
"""

import asyncio
import json
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

from clientvault import events, metrics, retrying, tracing
from clientvault.convert import enum_name, from_timestamp
from clientvault.db import Database
from clientvault.logging import get_logger
from clientvault.nats_access import AUDIT_DURABLE, BOOTSTRAP_HINT
from clientvault.v1 import events_pb2 as pb
from services.audit import chain

log = get_logger(__name__)

DURABLE = AUDIT_DURABLE
FETCH_WAIT_S = 1.0
ACK_WAIT_S = 30.0
CHECK_THREADS = 2  # the cores of a small machine; more threads only queue for the GIL between verifications
CHECK_IN_THREADS_FROM = 64  # messages; a smaller batch is checked on the event loop (a thread hop costs more)


@dataclass(frozen=True, slots=True)
class Malformed:
    reason: str


def decode(data: bytes) -> chain.Entry | Malformed:
    """An AuditEvent's bytes → an entry (its signature not checked yet), or why it cannot be one."""
    try:
        event = pb.AuditEvent.FromString(data)
    except DecodeError:
        return Malformed("not an AuditEvent (undecodable protobuf)")
    action = enum_name(pb.AuditAction.DESCRIPTOR, event.action)
    if action not in events.ACTIONS:
        return Malformed(f"unknown action {event.action}")
    if not event.HasField("occurred_at"):
        return Malformed("no occurred_at")
    try:
        event_id = UUID(event.event_id)
    except ValueError:
        return Malformed("event_id is not a UUID")
    ids: dict[str, UUID | None] = {}
    for name in ("user_id", "credential_id", "client_id", "target_user_id"):
        value = getattr(event, name)
        try:
            ids[name] = UUID(value) if value else None  # empty: the event has no such subject
        except ValueError:
            return Malformed(f"{name} is not a UUID")
    try:
        occurred_at = from_timestamp(event.occurred_at)
    except (ValueError, OverflowError):
        return Malformed("occurred_at is out of range")
    texts = (
        event.user_email,
        event.user_full_name,
        event.credential_label,
        event.ip,
        event.user_agent,
        event.target_user_email,
        event.detail,
    )
    if any("\x00" in text for text in (*texts, event.request_id, event.key_id)):
        return Malformed("a text field contains NUL")  # PostgreSQL text cannot hold it: it would fail the batch
    if event.detail and not _is_json_object(event.detail):
        return Malformed("detail is not a JSON object")
    return chain.Entry(
        action=action,
        occurred_at=occurred_at,
        user_email=event.user_email,
        user_full_name=event.user_full_name,
        credential_label=event.credential_label,
        ip=event.ip,
        user_agent=event.user_agent,
        request_id=event.request_id,
        target_user_email=event.target_user_email,
        detail=event.detail,
        key_id=event.key_id or None,
        signature=event.signature or None,
        event_id=event_id,
        **ids,
    )


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def delivery_problem(msg: Msg) -> str | None:
    """Why a message is not a JetStream delivery of the `AUDIT` stream to this consumer (None: it is one)."""
    try:
        metadata = msg.metadata
    except NatsError:
        return "not a JetStream delivery"
    if metadata.stream != events.STREAM or metadata.consumer != DURABLE:
        return f"a delivery of {metadata.stream}/{metadata.consumer}, not {events.STREAM}/{DURABLE}"
    return None


def check(msg: Msg, keys: events.TrustedKeys) -> chain.Entry | Malformed:
    """A delivered message → the entry to chain, or why it must be parked: malformed, on a subject that does not
    name its action, or not signed by a key trusted for the producer its subject names."""
    decoded = decode(msg.data)
    if isinstance(decoded, Malformed):
        return decoded
    producer = events.producer_of_subject(msg.subject)
    if producer is None or msg.subject != events.subject(producer, decoded.action):
        return Malformed(f"subject {msg.subject} does not name its action {decoded.action}")
    problem = keys.problem(decoded, decoded.key_id or "", decoded.signature or b"", producer)
    return decoded if problem is None else Malformed(problem)


def dead_letter(msg: Msg, reason: str) -> dict[str, Any]:
    return {
        "stream_seq": msg.metadata.sequence.stream,
        "subject": msg.subject,
        "msg_id": (msg.headers or {}).get("Nats-Msg-Id", ""),
        "reason": reason,
        "data": msg.data,
    }


class Consumer:
    def __init__(self, db: Database, nats_url: str, *, batch: int, keys: events.TrustedKeys) -> None:
        self._db = db
        self._keys = keys
        self._nats_url = nats_url
        self._batch = batch
        self._nc: NATS | None = None
        self._sub: Any = None
        self._measured = False  # the chain's length, read once; each append then sets it

    async def run(self) -> None:
        await retrying.forever(
            self.consume_batch, outage="audit.consume_paused", failure="audit.consume_failed", reset=self._disconnect
        )

    async def _subscription(self) -> Any:
        if self._nc is None or self._nc.is_closed or not self._nc.is_connected:
            await self._disconnect()
            self._nc = await events.connect(self._nats_url)
            try:
                self._sub = await self._nc.jetstream().pull_subscribe(
                    events.SUBJECTS[0],
                    durable=DURABLE,
                    stream=events.STREAM,
                    config=ConsumerConfig(
                        ack_policy=AckPolicy.EXPLICIT,
                        deliver_policy=DeliverPolicy.ALL,
                        ack_wait=ACK_WAIT_S,
                        max_ack_pending=20 * self._batch,
                    ),
                )
            except NotFoundError:  # no stream AUDIT: the operator creates it (this user may not); retried
                log.error("audit.stream_missing", stream=events.STREAM, fix=BOOTSTRAP_HINT)
                raise
            log.info("audit.consuming", stream=events.STREAM, durable=DURABLE)
        return self._sub

    async def _disconnect(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        await events.disconnect(nc)

    async def consume_batch(self) -> int:
        """Fetches, stores and acknowledges one batch; the number of messages it handled."""
        sub = await self._subscription()
        if not self._measured:
            metrics.CHAIN_LENGTH.set(await chain.length(self._db))
            self._measured = True
        try:
            msgs: list[Msg] = await sub.fetch(self._batch, timeout=FETCH_WAIT_S)
        except (NatsTimeout, TimeoutError):  # nothing to consume within FETCH_WAIT_S
            return 0
        entries, parked, delivered = [], [], []
        for msg in msgs:
            not_delivered = delivery_problem(msg)
            if not_delivered is not None:  # nothing of the stream's to park or acknowledge
                log.warning("audit.not_a_delivery", subject=msg.subject, reason=not_delivered)
                continue
            delivered.append(msg)
        for msg, checked in zip(delivered, await self._checked(delivered), strict=True):
            if isinstance(checked, Malformed):
                parked.append(dead_letter(msg, checked.reason))
            else:
                entries.append(checked)
        with tracing.continued("audit.append", [msg.headers for msg in delivered]):
            appended = await chain.append(self._db, entries, parked)
        metrics.AUDIT_DEAD_LETTERS.inc(appended.parked)
        # Only after the commit. Plain acks then one flush (a round trip for the batch, not one per message):
        # an ack lost on the way only causes a redelivery, which the unique event id absorbs.
        for msg in delivered:
            await msg.ack()
        if delivered and self._nc is not None:
            await self._nc.flush(timeout=5)
        for letter in parked:
            log.warning("audit.parked", stream_seq=letter["stream_seq"], reason=letter["reason"])
        log.debug("audit.stored", events=appended.stored, duplicates=appended.duplicates, parked=appended.parked)
        return len(msgs)

    async def _checked(self, msgs: list[Msg]) -> list[chain.Entry | Malformed]:
        """`check` of each message, in order. Most of it is verifying signatures, during which the cryptography
        library releases the GIL: a large batch is checked in CHECK_THREADS threads at once, off the event loop."""
        if len(msgs) < CHECK_IN_THREADS_FROM:
            return self._check_all(msgs)
        size = -(-len(msgs) // CHECK_THREADS)
        parts = [msgs[start : start + size] for start in range(0, len(msgs), size)]
        checked = await asyncio.gather(*(asyncio.to_thread(self._check_all, part) for part in parts))
        return [entry for part in checked for entry in part]

    def _check_all(self, msgs: list[Msg]) -> list[chain.Entry | Malformed]:
        return [check(msg, self._keys) for msg in msgs]

    async def close(self) -> None:
        await self._disconnect()
