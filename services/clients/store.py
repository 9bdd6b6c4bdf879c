r"""Tables and queries of schema "clients". Returns rows; no rules, no proto.

Search: `name` and `company` each have a pg_trgm GIN index, so a substring search (`ILIKE '%term%'`,
with the caller's %, _ and \ escaped) stays an index scan at a million clients. Lists skip archived clients and
sort newest first by (created_at, id), served by a partial index over live clients.
Totals: `client_counts` keeps the number of live clients per status, maintained by statement-level
triggers (one update per statement, so bulk COPY stays fast); only a search term needs a real count.
"""

from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Row,
    Select,
    Table,
    Text,
    Uuid,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault.db import metadata as schema_metadata

metadata = schema_metadata("clients")

clients = Table(
    "clients",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("company", Text),
    Column("email", Text),
    Column("phone", Text),
    Column("status", Text, nullable=False),
    Column("notes", Text),
    Column("owner_user_id", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("archived_at", DateTime(timezone=True)),
    CheckConstraint("status in ('lead', 'active', 'inactive', 'archived')", name="status"),
    CheckConstraint("(status = 'archived') = (archived_at is not null)", name="archived"),
)
Index(
    "ix_clients_live_newest",
    clients.c.created_at.desc(),
    clients.c.id.desc(),
    postgresql_where=clients.c.archived_at.is_(None),
)

client_counts = Table(
    "client_counts",
    metadata,
    Column("status", Text, primary_key=True),
    Column("live", BigInteger, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("client_id", Uuid, ForeignKey("clients.clients.id"), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text),
    Column("status", Text, nullable=False),
    Column("priority", Text, nullable=False),
    Column("due_date", Date),
    Column("assignee_user_id", Uuid),
    Column("created_by_user_id", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    CheckConstraint("status in ('todo', 'in_progress', 'done')", name="status"),
    CheckConstraint("priority in ('low', 'medium', 'high')", name="priority"),
    Index(None, "client_id", "created_at", "id"),
)


def like_pattern(term: str) -> str:
    """A substring pattern in which %, _ and \\ from the caller match themselves."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _live_clients(term: str | None, status: str | None) -> list[Any]:
    conditions: list[Any] = [clients.c.archived_at.is_(None)]
    if status is not None:
        conditions.append(clients.c.status == status)
    if term:
        pattern = like_pattern(term)  # ILIKE on each column: what the two trigram indexes serve
        conditions.append(or_(clients.c.name.ilike(pattern), clients.c.company.ilike(pattern)))
    return conditions


async def list_clients(
    conn: AsyncConnection, *, term: str | None, status: str | None, limit: int, offset: int
) -> list[Row[Any]]:
    query: Select[Any] = (
        select(clients)
        .where(and_(*_live_clients(term, status)))
        .order_by(clients.c.created_at.desc(), clients.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list((await conn.execute(query)).all())


async def count_clients(conn: AsyncConnection, *, term: str | None, status: str | None) -> int:
    if term:
        query = select(func.count()).select_from(clients).where(and_(*_live_clients(term, status)))
    else:
        query = select(func.coalesce(func.sum(client_counts.c.live), 0))
        if status is not None:
            query = query.where(client_counts.c.status == status)
    return int((await conn.execute(query)).scalar_one())


async def get_client(
    conn: AsyncConnection, client_id: UUID, *, lock: bool = False, share: bool = False
) -> Row[Any] | None:
    """The client; `lock` holds it against any change, `share` only against archiving and edits."""
    query = select(clients).where(clients.c.id == client_id)
    if lock or share:
        query = query.with_for_update(read=share and not lock)
    return (await conn.execute(query)).one_or_none()


async def insert_client(conn: AsyncConnection, **values: object) -> Row[Any]:
    row: Row[Any] = (await conn.execute(insert(clients).values(**values).returning(clients))).one()
    return row


async def update_client(conn: AsyncConnection, client_id: UUID, **values: object) -> Row[Any]:
    query = update(clients).where(clients.c.id == client_id).values(**values).returning(clients)
    row: Row[Any] = (await conn.execute(query)).one()
    return row


async def list_tasks(
    conn: AsyncConnection, client_id: UUID, *, status: str | None, limit: int, offset: int
) -> list[Row[Any]]:
    query = select(tasks).where(*_tasks_of(client_id, status))
    query = query.order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit).offset(offset)
    return list((await conn.execute(query)).all())


async def count_tasks(conn: AsyncConnection, client_id: UUID, *, status: str | None) -> int:
    query = select(func.count()).select_from(tasks).where(*_tasks_of(client_id, status))
    return int((await conn.execute(query)).scalar_one())


def _tasks_of(client_id: UUID, status: str | None) -> list[Any]:
    return [tasks.c.client_id == client_id, *([tasks.c.status == status] if status else [])]


async def get_task(conn: AsyncConnection, client_id: UUID, task_id: UUID, *, lock: bool = False) -> Row[Any] | None:
    """A task of this client only: one under another client does not exist here."""
    query = select(tasks).where(tasks.c.id == task_id, tasks.c.client_id == client_id)
    return (await conn.execute(query.with_for_update() if lock else query)).one_or_none()


async def insert_task(conn: AsyncConnection, **values: object) -> Row[Any]:
    row: Row[Any] = (await conn.execute(insert(tasks).values(**values).returning(tasks))).one()
    return row


async def update_task(conn: AsyncConnection, task_id: UUID, **values: object) -> Row[Any]:
    row: Row[Any] = (
        await conn.execute(update(tasks).where(tasks.c.id == task_id).values(**values).returning(tasks))
    ).one()
    return row


async def delete_task(conn: AsyncConnection, task_id: UUID) -> None:
    await conn.execute(delete(tasks).where(tasks.c.id == task_id))
