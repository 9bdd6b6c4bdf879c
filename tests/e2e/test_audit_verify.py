"""`clientvault audit verify`: the chain verifies, and each kind of tampering (through a superuser
connection, as an attacker with database access would) is named at the first entry it touches.
Each test puts the table back as it was, so the run-wide system's chain verifies again."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

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


async def test_a_changed_entry_is_named(api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection) -> None:
    seq, event_id = seqs[1]
    (label,) = await one(conn, "SELECT credential_label FROM audit.events WHERE seq = %s", seq)
    await conn.execute("UPDATE audit.events SET credential_label = 'forged' WHERE seq = %s", (seq,))
    try:
        code, _, err = verify(api.system)
    finally:
        await conn.execute("UPDATE audit.events SET credential_label = %s WHERE seq = %s", (label, seq))

    assert code == 1
    assert f"entry {seq} (event {event_id}) was changed" in err
    assert verify(api.system)[0] == 0  # put back: it verifies again


async def test_a_changed_entry_with_a_recomputed_hash_is_still_caught(
    api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection
) -> None:
    seq, _ = seqs[0]
    (original,) = await one(conn, "SELECT hash FROM audit.events WHERE seq = %s", seq)
    await conn.execute("UPDATE audit.events SET hash = sha256(hash) WHERE seq = %s", (seq,))
    try:
        code, _, err = verify(api.system)
    finally:
        await conn.execute("UPDATE audit.events SET hash = %s WHERE seq = %s", (original, seq))

    assert code == 1
    assert f"entry {seq}" in err
    assert "changed" in err


async def test_a_removed_entry_is_named(api: Api, seqs: list[tuple[int, str]], conn: psycopg.AsyncConnection) -> None:
    seq, _ = seqs[1]
    cursor = await conn.execute("SELECT * FROM audit.events WHERE seq = %s", (seq,))
    row = await cursor.fetchone()
    assert row is not None
    columns = [c.name for c in cursor.description or ()]
    await conn.execute("DELETE FROM audit.events WHERE seq = %s", (seq,))
    try:
        code, _, err = verify(api.system)
    finally:
        await conn.execute(
            f"INSERT INTO audit.events ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",  # noqa: S608
            row,
        )

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
