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

While one batch is being stored (its round trips to PostgreSQL and its commit), the next is fetched and checked,
so the signatures' CPU overlaps the database's waits: one batch ahead at most, stored in the order fetched.
"""

import asyncio
import contextlib
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from clientvault import events, metrics, retrying, tracing
from clientvault.db import Database
from clientvault.events import Malformed
from clientvault.logging import get_logger
from clientvault.nats_access import AUDIT_DURABLE
from services.audit import chain

log = get_logger(__name__)

DURABLE = AUDIT_DURABLE
FETCH_WAIT_S = 1.0
ACK_WAIT_S = 30.0
CHECK_THREADS = 2  # the cores of a small machine; more threads only queue for the GIL between verifications
# A fetch that found only a few messages (events trickling in, a reveal at a time) waits this long for more to join
# the batch: one transaction, head and ordinal lookup and ack flush for them all, the log that much later.
GATHER_BELOW, GATHER_S = 50, 0.02
CHECK_IN_THREADS_FROM = 64  # messages; a smaller batch is checked on the event loop (a thread hop costs more)


def delivery_problem(msg: Msg) -> str | None:
    """Why a message is not a JetStream delivery of the `AUDIT` stream to this consumer (None: it is one)."""
    return events.delivery_problem(msg, DURABLE)


async def _handed_back(msgs: list[Msg]) -> None:
    """Negative acks, so JetStream redelivers the messages now rather than after the ack wait; best effort (without
    NATS they come back after the ack wait all the same)."""
    with contextlib.suppress(*events.NATS_GONE):
        for msg in msgs:
            await msg.nak()


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
        self._batch = batch
        self._pull = events.PullConsumer(
            nats_url,
            name="audit",
            durable=DURABLE,
            subject=events.SUBJECTS[0],
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=ACK_WAIT_S,
                max_ack_pending=20 * batch,
            ),
        )
        self._measured = False  # the chain's length, read once; each append then sets it
        self._storing: asyncio.Task[None] | None = None  # the batch fetched before this one, being stored

    async def run(self) -> None:
        await retrying.forever(
            self.consume_batch, outage="audit.consume_paused", failure="audit.consume_failed", reset=self._pull.reset
        )

    async def _subscription(self) -> Any:
        return await self._pull.subscription()

    async def consume_batch(self) -> int:
        """Fetches and checks one batch, then stores and acknowledges it in the background once the batch before it
        is stored (a failure of that one is raised here); the number of messages it handled."""
        await self._pull.subscription()
        if not self._measured:
            metrics.CHAIN_LENGTH.set(await chain.length(self._db))
            self._measured = True
        msgs = await self._pull.fetch(self._batch, FETCH_WAIT_S)
        if 0 < len(msgs) < min(GATHER_BELOW, self._batch):
            await asyncio.sleep(GATHER_S)
            msgs += await self._pull.fetch(self._batch - len(msgs), GATHER_S)
        checked = await self._checked_batch(msgs)
        try:
            await self.stored()
        except Exception:
            await _handed_back(checked[0])  # not stored after the one that failed: redelivered with it, at once
            raise
        if msgs:
            self._storing = asyncio.create_task(self._store(*checked))
        return len(msgs)

    async def stored(self) -> None:
        """Waits until the batch handed over last is stored and acknowledged (raises what failed it)."""
        storing, self._storing = self._storing, None
        if storing is not None:
            await storing

    async def _checked_batch(
        self, msgs: list[Msg]
    ) -> tuple[list[Msg], list[chain.Entry], list[bytes], list[dict[str, Any]]]:
        entries, encoded, parked, delivered = [], [], [], []
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
                entries.append(checked[0])
                encoded.append(checked[1])
        return delivered, entries, encoded, parked

    async def _store(
        self, delivered: list[Msg], entries: list[chain.Entry], encoded: list[bytes], parked: list[dict[str, Any]]
    ) -> None:
        try:
            with tracing.continued("audit.append", [msg.headers for msg in delivered]):
                appended = await chain.append(self._db, entries, parked, encoded)
        except Exception:
            await _handed_back(delivered)
            raise
        metrics.AUDIT_DEAD_LETTERS.inc(appended.parked)
        # Only after the commit. Plain acks then one flush (a round trip for the batch, not one per message):
        # an ack lost on the way (NATS went away) only causes a redelivery, which the unique event id absorbs, so it
        # is no failure of the batch.
        try:
            for msg in delivered:
                await msg.ack()
            if delivered:
                await self._pull.flush()
        except events.NATS_GONE as error:
            log.warning("audit.ack_lost", events=len(delivered), error=type(error).__name__)
        for letter in parked:
            log.warning("audit.parked", stream_seq=letter["stream_seq"], reason=letter["reason"])
        log.debug("audit.stored", events=appended.stored, duplicates=appended.duplicates, parked=appended.parked)

    async def _checked(self, msgs: list[Msg]) -> list[tuple[chain.Entry, bytes] | Malformed]:
        """`check` of each message, in order. Most of it is verifying signatures, during which libsodium (through
        cffi) releases the GIL: a large batch is checked in CHECK_THREADS threads at once, off the event loop."""
        if len(msgs) < CHECK_IN_THREADS_FROM:
            return self._check_all(msgs)
        size = -(-len(msgs) // CHECK_THREADS)
        parts = [msgs[start : start + size] for start in range(0, len(msgs), size)]
        checked = await asyncio.gather(*(asyncio.to_thread(self._check_all, part) for part in parts))
        return [entry for part in checked for entry in part]

    def _check_all(self, msgs: list[Msg]) -> list[tuple[chain.Entry, bytes] | Malformed]:
        return [events.verified_encoded(msg.subject, msg.data, self._keys) for msg in msgs]

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # stopping: what failed it is redelivered to the next consumer
            await self.stored()
        await self._pull.reset()
