"""Idempotency keys of creates: a create sent again with the same `Idempotency-Key` and the same request
answers what the first one answered, for 24 hours, and creates nothing (so writes no second audit event).

The service that creates keeps the keys in its own schema (`idempotency_table`), one row per (user, key): a
key of one user never answers another user's request. The row is taken (`claim`) in the create's own
transaction, before it creates, and holds the reply (`remember`) when it commits, so:
- a concurrent first request with the same key waits on the row's unique index until the first commits, then
  answers the first one's reply (or, if the first rolled back, creates in its place): never two objects;
- a create that fails (a 4xx, a crash) leaves no key behind, and may be sent again with it;
- the same key with another request (operation, path or body: `fingerprint`) is refused (Invalid, 422).
The reply is the service's own serialized answer (opaque bytes here); an expired key is taken anew.
"""

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from google.protobuf.message import Message
from sqlalchemy import Column, DateTime, LargeBinary, MetaData, PrimaryKeyConstraint, Table, Text, Uuid, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault.errors import Invalid

TTL = timedelta(hours=24)
KEY_MAX = 255
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # visible ASCII, as a header carries it; a UUID fits
KEY = re.compile(KEY_PATTERN)
FIELD = "idempotency_key"  # named in a 422


def idempotency_table(metadata: MetaData) -> Table:
    """A service's `idempotency_keys` (created by its migration)."""
    return Table(
        "idempotency_keys",
        metadata,
        Column("user_id", Uuid, nullable=False),
        Column("key", Text, nullable=False),
        Column("fingerprint", LargeBinary, nullable=False),  # SHA-256 of the request (`fingerprint`)
        Column("response", LargeBinary),  # the first reply; written in the create's transaction
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("user_id", "key"),
    )


@dataclass(frozen=True, slots=True)
class Replay:
    """The reply a create answered the first time its key was used: to answer again as it is."""

    response: bytes


@dataclass(frozen=True, slots=True)
class Once:
    """A create to do once per (user, key): `fingerprint` tells its request from another under the same key, and
    `encode` turns what the create made into the reply stored for a retry."""

    user_id: UUID
    key: str
    fingerprint: bytes = field(repr=False)
    encode: Callable[[Any], bytes] = field(repr=False)


def fingerprint(operation: str, request: Message) -> bytes:
    """SHA-256 of the operation and the request as the service received it, its idempotency key left out."""
    bare = type(request)()
    bare.CopyFrom(request)
    bare.ClearField(FIELD)
    return hashlib.sha256(operation.encode() + b"\x00" + bare.SerializeToString(deterministic=True)).digest()


def once(user_id: UUID, key: str, operation: str, request: Message, encode: Callable[[Any], bytes]) -> Once | None:
    """The `Once` of a create request (None without a key); a key that is not 1 to 255 visible ASCII characters
    is Invalid."""
    if not key:
        return None
    if not KEY.fullmatch(key):
        raise Invalid(f"Idempotency-Key must be 1 to {KEY_MAX} visible ASCII characters", FIELD)
    return Once(user_id, key, fingerprint(operation, request), encode)


async def stored(conn: AsyncConnection, table: Table, once: Once, now: datetime) -> Replay | None:
    """The reply kept for this user's key, if it is live; Invalid when the key was used for another request."""
    query = select(table.c.fingerprint, table.c.response).where(
        table.c.user_id == once.user_id, table.c.key == once.key, table.c.expires_at > now
    )
    row = (await conn.execute(query)).one_or_none()
    if row is None or row.response is None:
        return None
    if row.fingerprint != once.fingerprint:
        raise Invalid("Idempotency-Key was already used for another request", FIELD)
    return Replay(row.response)


async def claim(conn: AsyncConnection, table: Table, once: Once, now: datetime) -> Replay | None:
    """In the create's transaction, before it creates: takes the key for the user (None: go on and create), or
    answers the first request's reply. Waits while a concurrent request holds the key uncommitted."""
    await conn.execute(delete(table).where(table.c.user_id == once.user_id, table.c.expires_at <= now))
    values = {"fingerprint": once.fingerprint, "response": None, "created_at": now, "expires_at": now + TTL}
    taken = (
        insert(table)
        .values(user_id=once.user_id, key=once.key, **values)
        .on_conflict_do_update(
            index_elements=[table.c.user_id, table.c.key], set_=values, where=table.c.expires_at <= now
        )
        .returning(table.c.user_id)
    )
    if (await conn.execute(taken)).one_or_none() is not None:
        return None
    replay = await stored(conn, table, once, now)
    if replay is None:  # a row whose first request is still deciding cannot be seen here: it committed or is gone
        raise Invalid("Idempotency-Key is in use by a request that has not finished; send it again", FIELD)
    return replay


async def remember(conn: AsyncConnection, table: Table, once: Once, made: object) -> None:
    """Keeps the reply to what the create made, in its transaction."""
    query = table.update().where(table.c.user_id == once.user_id, table.c.key == once.key)
    await conn.execute(query.values(response=once.encode(made)))
