"""`clientvault audit verify`: the chain verifies, and each kind of tampering (through a superuser
connection, as an attacker with database access would) is named at the first entry it touches.
Each test puts the table back as it was, so the run-wide system's chain verifies again."""

import dataclasses
import json
import stat
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import namedtuple_row

from clientvault import ed25519
from clientvault.events import EventSigner
from services.audit.chain import Entry, entry_of, link
from services.audit.store import CHAIN_LOCK, DIMENSIONS
from tests.audit_support import wait_for_audit
from tests.system import Api, System
from tests.vault_support import create, new_client


@pytest.fixture
async def seqs(api: Api) -> list[tuple[int, str]]:
    """(seq, event id) of three fresh, consecutive-enough entries of this test."""
    admin = await api.session("admin")
    client_id = await new_client(api, admin)
    made = [await create(api, admin, client_id, label=f"verify {n}", secret="x") for n in range(3)]
    for credential_id in made:
        await wait_for_audit(api, admin, credential_id, 1)
    async with await connect(api.system) as conn:
        rows = await (
            await conn.execute(
                "SELECT seq, event_id FROM audit.events WHERE credential_id = ANY(%s) ORDER BY seq",
                ([uuid.UUID(c) for c in made],),
            )
        ).fetchall()
    return [(seq, str(event_id)) for seq, event_id in rows]


@pytest.fixture
async def conn(api: Api) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await connect(api.system) as connection:
        yield connection


async def connect(system: System) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(system.info()["database_url"], autocommit=True)


async def one(conn: psycopg.AsyncConnection, sql: str, *params: object) -> tuple[Any, ...]:
    row = await (await conn.execute(sql, params)).fetchone()
    assert row is not None
    return tuple(row)


@asynccontextmanager
async def entry_removed(conn: psycopg.AsyncConnection, seq: int) -> AsyncIterator[None]:
    """The entry at `seq` deleted (as an attacker with database access would), then put back as it was."""
    cursor = await conn.execute("SELECT * FROM audit.events WHERE seq = %s", (seq,))
    row = await cursor.fetchone()
    assert row is not None
    columns = [c.name for c in cursor.description or ()]
    await conn.execute("DELETE FROM audit.events WHERE seq = %s", (seq,))
    try:
        yield
    finally:
        await conn.execute(
            f"INSERT INTO audit.events ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",  # noqa: S608
            row,
        )


def verify(system: System) -> tuple[int, str, str]:
    done = system.cli("audit", "verify")
    return done.returncode, done.stdout, done.stderr


async def test_an_untouched_chain_verifies(
    api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection
) -> None:
    code, out, err = verify(api.system)

    assert code == 0, err
    (count,) = await one(conn, "SELECT count(*) FROM audit.events")
    seq, digest = await one(conn, "SELECT seq, encode(hash, 'hex') FROM audit.events ORDER BY seq DESC LIMIT 1")
    assert f"audit chain verified: {count} entries, head {seq} hash {digest}" in out
    assert count == seq  # gapless


@asynccontextmanager
async def entry_rewritten(
    conn: psycopg.AsyncConnection, seq: int, label: str, *, rehash: bool = False
) -> AsyncIterator[None]:
    """The entry at `seq` given another credential label (and, with `rehash`, the hash that matches it), then
    put back as it was."""
    cursor = conn.cursor(row_factory=namedtuple_row)
    row: Any = await (await cursor.execute("SELECT * FROM audit.events WHERE seq = %s", (seq,))).fetchone()
    assert row is not None
    forged = row._replace(credential_label=label)
    digest = link(row.prev_hash, entry_of(forged)) if rehash else row.hash
    update = "UPDATE audit.events SET credential_label = %s, hash = %s WHERE seq = %s"
    await conn.execute(update, (label, digest, seq))
    try:
        yield
    finally:
        await conn.execute(update, (row.credential_label, row.hash, seq))


async def test_a_changed_entry_is_named(api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection) -> None:
    seq, event_id = seqs[1]
    async with entry_rewritten(conn, seq, "forged"):
        code, _, err = verify(api.system)

    assert code == 1
    assert f"entry {seq} (event {event_id}) was changed" in err
    assert verify(api.system)[0] == 0  # put back: it verifies again


async def test_a_changed_entry_with_a_recomputed_hash_is_still_caught(
    api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection
) -> None:
    seq, _ = seqs[0]  # seqs[1] comes after it: the next entry is chained to its old hash
    async with entry_rewritten(conn, seq, "forged by a DBA", rehash=True):
        code, _, err = verify(api.system)

    assert code == 1
    assert f"entry {seq} (event {seqs[0][1]}) was forged: signature does not verify with key" in err
    assert verify(api.system)[0] == 0


async def test_a_removed_entry_is_named(api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection) -> None:
    seq, _ = seqs[1]
    async with entry_removed(conn, seq):
        code, _, err = verify(api.system)

    assert code == 1
    assert f"entry {seq} was removed" in err
    assert verify(api.system)[0] == 0


async def test_reordered_entries_are_named(
    api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection
) -> None:
    (first, _), (second, moved) = seqs[0], seqs[1]

    async def swap() -> None:
        async with conn.transaction():
            await conn.execute("UPDATE audit.events SET seq = -seq WHERE seq = %s", (first,))
            await conn.execute("UPDATE audit.events SET seq = %s WHERE seq = %s", (first, second))
            await conn.execute("UPDATE audit.events SET seq = %s WHERE seq = %s", (second, -first))

    await swap()
    try:
        code, _, err = verify(api.system)
    finally:
        await swap()

    assert code == 1
    assert f"entry {first} (event {moved}) was reordered" in err
    assert verify(api.system)[0] == 0


def head_of(out: str) -> str:
    """`SEQ:HASH` of the head a successful verify printed."""
    words = out.split()
    return f"{words[words.index('head') + 1]}:{words[words.index('hash') + 1]}"


async def test_removing_the_newest_entries_is_caught_against_an_earlier_head(
    api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection
) -> None:
    async with chain_held(conn):
        code, out, err = verify(api.system)
        assert code == 0, err
        head = head_of(out)
        newest = int(head.split(":")[0])
        async with entry_removed(conn, newest):
            alone = verify(api.system)
            against = api.system.cli("audit", "verify", "--expect-head", head)

    assert alone[0] == 0  # a shorter chain verifies by itself…
    assert against.returncode == 1  # …but not against the head recorded before
    assert f"the chain ends at entry {newest - 1}, but entry {newest} was recorded earlier" in against.stderr
    assert api.system.cli("audit", "verify", "--expect-head", head).returncode == 0


async def test_a_rewritten_newest_entry_is_caught_by_its_signature(
    api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection
) -> None:
    async with chain_held(conn):
        newest, _ = await one(conn, "SELECT seq, event_id FROM audit.events ORDER BY seq DESC LIMIT 1")
        async with entry_rewritten(conn, newest, "forged by a DBA", rehash=True):
            code, _, err = verify(api.system)

    assert code == 1  # chained correctly, but only the vault could have signed it
    assert f"entry {newest}" in err
    assert "was forged: signature does not verify" in err


@asynccontextmanager
async def chain_held(conn: psycopg.AsyncConnection) -> AsyncIterator[None]:
    """The audit consumer kept from appending (it takes the same lock per batch) while a test changes the newest
    entries, so that nothing is chained to an entry the test puts back or removes."""
    await conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (CHAIN_LOCK,))
    try:
        yield
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (CHAIN_LOCK,))


@asynccontextmanager
async def entry_appended(conn: psycopg.AsyncConnection, label: str, signer: EventSigner | None) -> AsyncIterator[int]:
    """A made-up entry appended at the head, well linked (as a superuser would), signed by `signer` or not; its seq.
    Removed afterwards. Call it with the chain held."""
    cursor = conn.cursor(row_factory=namedtuple_row)
    head: Any = await (await cursor.execute("SELECT * FROM audit.events ORDER BY seq DESC LIMIT 1")).fetchone()
    entry = dataclasses.replace(entry_of(head), event_id=uuid.uuid4(), credential_label=label, key_id=None)
    if signer is not None:
        entry = dataclasses.replace(entry, key_id=signer.key_id, signature=signer.signature(entry))
    else:
        entry = dataclasses.replace(entry, signature=None)
    seq = head.seq + 1
    columns = {name: getattr(entry, name) for name in Entry.__dataclass_fields__}
    columns |= {"seq": seq, "prev_hash": head.hash, "hash": link(head.hash, entry)}
    columns |= {f"{d}_ordinal": None if columns[d] is None else 0 for d in DIMENSIONS}  # NULL: no such subject
    names = ", ".join(columns)
    await conn.execute(
        f"INSERT INTO audit.events ({names}) VALUES ({', '.join(['%s'] * len(columns))})",  # noqa: S608
        list(columns.values()),
    )
    try:
        yield seq
    finally:
        await conn.execute("DELETE FROM audit.events WHERE seq = %s", (seq,))


@pytest.mark.parametrize("signed_by", ["nobody", "an attacker's own key"])
async def test_an_injected_entry_is_caught_by_its_signature(
    api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection, signed_by: str
) -> None:
    own = EventSigner("vault", ed25519.private_key(ed25519.generate(), "attacker")) if signed_by != "nobody" else None
    async with chain_held(conn), entry_appended(conn, "injected by a DBA", own) as seq:
        code, _, err = verify(api.system)

    assert code == 1
    reason = f"signed by unknown key {own.key_id}" if own else "it is unsigned, but entries before it are signed"
    assert f"entry {seq} (event " in err
    assert f"was forged: {reason}" in err
    assert verify(api.system)[0] == 0


async def test_an_event_the_vault_sent_but_the_log_lacks_is_reported(
    api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection
) -> None:
    lost = uuid.uuid4()
    await conn.execute(
        "INSERT INTO vault.outbox (event_id, action, occurred_at, user_id, user_email, user_full_name, "
        "credential_id, credential_label, client_id, ip, user_agent, request_id, sent_at) "
        "VALUES (%s, 'credential_reveal', now() - interval '3 minutes', %s, 'e@example.com', 'E', %s, 'lost', "
        "%s, '', '', '', now() - interval '2 minutes')",
        (lost, uuid.uuid4(), uuid.uuid4(), uuid.uuid4()),
    )
    try:
        code, _, err = verify(api.system)
    finally:
        await conn.execute("DELETE FROM vault.outbox WHERE event_id = %s", (lost,))

    assert code == 1
    assert f"audit log incomplete: 1 events the producers sent are not in it (first: event {lost}" in err
    assert verify(api.system)[0] == 0


def test_a_malformed_expected_head_is_refused(api: Api) -> None:
    done = api.system.cli("audit", "verify", "--expect-head", "twelve:zz")
    assert done.returncode == 2  # usage
    assert "--expect-head takes SEQ:HASH" in done.stderr


def test_the_head_of_an_empty_chain_is_always_there(api: Api) -> None:
    """What verify prints on a new system (head 0, the genesis hash) is a head it accepts later."""
    done = api.system.cli("audit", "verify", "--expect-head", "0:" + "00" * 32)
    assert done.returncode == 0, done.stderr


def checkpoint(system: System, to: Path) -> None:
    done = system.cli("audit", "checkpoint", "--to", str(to))
    assert done.returncode == 0, done.stderr
    assert "checkpoint: head " in done.stdout


@asynccontextmanager
async def entry_dropped_and_rehashed(conn: psycopg.AsyncConnection, seq: int) -> AsyncIterator[None]:
    """The entry at `seq` deleted and every later one renumbered and re-linked (as a superuser hiding a reveal
    would: each later entry keeps its genuine signature), then everything put back. Call it with the chain held."""
    cursor = conn.cursor(row_factory=namedtuple_row)
    rows: list[Any] = await (
        await cursor.execute("SELECT * FROM audit.events WHERE seq >= %s ORDER BY seq", (seq,))
    ).fetchall()
    columns = list(rows[0]._fields)
    insert = f"INSERT INTO audit.events ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"  # noqa: S608
    await conn.execute("DELETE FROM audit.events WHERE seq >= %s", (seq,))
    prev = rows[0].prev_hash
    for row in rows[1:]:
        digest = link(prev, entry_of(row))
        await conn.execute(insert, list(row._replace(seq=row.seq - 1, prev_hash=prev, hash=digest)))
        prev = digest
    try:
        yield
    finally:
        await conn.execute("DELETE FROM audit.events WHERE seq >= %s", (seq,))
        for row in rows:
            await conn.execute(insert, list(row))


def test_a_checkpoint_is_a_signed_read_only_file_that_verify_accepts(
    api: Api, seqs: list[tuple[int, str]], tmp_path: Path
) -> None:
    checkpoint(api.system, tmp_path)
    checkpoint(api.system, tmp_path)

    files = sorted(tmp_path.glob("checkpoint-*.json"))
    assert len(files) == 2
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o444 for f in files)
    assert json.loads(files[0].read_text()).keys() == {"v", "seq", "hash", "time", "key_id", "signature"}
    done = api.system.cli("audit", "verify", "--checkpoints", str(tmp_path))
    assert done.returncode == 0, done.stderr


async def test_removed_newest_entries_are_caught_against_a_checkpoint(
    api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection, tmp_path: Path
) -> None:
    async with chain_held(conn):
        checkpoint(api.system, tmp_path)
        newest, _ = await one(conn, "SELECT seq, event_id FROM audit.events ORDER BY seq DESC LIMIT 1")
        async with entry_removed(conn, newest):
            alone = verify(api.system)
            against = api.system.cli("audit", "verify", "--checkpoints", str(tmp_path))

    assert alone[0] == 0  # genuine, well-linked entries: it verifies by itself…
    assert against.returncode == 1  # …but the checkpointed head is gone
    assert f"the chain ends at entry {newest - 1}, but entry {newest} was recorded earlier" in against.stderr


async def test_a_dropped_entry_with_the_rest_rehashed_is_caught_against_a_checkpoint(
    api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection, tmp_path: Path
) -> None:
    dropped, _ = seqs[1]
    async with chain_held(conn):
        checkpoint(api.system, tmp_path)
        async with entry_dropped_and_rehashed(conn, dropped):
            alone = verify(api.system)
            against = api.system.cli("audit", "verify", "--checkpoints", str(tmp_path))

    assert alone[0] == 0, alone[2]  # every signature genuine, every link recomputed…
    assert against.returncode == 1  # …but not the chain that was checkpointed
    assert "audit chain broken: the chain ends at entry" in against.stderr
    assert verify(api.system)[0] == 0


def test_an_edited_checkpoint_is_itself_reported(api: Api, seqs: list[tuple[int, str]], tmp_path: Path) -> None:
    checkpoint(api.system, tmp_path)
    (path,) = tmp_path.glob("checkpoint-*.json")
    fields = json.loads(path.read_text())
    path.chmod(0o644)
    path.write_text(json.dumps(fields | {"seq": fields["seq"] - 1}))

    done = api.system.cli("audit", "verify", "--checkpoints", str(tmp_path))

    assert done.returncode == 1
    assert f"checkpoint not trustworthy: {path}: its signature does not verify (edited or forged)" in done.stderr


async def test_a_checkpoint_of_a_broken_chain_is_refused(
    api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection, tmp_path: Path
) -> None:
    seq, _ = seqs[1]
    async with entry_rewritten(conn, seq, "forged"):
        done = api.system.cli("audit", "checkpoint", "--to", str(tmp_path))

    assert done.returncode == 1
    assert "no checkpoint written: the chain does not verify" in done.stderr
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240
