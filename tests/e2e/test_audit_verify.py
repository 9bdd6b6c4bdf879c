"""`clientvault audit verify`: the chain verifies, and each kind of tampering (through a superuser
connection, as an attacker with database access would) is named at the first entry it touches.
Each test puts the table back as it was, so the run-wide system's chain verifies again."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg.rows import namedtuple_row

from services.audit.chain import entry_of, link
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
    assert f"entry {seq}" in err
    assert "changed" in err
    assert f"entry {seq} is not the one entry {seq + 1} was chained to" in err  # found by its successor
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


async def test_a_rewritten_newest_entry_is_caught_against_an_earlier_head(
    api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection
) -> None:
    code, out, err = verify(api.system)
    assert code == 0, err
    head = head_of(out)
    newest = int(head.split(":")[0])
    async with entry_rewritten(conn, newest, "forged by a DBA", rehash=True):
        alone = verify(api.system)
        against = api.system.cli("audit", "verify", "--expect-head", head)

    assert alone[0] == 0  # the forged entry is chained correctly…
    assert against.returncode == 1  # …but it is not the entry recorded before
    assert f"entry {newest} is not the entry recorded earlier" in against.stderr


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
    assert f"audit log incomplete: 1 events the vault sent are not in it (first: event {lost}" in err
    assert verify(api.system)[0] == 0


def test_a_malformed_expected_head_is_refused(api: Api) -> None:
    done = api.system.cli("audit", "verify", "--expect-head", "twelve:zz")
    assert done.returncode == 2  # usage
    assert "--expect-head takes SEQ:HASH" in done.stderr


def test_the_head_of_an_empty_chain_is_always_there(api: Api) -> None:
    """What verify prints on a new system (head 0, the genesis hash) is a head it accepts later."""
    done = api.system.cli("audit", "verify", "--expect-head", "0:" + "00" * 32)
    assert done.returncode == 0, done.stderr
