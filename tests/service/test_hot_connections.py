"""The connections of the hot statements (`Database.hot`, clientvault/db.py) on a real PostgreSQL: a connection the
server closed or one left mid-statement is never lent again, the next statement gets a fresh one at once, and no
more than HOT_POOL_SIZE are open however many statements wait.
"""

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from clientvault.db import HOT_POOL_SIZE, Database, fetch_one
from clientvault.errors import Unavailable

NAME = "hot-connections-test"
BACKEND = "SELECT pg_backend_pid() AS pid"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=2, pool_timeout_s=0.5, name=NAME)
    yield database
    await database.dispose()


async def backend(db: Database) -> int:
    async with db.hot() as conn:
        return int((await fetch_one(conn, BACKEND, {})).pid)


async def open_connections(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        row = await (await admin.execute(query, [NAME])).fetchone()
        return int(row[0]) if row else 0


async def test_a_connection_the_server_closed_is_replaced_at_once(db: Database, database_url: str) -> None:
    first = await backend(db)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", [first])
    await asyncio.sleep(0.2)  # the server's goodbye reaches the idle connection's socket
    assert await backend(db) != first  # no error: a fresh connection, opened in this request


async def test_a_statement_cancelled_midway_leaves_its_connection_closed(db: Database) -> None:
    async def sleeping() -> None:
        async with db.hot() as conn:
            await fetch_one(conn, "SELECT pg_sleep(5) AS slept", {})

    task = asyncio.create_task(sleeping())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(2):  # not queued behind the cancelled statement's connection
        assert await backend(db) > 0


async def test_no_more_than_hot_pool_size_connections_and_a_wait_past_the_timeout_is_unavailable(
    db: Database, database_url: str
) -> None:
    async def busy() -> None:
        async with db.hot() as conn:
            await fetch_one(conn, "SELECT pg_sleep(0.3) AS slept", {})

    waiting = [asyncio.create_task(busy()) for _ in range(3 * HOT_POOL_SIZE)]
    await asyncio.sleep(0.15)
    assert 0 < await open_connections(database_url) <= HOT_POOL_SIZE
    # three rounds of 0.3 s behind HOT_POOL_SIZE connections: the last round waits past the 0.5 s pool timeout
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert any(isinstance(result, Unavailable) for result in results)
    assert all(result is None or isinstance(result, Unavailable) for result in results)
    assert await backend(db) > 0  # and it serves again
