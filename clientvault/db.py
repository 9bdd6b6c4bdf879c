"""The database engine: SQLAlchemy 2 async over psycopg 3, pooled, one per process and schema."""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import MetaData
from sqlalchemy.exc import InterfaceError, OperationalError, TimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

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


def metadata(schema: str) -> MetaData:
    return MetaData(schema=schema, naming_convention=NAMING)


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
    except (OperationalError, InterfaceError, TimeoutError) as error:
        raise Unavailable("the database is unavailable") from error


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, pool_timeout_s: float = 5.0, name: str = "clientvault"):
        self.engine: AsyncEngine = create_async_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=pool_timeout_s,
            # No pre-ping (a round trip per checkout): a connection found dead fails its request with 503
            # and SQLAlchemy then discards the whole pool, so after a database restart one request fails.
            connect_args={"application_name": name, "connect_timeout": 5},
            # A failed statement's message would otherwise carry its parameters (emails, sealed secrets, hashes)
            # into the logged traceback.
            hide_parameters=True,
        )

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

    @classmethod
    def for_service(cls, settings: "Settings", name: str) -> "Database":
        """The pool of a service process, sized and bounded by its settings."""
        return cls(
            settings.require_database_url(),
            pool_size=settings.db_pool_size,
            pool_timeout_s=settings.db_pool_timeout_s,
            name=f"clientvault-{name}",
        )

    async def dispose(self) -> None:
        await self.engine.dispose()
