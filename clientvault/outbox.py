"""The outbox every audit producer writes its events to, and the relay that publishes them to NATS JetStream.

A producer (the vault, auth) inserts an event into its own `<schema>.outbox` in the same transaction as the change
it records, so the event exists exactly when the change does. The table's columns are the event's fields by the
names they have everywhere (clientvault/events.py `FIELDS`) plus `sent_at` and `traceparent`; each producer makes
it with `outbox_table(its MetaData)` and its own migration.

The stream's contract is the kit's (clientvault/events.py): stream `AUDIT`, each event on
`audit.<producer>.<action>` as a serialized `clientvault.v1.AuditEvent`, signed with the producer's event key when
it is published (so rows written before an upgrade are signed too), with `Nats-Msg-Id` = event id.
A batch of unsent rows is locked (`FOR UPDATE SKIP LOCKED`, so replicas share the work), published, and
marked sent (one UPDATE for the batch) only after JetStream acknowledged every message; on any failure the
transaction rolls back and the rows stay unsent. A batch is published as one JetStream atomic batch (headers
`Nats-Batch-Id`/`-Sequence`, the last message `Nats-Batch-Commit` and the only one that waits for an answer): the
stream stores all of it or none, in the rows' order, with one fsync where one a message was the ceiling
(`sync_interval: always`), and the commit's acknowledgement counts the messages stored. A batch the server
refuses as a whole (a row published before whose event id is still in the duplicate window, a stream without
`allow_atomic`, a server before 2.12) is published again one message at a time, every acknowledgement in flight
at once: a row published but not marked (a crash between the ack and the commit) is published again with the
same Nats-Msg-Id, JetStream drops it within the stream's duplicate window, and the audit service stores each
event id once anyway.

The relay is woken in-process right after an operation commits, and sweeps every
`CLIENTVAULT_OUTBOX_SWEEP_S` for rows of crashed or other replicas. (No LISTEN/NOTIFY: a NOTIFY in the
operation's transaction takes a database-wide lock at commit that serializes committing transactions and
so defeats group commit on the reveal path.) While NATS is down it retries with backoff
(clientvault/retrying.py).
"""

import asyncio
import contextlib
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.js.errors import NoStreamResponseError
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    Row,
    Table,
    Text,
    Uuid,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault import events, metrics, retrying, tracing
from clientvault.context import RequestContext
from clientvault.db import Database, one_of
from clientvault.errors import Unavailable
from clientvault.ids import new_id
from clientvault.logging import get_logger
from clientvault.nats_access import BOOTSTRAP_HINT
from clientvault.settings import Producer

log = get_logger(__name__)

PUBLISH_TIMEOUT_S = 3.0
# After a wake, how long the relay lets more events commit before it publishes: under load (reveals at hundreds a
# second) they ride one batch (one transaction, one JetStream fsync) instead of one each; an event reaches the
# audit log that much later, never lost (it is committed in the outbox already).
LINGER_S = 0.02
BATCH_ID, BATCH_SEQUENCE, BATCH_COMMIT = "Nats-Batch-Id", "Nats-Batch-Sequence", "Nats-Batch-Commit"
# Sent events stay this long: `audit verify` compares the chain's recent entries with them (ops/audit_gaps.py).
RETENTION = timedelta(days=7)

# The event's ids that name nothing for some events (NULL then; clientvault/events.py).
OPTIONAL_IDS = frozenset({"user_id", "credential_id", "client_id", "target_user_id"})
IDS = OPTIONAL_IDS | {"event_id"}
# The relay's bookkeeping after the event's fields: when it was sent, and the trace of the request that wrote it.
RELAY_COLUMNS = ("sent_at", "traceparent")
# Texts added to the event after the first outbox was made: a default, so a row written without them is valid.
NEW_TEXTS = frozenset({"target_user_email", "detail"})


def outbox_table(metadata: MetaData) -> Table:
    """A producer's `outbox`: the event's fields in `FIELDS` order (texts '' when empty), then the relay's
    bookkeeping (`RELAY_COLUMNS`)."""

    def column(name: str) -> Column[Any]:
        if name == "event_id":
            return Column(name, Uuid, primary_key=True)  # Nats-Msg-Id
        if name == "occurred_at":
            return Column(name, DateTime(timezone=True), nullable=False)
        if name in IDS:
            return Column(name, Uuid, nullable=True)
        return Column(name, Text, nullable=False, server_default="" if name in NEW_TEXTS else None)

    return Table(
        "outbox",
        metadata,
        *(column(name) for name in events.FIELDS),
        Column("sent_at", DateTime(timezone=True)),
        Column("traceparent", Text),  # the request's trace, continued by the audit append (clientvault/tracing.py)
        Index("ix_outbox_unsent", "occurred_at", postgresql_where=text("sent_at IS NULL")),
    )


async def insert_event(conn: AsyncConnection, outbox: Table, **values: object) -> None:
    await conn.execute(insert(outbox).values(**values))


class Actor(Protocol):
    """Who acted, as an event keeps them: a verified caller, or (user_id None) what is known of somebody else."""

    @property
    def user_id(self) -> UUID | None: ...
    @property
    def email(self) -> str: ...
    @property
    def full_name(self) -> str: ...


async def record_event(
    conn: AsyncConnection,
    outbox: Table,
    producer: str,
    action: events.AuditAction,
    actor: Actor,
    context: RequestContext,
    *,
    client_id: UUID | None = None,
    target_user_id: UUID | None = None,
    target_user_email: str = "",
    detail: str = "",
) -> UUID:
    """Writes one of `producer`'s events about no credential (a user, a client) to its outbox in `conn`'s transaction,
    so the event exists exactly when the change does; its event id. The audit append continues this request's
    trace."""
    if events.PRODUCER_OF[action] != producer:
        raise ValueError(f"{action} is not a {producer} event")
    event_id = new_id()
    await insert_event(
        conn,
        outbox,
        event_id=event_id,
        action=action.value,
        occurred_at=datetime.now(UTC),
        user_id=actor.user_id,
        user_email=actor.email,
        user_full_name=actor.full_name,
        credential_id=None,
        credential_label="",
        client_id=client_id,
        ip=context.client_ip,
        user_agent=context.user_agent,
        request_id=context.request_id,
        target_user_id=target_user_id,
        target_user_email=target_user_email,
        detail=detail,
        traceparent=tracing.traceparent(),
    )
    return event_id


async def insert_events(conn: AsyncConnection, outbox: Table, rows: Sequence[Mapping[str, object]]) -> None:
    """Several events in one statement (rows with the same keys); nothing when there are none."""
    if rows:
        await conn.execute(insert(outbox), [dict(row) for row in rows])


async def unsent_events(conn: AsyncConnection, outbox: Table, limit: int) -> list[Row[Any]]:
    """The oldest unsent events, locked; rows another relay holds are skipped, never waited for."""
    query = (
        select(outbox)
        .where(outbox.c.sent_at.is_(None))
        .order_by(outbox.c.occurred_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(query)).all())


async def unsent_backlog(conn: AsyncConnection, outbox: Table) -> Row[Any]:
    """How many events wait for the relay (`unsent`), and when the oldest of them happened (`oldest`, or None)."""
    query = select(func.count().label("unsent"), func.min(outbox.c.occurred_at).label("oldest")).where(
        outbox.c.sent_at.is_(None)
    )
    row: Row[Any] = (await conn.execute(query)).one()
    return row


async def mark_sent(conn: AsyncConnection, outbox: Table, event_ids: Sequence[UUID], now: datetime) -> None:
    await conn.execute(update(outbox).where(one_of(outbox.c.event_id, event_ids)).values(sent_at=now))


async def purge_sent(conn: AsyncConnection, outbox: Table, before: datetime) -> None:
    # A week of events can take longer than a request's statement timeout; nobody waits on this one.
    await conn.execute(text("SET LOCAL statement_timeout = 0"))
    await conn.execute(delete(outbox).where(outbox.c.sent_at < before))


class Relay:
    def __init__(
        self,
        db: Database,
        outbox: Table,
        nats_url: str,
        signer: events.EventSigner,
        *,
        batch: int,
        sweep_s: float,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._signer = signer
        self._nats_url = nats_url
        self._batch = batch
        self._sweep_s = sweep_s
        self._wake = asyncio.Event()
        self._nc: NATS | None = None
        self.published = 0

    @classmethod
    def of(cls, db: Database, outbox: Table, signer: events.EventSigner, settings: Producer) -> "Relay":
        """The relay a producer's settings describe (its NATS user, batch and sweep)."""
        return cls(
            db,
            outbox,
            settings.require_nats_url(),
            signer,
            batch=settings.outbox_batch,
            sweep_s=settings.outbox_sweep_s,
        )

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
        except NoStreamResponseError:  # nothing stores audit.<producer>.*: the operator has not created the stream
            log.error("outbox.stream_missing", stream=events.STREAM, fix=BOOTSTRAP_HINT)
            raise
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._sweep_s)
            await asyncio.sleep(LINGER_S)
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
            rows = await unsent_events(conn, self._outbox, self._batch)
            if not rows:
                return 0
            nc = await self._connection()
            messages = [
                (
                    events.subject(self._signer.producer, row.action),
                    self._signer.event(row).SerializeToString(),
                    {"Nats-Msg-Id": str(row.event_id), **tracing.headers(row.traceparent)},
                )
                for row in rows
            ]
            refused = await self._publish_atomic(nc, messages)
            duplicates = 0 if refused is None else await self._publish_each(nc, messages, refused)
            await mark_sent(conn, self._outbox, [row.event_id for row in rows], datetime.now(UTC))
        self.published += len(rows)
        metrics.OUTBOX_PUBLISHED.inc(len(rows))
        log.debug("outbox.published", events=len(rows), duplicates=duplicates, atomic=refused is None)
        return len(rows)

    async def _publish_atomic(self, nc: NATS, messages: list[tuple[str, bytes, dict[str, str]]]) -> str | None:
        """Publishes the messages as one atomic batch; None when the stream stored them all, else why it did not
        (nothing of the batch is stored then)."""
        batch = uuid.uuid4().hex
        *staged, (subject, payload, headers) = messages
        for sequence, (staged_subject, staged_payload, staged_headers) in enumerate(staged, 1):
            await nc.publish(
                staged_subject,
                staged_payload,
                headers={**staged_headers, BATCH_ID: batch, BATCH_SEQUENCE: str(sequence)},
            )
        commit = {**headers, BATCH_ID: batch, BATCH_SEQUENCE: str(len(messages)), BATCH_COMMIT: "1"}
        try:
            reply = await nc.request(subject, payload, timeout=PUBLISH_TIMEOUT_S, headers=commit)
        except NoRespondersError:  # nothing stores audit.<producer>.*: no stream
            raise NoStreamResponseError from None
        try:
            ack = json.loads(reply.data)
        except ValueError:
            return "an answer that is not JSON"
        if "error" in ack:
            return str(ack["error"].get("description", ack["error"]))
        if ack.get("batch") != batch or ack.get("count") != len(messages):
            return "no atomic batch acknowledgement (a server before 2.12?)"
        return None

    async def _publish_each(self, nc: NATS, messages: list[tuple[str, bytes, dict[str, str]]], why: str) -> int:
        """Publishes each message on its own, all acknowledgements in flight at once; how many were duplicates."""
        log.info("outbox.batch_refused", reason=why, events=len(messages))
        js = nc.jetstream()
        acks = await asyncio.gather(
            *(
                js.publish(subject, payload, timeout=PUBLISH_TIMEOUT_S, headers=headers)
                for subject, payload, headers in messages
            )
        )
        return sum(1 for ack in acks if ack.duplicate)

    async def purge_forever(self, keep: timedelta = RETENTION, every_s: float = 3600.0) -> None:
        """Deletes events sent long ago: JetStream and the audit service hold them from then on."""
        while True:
            await asyncio.sleep(every_s)
            try:
                async with self._db.begin() as conn:
                    await purge_sent(conn, self._outbox, datetime.now(UTC) - keep)
            except Unavailable:
                log.warning("outbox.purge_postponed")

    async def close(self) -> None:
        await self._disconnect()
