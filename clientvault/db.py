"""The database engine: SQLAlchemy 2 async over psycopg 3, pooled, one per process and schema; and a few psycopg
connections of its own for the hot single statements (`Database.hot`)."""

import asyncio
import select
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql as pg_sql
from psycopg.rows import namedtuple_row
from sqlalchemy import ColumnElement, MetaData, Table, any_, bindparam, event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as EnginePoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from clientvault import metrics, tracing
from clientvault.errors import Unavailable

if TYPE_CHECKING:
    from clientvault.settings import Settings

# Constraint names that Alembic migrations and the tables agree on.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# Connections of a process for its hot single statements (`Database.hot`), besides the engine's `pool_size`: each
# statement holds one for a round trip, so a few serve two cores' worth of requests.
HOT_POOL_SIZE = 4


def metadata(schema: str) -> MetaData:
    return MetaData(schema=schema, naming_convention=NAMING)


def like_pattern(term: str) -> str:
    """A substring pattern for LIKE in which %, _ and \\ from the caller match themselves."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def driver_sql(statement: Any) -> str:
    """A SQLAlchemy statement as the SQL text psycopg runs (`%(name)s` parameters, typed casts), rendered once at
    import for a hot statement (`fetch_one`, `fetch_all`), so its columns are still named in one place: the table."""
    from sqlalchemy.dialects.postgresql.psycopg import dialect

    return str(statement.compile(dialect=dialect()))  # type: ignore[no-untyped-call]


def sqlalchemy_url(url: str) -> str:
    """`postgresql://…` as operators write it, with the psycopg 3 driver named for SQLAlchemy."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    raise SystemExit("DATABASE_URL must start with postgresql://")


@contextmanager
def _unavailable_on_outage() -> Iterator[None]:
    try:
        yield
    except EnginePoolTimeout as error:  # no pooled connection within the pool timeout
        metrics.DB_POOL_TIMEOUTS.inc()
        raise Unavailable("the database is unavailable") from error
    except (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError) as error:
        raise Unavailable("the database is unavailable") from error


def _hung_up(fileno: int) -> bool:
    """Whether the server closed an idle connection (a database restart, a failover, an idle timeout): an idle
    connection has nothing to read unless the server hung up, so a readable socket is a dead one. One poll(2), not
    the round trip of SQLAlchemy's `pool_pre_ping` (measured: +170 us of CPU per checkout, about a third of a
    checkout and `SELECT 1`)."""
    return bool(select.select([fileno], [], [], 0)[0])


def _closed_by_server(dbapi_connection: Any, _record: object, _proxy: object) -> None:
    """Replaces a pooled connection that the server closed while it sat idle, so the next request gets a fresh one
    instead of failing: raising DisconnectionError makes the pool reconnect that slot and check it again."""
    if _hung_up(dbapi_connection.driver_connection.fileno()):
        raise DisconnectionError("the server closed this idle connection")


class _HotConnections:
    """At most HOT_POOL_SIZE psycopg connections in autocommit, kept idle between statements and opened in the request
    that finds none idle: no background task and so no reconnection backoff, so the first request after a database
    restart connects at once. (A psycopg_pool waited out its backoff there, answering 503 where a 200 was due,
    tests/faults/test_restarts.py; lending the engine's pooled connections costs ~130 us more CPU per statement,
    bench/README.md.) A connection left mid-statement (the call was cancelled) or broken is closed, not lent again."""

    def __init__(self, conninfo: str, connect_args: Mapping[str, Any], timeout_s: float) -> None:
        self._conninfo = conninfo
        self._connect_args = {**connect_args, "autocommit": True}
        self._timeout_s = timeout_s
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(HOT_POOL_SIZE)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator["psycopg.AsyncConnection[Any]"]:
        if self._slots.locked():  # all in use: wait for one, as long as the engine's pool would
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._slots.acquire()
            except TimeoutError:
                metrics.DB_POOL_TIMEOUTS.inc()
                raise Unavailable("the database is unavailable") from None
        else:
            await self._slots.acquire()
        conn = None
        try:
            while self._idle and conn is None:
                conn = self._idle.pop()
                if _hung_up(conn.fileno()):
                    await conn.close()
                    conn = None
            if conn is None:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, **self._connect_args)
            yield conn
        finally:
            if conn is not None:
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    self._idle.append(conn)
                else:
                    await conn.close()
            self._slots.release()

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        pool_timeout_s: float = 5.0,
        statement_timeout_s: float = 0,
        name: str = "clientvault",
    ):
        connect_args: dict[str, object] = {"application_name": name, "connect_timeout": 5}
        if statement_timeout_s:
            connect_args["options"] = f"-c statement_timeout={round(statement_timeout_s * 1000)}"
        self.engine: AsyncEngine = create_async_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=pool_timeout_s,
            connect_args=connect_args,
            # An error's message must not carry the statement's values (password hashes, sealed secrets).
            hide_parameters=True,
        )
        event.listen(self.engine.sync_engine, "checkout", _closed_by_server)
        tracing.instrument_engine(self.engine)
        conninfo = sqlalchemy_url(url).replace("postgresql+psycopg://", "postgresql://", 1)
        self._hot = _HotConnections(conninfo, connect_args, pool_timeout_s)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction. A database that cannot be reached becomes `Unavailable` (503), not a 500."""
        with _unavailable_on_outage():
            async with self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection in autocommit, for a single read: no BEGIN and COMMIT round trips."""
        with _unavailable_on_outage():
            async with self.engine.connect() as conn:
                yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def hot(self) -> AsyncIterator["psycopg.AsyncConnection[Any]"]:
        """A psycopg connection in autocommit of the process's few hot ones (`_HotConnections`), for the hot
        statements (`GET /users/me`, a reveal, the first page of clients and its total) run with `fetch_one` or
        `fetch_all`: no SQLAlchemy compile, result, pool or greenlet around them (in-process, a primary-key read
        costs ~80-120 us of CPU this way, ~210-250 us on a connection lent by the engine's pool, ~470-570 us through
        `read`; bench/README.md). Unreachable database or no connection within the pool timeout: `Unavailable`."""
        with _unavailable_on_outage():
            async with self._hot.connection() as conn:
                yield conn

    @classmethod
    def for_service(cls, settings: "Settings", name: str) -> "Database":
        """The pool of a service process, sized and bounded by its settings, and reported in its metrics."""
        db = cls(
            settings.require_database_url(),
            pool_size=settings.db_pool_size,
            pool_timeout_s=settings.db_pool_timeout_s,
            statement_timeout_s=settings.db_statement_timeout_s,
            name=f"clientvault-{name}",
        )
        metrics.watch_pool(db.engine.pool)  # type: ignore[arg-type]
        return db

    async def dispose(self) -> None:
        await self._hot.close()
        await self.engine.dispose()

    async def __aenter__(self) -> "Database":
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.dispose()


async def fetch_one(conn: "psycopg.AsyncConnection[Any]", sql: str, params: Mapping[str, Any]) -> Any:
    """One row (attributes named as the columns) of a hot statement on a `Database.hot` connection, prepared by the
    server (once per connection) and traced like the engine's statements when tracing is on."""
    rows = await fetch_all(conn, sql, params)
    return rows[0] if rows else None


async def fetch_all(conn: "psycopg.AsyncConnection[Any]", sql: str, params: Mapping[str, Any]) -> list[Any]:
    """Every row of a hot statement, as `fetch_one` answers the first."""
    with tracing.statement(sql):
        cursor = conn.cursor(row_factory=namedtuple_row)
        await cursor.execute(sql, params, prepare=True)
        return await cursor.fetchall()


async def copy_rows(conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Inserts rows (each with the same keys) with COPY, in `conn`'s transaction: for bulk appends (the audit
    chain), where a multi-row INSERT through SQLAlchemy spends more CPU on compiling and binding than PostgreSQL
    spends storing. Columns left out take their defaults, as with INSERT."""
    if not rows:
        return
    columns = list(rows[0])
    statement = pg_sql.SQL("COPY {} ({}) FROM STDIN").format(
        pg_sql.Identifier(*([table.schema] if table.schema else []), table.name),
        pg_sql.SQL(", ").join(map(pg_sql.Identifier, columns)),
    )
    pooled = await conn.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = pooled.driver_connection  # type: ignore[assignment]
    with tracing.statement(f"COPY {table.fullname}"):
        async with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                await copy.write_row([row[column] for column in columns])


def one_of(column: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """`column = ANY(:values)`: an IN over many values as one array parameter, where `column.in_` would render
    and bind one parameter per value (the outbox relay marks 1,000 rows at once)."""
    return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
