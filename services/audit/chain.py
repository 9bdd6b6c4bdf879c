"""The hash chain: how an event is encoded, appended and checked.

Every entry stores `hash = SHA-256(prev_hash ‖ canonical(entry))`, where `prev_hash` is the hash of the
entry before it (32 zero bytes for the first) and `canonical` is JSON of the stored fields with sorted
keys, no whitespace, UTF-8, ids as lowercase hyphenated UUIDs and `occurred_at` as
`YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds: what PostgreSQL keeps), plus `"v": 1`. That encoding
is the format's contract: change it only with a new `v`. `seq` is not hashed: the order is the chain
itself, so moving an entry breaks the link to it and `verify` tells a move from a change.

Appends are serialized by an advisory lock held until commit: the head (newest seq and hash) is read
under it, so two appenders never fork the chain, and no row is ever updated.
"""

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault import metrics
from clientvault.db import Database
from services.audit import store

GENESIS = bytes(32)
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Entry:
    """One audited event as stored: the actor and the credential as they were when it happened."""

    event_id: UUID
    action: str
    occurred_at: datetime
    user_id: UUID
    user_email: str
    user_full_name: str
    credential_id: UUID
    credential_label: str
    client_id: UUID
    ip: str
    user_agent: str
    request_id: str


def canonical(entry: Entry) -> bytes:
    fields = {  # spelled out, not dataclasses.asdict (a deep copy): verify runs this for every entry
        "action": entry.action,
        "client_id": str(entry.client_id),
        "credential_id": str(entry.credential_id),
        "credential_label": entry.credential_label,
        "event_id": str(entry.event_id),
        "ip": entry.ip,
        "occurred_at": entry.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "request_id": entry.request_id,
        "user_agent": entry.user_agent,
        "user_email": entry.user_email,
        "user_full_name": entry.user_full_name,
        "user_id": str(entry.user_id),
        "v": FORMAT_VERSION,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link(prev_hash: bytes, entry: Entry) -> bytes:
    return hashlib.sha256(prev_hash + canonical(entry)).digest()


def entry_of(row: Any) -> Entry:
    return Entry(**{name: getattr(row, name) for name in Entry.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class Appended:
    stored: int
    duplicates: int
    parked: int


async def append(db: Database, entries: Sequence[Entry], dead_letters: Sequence[dict[str, Any]] = ()) -> Appended:
    """Appends the entries not stored yet (by event id, within the batch too) in one transaction, and
    parks the dead letters in the same one. When it returns, all of it is committed."""
    async with db.begin() as conn:
        await store.lock_chain(conn)
        existing = await store.existing_event_ids(conn, [e.event_id for e in entries]) if entries else set()
        new: dict[UUID, Entry] = {}
        for entry in entries:
            if entry.event_id not in existing and entry.event_id not in new:
                new[entry.event_id] = entry
        rows = await _chained(conn, list(new.values()))
        await store.insert_events(conn, rows)
        await store.insert_dead_letters(conn, dead_letters)
    if rows:
        metrics.CHAIN_LENGTH.set(rows[-1]["seq"])
        metrics.CHAIN_LAST_APPEND.set_to_current_time()
    return Appended(len(new), len(entries) - len(new), len(dead_letters))


async def length(db: Database) -> int:
    """Entries in the chain: its head's seq."""
    async with db.read() as conn:
        newest = await store.head(conn)
    return 0 if newest is None else int(newest.seq)


async def _chained(conn: AsyncConnection, entries: list[Entry]) -> list[dict[str, Any]]:
    if not entries:
        return []
    newest = await store.head(conn)
    seq, prev = (newest.seq, newest.hash) if newest is not None else (0, GENESIS)
    ordinals = {
        dimension: await store.last_ordinals(conn, dimension, list({getattr(e, dimension) for e in entries}))
        for dimension in store.DIMENSIONS
    }
    rows = []
    for entry in entries:
        seq += 1
        digest = link(prev, entry)
        # The fields as they are (immutable values), not dataclasses.asdict: its deep copy costs more than the hash.
        row: dict[str, Any] = {name: getattr(entry, name) for name in Entry.__dataclass_fields__}
        row.update(seq=seq, prev_hash=prev, hash=digest)
        for dimension, last in ordinals.items():
            value = getattr(entry, dimension)
            last[value] = last.get(value, 0) + 1
            row[f"{dimension}_ordinal"] = last[value]
        rows.append(row)
        prev = digest
    return rows


Kind = Literal["changed", "removed", "reordered"]


@dataclass(frozen=True, slots=True)
class Broken:
    """The first entry where the chain does not hold."""

    seq: int
    event_id: UUID | None  # None when the entry at `seq` is missing
    kind: Kind
    detail: str


@dataclass(frozen=True, slots=True)
class Verified:
    count: int
    head_seq: int
    head_hash: bytes
    broken: Broken | None


async def verify(db: Database, progress: Callable[[int, int], None], batch: int = 10_000) -> Verified:
    """Walks the whole chain in seq order, recomputing every hash; stops at the first broken entry."""
    async with db.read() as conn:
        total = await store.count_all(conn)
    expected, prev, count = 1, GENESIS, 0
    while True:
        async with db.read() as conn:
            rows = await store.chain_rows(conn, expected - 1, batch)
            for row in rows:
                broken = await _check(conn, row, expected, prev)
                if broken is not None:
                    return Verified(count, expected - 1, prev, broken)
                expected, prev, count = row.seq + 1, row.hash, count + 1
        progress(count, total)
        if len(rows) < batch:
            return Verified(count, expected - 1, prev, None)


async def _check(conn: AsyncConnection, row: Any, expected: int, prev: bytes) -> Broken | None:
    if row.seq != expected:
        missing = f"{expected}" if row.seq == expected + 1 else f"{expected}..{row.seq - 1}"
        return Broken(expected, None, "removed", f"entries {missing} are missing before entry {row.seq}")
    if link(row.prev_hash, entry_of(row)) != row.hash:
        return Broken(row.seq, row.event_id, "changed", "its content does not match its hash")
    if row.prev_hash != prev:
        later = await store.seq_of_hash(conn, row.prev_hash)
        if later is not None and later > row.seq:
            return Broken(row.seq, row.event_id, "reordered", f"it was recorded after entry {later}")
        return Broken(
            row.seq - 1, None, "changed", f"entry {row.seq - 1} is not the one entry {row.seq} was chained to"
        )
    return None


async def check_head(db: Database, seq: int, digest: bytes, verified: Verified) -> str | None:
    """Whether a head recorded earlier (`verify` printed it) is still in the verified chain: removing the
    newest entries, or rewriting the chain from some entry on, leaves a chain that verifies by itself."""
    if verified.head_seq < seq:
        return f"the chain ends at entry {verified.head_seq}, but entry {seq} was recorded earlier: entries removed"
    if seq == 0:  # the head of an empty chain: the genesis hash every chain starts from
        return None if digest == GENESIS else "head 0 is the empty chain, whose hash is all zeros"
    async with db.read() as conn:
        found = await store.hash_at(conn, seq)
    if found != digest:
        return f"entry {seq} is not the entry recorded earlier: the chain was rewritten up to it"
    return None
