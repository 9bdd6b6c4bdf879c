"""The hash chain: how an event is appended and checked.

Every entry stores `hash = SHA-256(prev_hash ‖ canonical(entry) ‖ signature)`, where `prev_hash` is the hash of
the entry before it (32 zero bytes for the first), `canonical` is the event's stored format (clientvault/events.py:
version 3 for signed events naming a subject user, a detail or an absent id, version 2 for the other signed ones,
version 1 for the unsigned ones chained before signing) and `signature` its
producer's Ed25519 signature over that encoding (empty for version 1). `seq` is not hashed: the order is the
chain itself, so moving an entry breaks the link to it and `verify` tells a move from a change.

`verify` recomputes every hash and re-checks every signature against the producers' trusted keys: an entry
re-hashed forward by someone with write access to the table still carries a signature only its producer could
make, and an unsigned entry after the first signed one was never chained by the consumer.

Appends are serialized by an advisory lock held until commit: the head (newest seq and hash) is read
under it, so two appenders never fork the chain, and no row is ever updated.
"""

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault import metrics
from clientvault.db import Database
from clientvault.events import Event, TrustedKeys, canonical
from services.audit import store

GENESIS = bytes(32)


# One audited event as stored (the kit's `Event`: the consumer decodes deliveries into it, clientvault/events.py).
Entry = Event


def link(prev_hash: bytes, entry: Entry) -> bytes:
    return _linked(prev_hash, canonical(entry, entry.key_id), entry.signature)


def _linked(prev_hash: bytes, encoded: bytes, signature: bytes | None) -> bytes:
    return hashlib.sha256(prev_hash + encoded + (signature or b"")).digest()


def entry_of(row: Any) -> Entry:
    return Entry(**{name: getattr(row, name) for name in Entry.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class Appended:
    stored: int
    duplicates: int
    parked: int


async def append(
    db: Database,
    entries: Sequence[Entry],
    dead_letters: Sequence[dict[str, Any]] = (),
    encoded: Sequence[bytes] | None = None,
) -> Appended:
    """Appends the entries not stored yet (by event id, within the batch too) in one transaction, and
    parks the dead letters in the same one. When it returns, all of it is committed. `encoded`: each entry's
    `canonical` encoding, in order, when the caller has it already (the consumer checked the signatures over it)."""
    async with db.begin() as conn:
        await store.lock_chain(conn)
        existing = await store.existing_event_ids(conn, [e.event_id for e in entries]) if entries else set()
        new: dict[UUID, tuple[Entry, bytes]] = {}
        encodings = encoded if encoded is not None else [canonical(entry, entry.key_id) for entry in entries]
        for entry, encoding in zip(entries, encodings, strict=True):
            if entry.event_id not in existing and entry.event_id not in new:
                new[entry.event_id] = (entry, encoding)
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


async def _chained(conn: AsyncConnection, entries: list[tuple[Entry, bytes]]) -> list[dict[str, Any]]:
    if not entries:
        return []
    newest = await store.head(conn)
    seq, prev = (newest.seq, newest.hash) if newest is not None else (0, GENESIS)
    ordinals = {
        dimension: await store.last_ordinals(
            conn, dimension, list({getattr(e, dimension) for e, _ in entries} - {None})
        )
        for dimension in store.DIMENSIONS
    }
    rows = []
    for entry, encoding in entries:
        seq += 1
        digest = _linked(prev, encoding, entry.signature)
        # The fields as they are (immutable values), not dataclasses.asdict: its deep copy costs more than the hash.
        row: dict[str, Any] = {name: getattr(entry, name) for name in Entry.__dataclass_fields__}
        row.update(seq=seq, prev_hash=prev, hash=digest)
        for dimension, last in ordinals.items():
            value = getattr(entry, dimension)
            if value is None:  # an event without that id is not counted in that dimension
                row[f"{dimension}_ordinal"] = None
                continue
            last[value] = last.get(value, 0) + 1
            row[f"{dimension}_ordinal"] = last[value]
        rows.append(row)
        prev = digest
    return rows


Kind = Literal["changed", "removed", "reordered", "forged"]


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


async def verify(
    db: Database, keys: TrustedKeys, progress: Callable[[int, int], None], batch: int = 10_000
) -> Verified:
    """Walks the whole chain in seq order, recomputing every hash and checking every signature against `keys`;
    stops at the first broken entry."""
    async with db.read() as conn:
        total = await store.count_all(conn)
    expected, prev, count, signing_began = 1, GENESIS, 0, False
    while True:
        async with db.read() as conn:
            rows = await store.chain_rows(conn, expected - 1, batch)
            for row in rows:
                entry = entry_of(row)
                encoded = canonical(entry, entry.key_id)  # hashed and signed alike: encoded once per entry
                broken = await _check(conn, row, encoded, expected, prev) or _check_signature(
                    entry, row.seq, encoded, keys, signing_began
                )
                if broken is not None:
                    return Verified(count, expected - 1, prev, broken)
                expected, prev, count = row.seq + 1, row.hash, count + 1
                signing_began = signing_began or row.signature is not None
        progress(count, total)
        if len(rows) < batch:
            return Verified(count, expected - 1, prev, None)


async def _check(conn: AsyncConnection, row: Any, encoded: bytes, expected: int, prev: bytes) -> Broken | None:
    if row.seq != expected:
        missing = f"{expected}" if row.seq == expected + 1 else f"{expected}..{row.seq - 1}"
        return Broken(expected, None, "removed", f"entries {missing} are missing before entry {row.seq}")
    if _linked(row.prev_hash, encoded, row.signature) != row.hash:
        return Broken(row.seq, row.event_id, "changed", "its content does not match its hash")
    if row.prev_hash != prev:
        later = await store.seq_of_hash(conn, row.prev_hash)
        if later is not None and later > row.seq:
            return Broken(row.seq, row.event_id, "reordered", f"it was recorded after entry {later}")
        return Broken(
            row.seq - 1, None, "changed", f"entry {row.seq - 1} is not the one entry {row.seq} was chained to"
        )
    return None


def _check_signature(entry: Entry, seq: int, encoded: bytes, keys: TrustedKeys, signing_began: bool) -> Broken | None:
    if entry.signature is None:
        if not signing_began:
            return None  # chained before events were signed
        return Broken(seq, entry.event_id, "forged", "it is unsigned, but entries before it are signed")
    problem = keys.problem(entry, entry.key_id or "", entry.signature, encoded=encoded)
    return None if problem is None else Broken(seq, entry.event_id, "forged", problem)


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
