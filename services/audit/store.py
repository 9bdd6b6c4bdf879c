"""Tables and queries of schema "audit": the hash-chained events and the dead letters. No rules here.

`events` is append-only: rows are only inserted (the grant in the migration shows it), in `seq` order,
one writer at a time (`lock_chain`). Each row carries, besides its chain link, its ordinal within its
user (the actor), client, credential, action and target user (the count of that value's events up to and
including it; NULL when the event has no such id), so an exact total and a deep page of a one-dimension
filter are one index lookup each, without a counter row to UPDATE.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    Row,
    Table,
    Text,
    Uuid,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault.db import copy_rows, one_of
from clientvault.db import metadata as schema_metadata

metadata = schema_metadata("audit")

# The dimensions a listing filters on, each with its ordinal column.
DIMENSIONS = ("user_id", "client_id", "credential_id", "action", "target_user_id")

events = Table(
    "events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("action", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("user_id", Uuid),  # the ids are NULL when an event has no such subject (migration 0003)
    Column("user_email", Text, nullable=False),
    Column("user_full_name", Text, nullable=False),
    Column("credential_id", Uuid),
    Column("credential_label", Text, nullable=False),
    Column("client_id", Uuid),
    Column("ip", Text, nullable=False),
    Column("user_agent", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("target_user_id", Uuid),
    Column("target_user_email", Text, nullable=False, server_default=""),
    Column("detail", Text, nullable=False, server_default=""),
    Column("key_id", Text),  # the producer's signing key and signature (both None: chained before signing)
    Column("signature", LargeBinary),
    Column("prev_hash", LargeBinary, nullable=False),
    Column("hash", LargeBinary, nullable=False),
    Column("user_id_ordinal", BigInteger),
    Column("client_id_ordinal", BigInteger),
    Column("credential_id_ordinal", BigInteger),
    Column("action_ordinal", BigInteger, nullable=False),
    Column("target_user_id_ordinal", BigInteger),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_events_user_id_ordinal", "user_id", "user_id_ordinal"),
    Index("ix_events_client_id_ordinal", "client_id", "client_id_ordinal"),
    Index("ix_events_credential_id_ordinal", "credential_id", "credential_id_ordinal"),
    Index("ix_events_action_ordinal", "action", "action_ordinal"),
    Index("ix_events_target_user_id_ordinal", "target_user_id", "target_user_id_ordinal"),
    Index("ix_events_occurred_at", "occurred_at"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("stream_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("subject", Text, nullable=False),
    Column("msg_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

CHAIN_LOCK = "clientvault.audit.chain"
# Made by migration 0001 with SELECT, INSERT on the audit tables only; the audit service's login is a member.
WRITER_ROLE = "clientvault_audit_writer"


async def lock_chain(conn: AsyncConnection) -> None:
    """One appender at a time, until the transaction ends (every audit replica takes this lock)."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": CHAIN_LOCK})


async def head(conn: AsyncConnection) -> Any:
    """The newest entry's seq and hash (None for an empty chain)."""
    query = select(events.c.seq, events.c.hash).order_by(events.c.seq.desc()).limit(1)
    return (await conn.execute(query)).one_or_none()


async def existing_event_ids(conn: AsyncConnection, event_ids: Sequence[UUID]) -> set[UUID]:
    query = select(events.c.event_id).where(one_of(events.c.event_id, event_ids))
    return set((await conn.execute(query)).scalars())


async def last_ordinals(conn: AsyncConnection, dimension: str, values: Sequence[Any]) -> dict[Any, int]:
    """The newest ordinal of each value of a dimension (absent: no event yet), one index probe each."""
    kind = "text" if dimension == "action" else "uuid"
    if dimension not in DIMENSIONS:
        raise ValueError(dimension)
    # The names are checked against DIMENSIONS above, never a caller's text.
    query = text(
        f"SELECT v.value, (SELECT e.{dimension}_ordinal FROM audit.events e WHERE e.{dimension} = v.value "  # noqa: S608
        f"ORDER BY e.{dimension}_ordinal DESC LIMIT 1) FROM unnest(CAST(:values AS {kind}[])) AS v(value)"
    )
    rows = (await conn.execute(query, {"values": list(values)})).all()
    return {value: last for value, last in rows if last is not None}


async def insert_events(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    await copy_rows(conn, events, rows)


async def insert_dead_letters(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        # DO NOTHING needs no UPDATE grant: a redelivered malformed message is parked once.
        await conn.execute(pg_insert(dead_letters).on_conflict_do_nothing(index_elements=["stream_seq"]), list(rows))


async def page_of_events(
    conn: AsyncConnection, conditions: Sequence[Any], *, offset: int, limit: int, keyset: tuple[str, int] | None
) -> list[Row[Any]]:
    """Newest first. With `keyset` (an ordinal column and the highest ordinal on the page) the page is
    an index range instead of an OFFSET."""
    query = select(events)
    if keyset is not None:
        column = events.c[keyset[0]]
        query = query.where(*conditions, column <= keyset[1]).order_by(column.desc()).limit(limit)
    else:
        query = query.where(*conditions).order_by(events.c.seq.desc()).offset(offset).limit(limit)
    return list((await conn.execute(query)).all())


async def last_ordinal(conn: AsyncConnection, dimension: str | None, value: Any) -> int:
    """How many events a dimension's value has (all events for None): the newest row's ordinal."""
    if dimension is None:
        query = select(events.c.seq).order_by(events.c.seq.desc()).limit(1)
    else:
        ordinal = events.c[f"{dimension}_ordinal"]
        query = select(ordinal).where(events.c[dimension] == value).order_by(ordinal.desc()).limit(1)
    return int((await conn.execute(query)).scalar_one_or_none() or 0)


async def count_events(conn: AsyncConnection, conditions: Sequence[Any]) -> int:
    return int((await conn.execute(select(func.count()).select_from(events).where(*conditions))).scalar_one())


async def chain_rows(conn: AsyncConnection, after_seq: int, limit: int) -> list[Row[Any]]:
    query = select(events).where(events.c.seq > after_seq).order_by(events.c.seq).limit(limit)
    return list((await conn.execute(query)).all())


async def seq_of_hash(conn: AsyncConnection, digest: bytes) -> int | None:
    """The seq of the entry with this hash (a sequential scan: only `verify` asks, once, on a failure)."""
    query = select(events.c.seq).where(events.c.hash == digest).limit(1)
    return (await conn.execute(query)).scalar_one_or_none()


async def hash_at(conn: AsyncConnection, seq: int) -> bytes | None:
    return (await conn.execute(select(events.c.hash).where(events.c.seq == seq))).scalar_one_or_none()


async def count_all(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(events))).scalar_one())


def occurred_between(start: datetime | None, end: datetime | None) -> list[Any]:
    conditions = []
    if start is not None:
        conditions.append(events.c.occurred_at >= start)
    if end is not None:
        conditions.append(events.c.occurred_at <= end)
    return conditions
