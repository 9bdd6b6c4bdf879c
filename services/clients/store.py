r"""Tables and queries of schema "clients". Returns rows; no rules, no proto.

Search: `client_search` (migration 0009) holds what a search filters, counts and orders by, one row per client:
id, created_at, status and `search` = lower(name) || newline || lower(company). Triggers on `clients` write it in the
same transaction as every insert, update, delete and truncate (one run per statement, so a bulk COPY stays fast), so
it never disagrees with `clients`, and only this module's queries read it. A substring search (`search LIKE
lower('%term%')`, the caller's %, _ and \ escaped) is a scan of its pg_trgm GIN index (live or archived clients,
one each), and its exact count rechecks the LIKE on this narrow table, about 40% of the wide rows' pages: that
recheck was the search tail at a million clients (bench/README.md). The page takes the newest 20 ids here (a common
term walks the live newest-first index until it has them), then their rows from `clients`.
Lists without a term skip archived clients and sort newest first by (created_at, id), served by a partial index
over live clients.
Totals: `client_counts` keeps the number of live clients per status, maintained by statement-level
triggers (one update per statement, so bulk COPY stays fast); only a search term needs a real count. That unsearched,
unscoped list of live clients and its kept total (the web frontend's first page) also run off the engine, on a hot
connection (`read_live_clients`, `read_live_count`).
Archived clients list from a partial index of their own (migration 0005) and are counted for real.
Members: `client_members` (migration 0006). A query scoped to a member (`member=user_id`, CLIENTVAULT_CLIENT_SCOPING)
keeps only the clients that user is a member of or holds an active grant for (`access_requests`, migration 0008:
approved, not revoked, `now() < expires_at`), in the same statement (a semi-join on the members' (user_id,
client_id) index and the grants' partial index), and counts them for real: the kept counts are everyone's. A grant
stops giving access at its `expires_at` by this condition alone, with nobody acting.
"""

from collections.abc import Collection
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection as DriverConnection
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Row,
    Select,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    literal_column,
    not_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault.db import driver_sql, fetch_all, fetch_one, like_pattern
from clientvault.db import metadata as schema_metadata
from clientvault.idempotency import idempotency_table
from clientvault.outbox import outbox_table

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
    Column("revision", BigInteger, nullable=False, server_default="1"),  # the ETag: +1 on every change (0004)
    Column("reveal_reason_required", Boolean, nullable=False, server_default=false()),  # 0007
    CheckConstraint("status in ('lead', 'active', 'inactive', 'archived')", name="status"),
    CheckConstraint("(status = 'archived') = (archived_at is not null)", name="archived"),
)
Index(
    "ix_clients_live_newest",
    clients.c.created_at.desc(),
    clients.c.id.desc(),
    postgresql_where=clients.c.archived_at.is_(None),
)

CLIENT_FIELDS = list(clients.c)  # what a row answers

# What a search reads (migration 0009): written only by the triggers on `clients`, never by this code.
client_search = Table(
    "client_search",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False),  # "archived": an archived client; any other: live
    Column("search", Text, nullable=False),  # lower(name) || newline || lower(coalesce(company, ''))
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
    Column("origin_key", Text),  # what made the task, unique per client and creator (migration 0003); NULL: none
    Column("revision", BigInteger, nullable=False, server_default="1"),  # the ETag: +1 on every change (0004)
    CheckConstraint("status in ('todo', 'in_progress', 'done')", name="status"),
    CheckConstraint("priority in ('low', 'medium', 'high')", name="priority"),
    Index(None, "client_id", "created_at", "id"),
    UniqueConstraint("client_id", "created_by_user_id", "origin_key"),
)

# A create's idempotency key per user, with its first reply (clientvault/idempotency.py; migration 0004).
idempotency_keys = idempotency_table(metadata)


client_members = Table(
    "client_members",
    metadata,
    Column("client_id", Uuid, ForeignKey("clients.clients.id"), primary_key=True),
    Column("user_id", Uuid, primary_key=True),
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("added_by_user_id", Uuid, nullable=False),
    Index(None, "user_id", "client_id"),
)
Index(
    "ix_clients_archived_newest",
    clients.c.created_at.desc(),
    clients.c.id.desc(),
    postgresql_where=clients.c.archived_at.is_not(None),
)


outbox = outbox_table(metadata)  # the audit events of member changes and unarchiving (services/clients/audit.py)

# Access requests and grants (migration 0008; services/clients/grants.py): an approved row is a grant.
access_requests = Table(
    "access_requests",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("client_id", Uuid, ForeignKey("clients.clients.id"), nullable=False),
    Column("user_id", Uuid, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("ticket_ref", Text),
    Column("minutes", Integer, nullable=False),
    Column("break_glass", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Column("decided_by_user_id", Uuid),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by_user_id", Uuid),
    Column("ended_at", DateTime(timezone=True)),  # its end recorded (revoked, or the expiry noticed): once
    CheckConstraint("status in ('pending', 'approved', 'denied')", name="status"),
)


def _active_grant() -> list[Any]:
    """An approved grant in force now: not revoked, not past its expiry (PostgreSQL's clock, at the statement's
    transaction start)."""
    return [
        access_requests.c.status == "approved",
        access_requests.c.revoked_at.is_(None),
        access_requests.c.expires_at > func.now(),
    ]


def _membership(member: UUID | None, client_id: Any = clients.c.id) -> list[Any]:
    """Nothing when unscoped; else: `client_id` is one of `member`'s clients, or one they hold an active grant for."""
    if member is None:
        return []
    members = select(client_members.c.client_id).where(client_members.c.user_id == member)
    granted = select(access_requests.c.client_id).where(access_requests.c.user_id == member, *_active_grant())
    return [client_id.in_(members.union_all(granted))]


def _listed(term: str | None, status: str | None, archived: bool, member: UUID | None) -> list[Any]:
    """The conditions of a list: on `clients` without a term (its partial indexes say archived by `archived_at`), on
    `client_search` with one (status "archived" is the same fact: the clients table's check ties them)."""
    table = client_search if term else clients
    archived_now = table.c.status == "archived" if term else table.c.archived_at.is_not(None)
    conditions: list[Any] = [archived_now if archived else not_(archived_now)]
    if status is not None and not archived:
        conditions.append(table.c.status == bindparam("status", status))
    if term:
        # LIKE on the lower-cased text, lower() applied by PostgreSQL to both sides so they agree
        conditions.append(client_search.c.search.like(func.lower(like_pattern(term))))
    return [*conditions, *_membership(member, table.c.id)]


def list_clients_query(
    *,
    term: str | None,
    status: str | None,
    limit: int,
    offset: int,
    archived: bool = False,
    member: UUID | None = None,
) -> Select[Any]:
    """The page query (also rendered by bench/clients.py, so the benchmark runs exactly this SQL): live clients,
    or with `archived` the archived ones; with `member` only that user's clients. A search picks the page's ids on
    `client_search`, then reads only those rows of `clients`."""
    table = client_search if term else clients
    where = and_(*_listed(term, status, archived, member))
    newest = (table.c.created_at.desc(), table.c.id.desc())
    # named, so that the hot path passes them by name (LIVE_PAGE_SQL)
    first, skipped = bindparam("limit", limit, Integer), bindparam("offset", offset, Integer)
    if not term:
        return select(*CLIENT_FIELDS).where(where).order_by(*newest).limit(first).offset(skipped)
    page = select(table.c.id, table.c.created_at).where(where).order_by(*newest).limit(first).offset(skipped)
    found = page.subquery("page")
    query = select(*CLIENT_FIELDS).join_from(found, clients, clients.c.id == found.c.id)
    return query.order_by(found.c.created_at.desc(), found.c.id.desc())


def count_clients_query(
    *, term: str | None, status: str | None, archived: bool = False, member: UUID | None = None
) -> Select[Any]:
    """The total: the kept live counts for an unscoped list of live clients without a term, else a real count (a
    search's on `client_search`)."""
    if term or archived or member is not None:
        table = client_search if term else clients
        return select(func.count()).select_from(table).where(and_(*_listed(term, status, archived, member)))
    # 0 written in, not bound: the hot path passes only the parameters it names (LIVE_COUNT_SQL)
    query = select(func.coalesce(func.sum(client_counts.c.live), literal_column("0")))
    return query if status is None else query.where(client_counts.c.status == bindparam("status", status))


async def list_clients(
    conn: AsyncConnection,
    *,
    term: str | None,
    status: str | None,
    limit: int,
    offset: int,
    archived: bool = False,
    member: UUID | None = None,
) -> list[Row[Any]]:
    query = list_clients_query(term=term, status=status, limit=limit, offset=offset, archived=archived, member=member)
    return list((await conn.execute(query)).all())


async def count_clients(
    conn: AsyncConnection, *, term: str | None, status: str | None, archived: bool = False, member: UUID | None = None
) -> int:
    query = count_clients_query(term=term, status=status, archived=archived, member=member)
    return int((await conn.execute(query)).scalar_one())


# The unscoped list of live clients without a term and its kept total (the web frontend's first page, on every
# visit), run off the engine on a hot connection (clientvault/db.py `Database.hot`): rendered once from the builders
# above, for every status and for one (by `status is not None`), with the parameters they name.
LIVE_PAGE_SQL = {
    one: driver_sql(list_clients_query(term=None, status="" if one else None, limit=0, offset=0))
    for one in (False, True)
}
LIVE_COUNT_SQL = {one: driver_sql(count_clients_query(term=None, status="" if one else None)) for one in (False, True)}


async def read_live_clients(conn: DriverConnection[Any], *, status: str | None, limit: int, offset: int) -> list[Any]:
    """`list_clients` of the live clients without a term, unscoped, off the engine (the hot path)."""
    params = {"status": status, "limit": limit, "offset": offset}
    return await fetch_all(conn, LIVE_PAGE_SQL[status is not None], params)


async def read_live_count(conn: DriverConnection[Any], *, status: str | None) -> int:
    """`count_clients` of the live clients without a term, unscoped (their kept counts), off the engine."""
    return int((await fetch_one(conn, LIVE_COUNT_SQL[status is not None], {"status": status}))[0])


async def get_client(
    conn: AsyncConnection, client_id: UUID, *, lock: bool = False, share: bool = False, member: UUID | None = None
) -> Row[Any] | None:
    """The client; `lock` holds it against any change, `share` only against archiving and edits. With `member`,
    only if that user is a member of it (in the same statement)."""
    query = select(*CLIENT_FIELDS).where(clients.c.id == client_id, *_membership(member))
    if lock or share:
        query = query.with_for_update(read=share and not lock, of=clients)
    return (await conn.execute(query)).one_or_none()


async def get_clients(conn: AsyncConnection, client_ids: list[UUID], *, member: UUID | None = None) -> list[Row[Any]]:
    query = select(*CLIENT_FIELDS).where(clients.c.id.in_(client_ids), *_membership(member))
    return list((await conn.execute(query)).all())


async def list_members(conn: AsyncConnection, client_id: UUID) -> list[Row[Any]]:
    query = select(client_members).where(client_members.c.client_id == client_id)
    return list((await conn.execute(query.order_by(client_members.c.added_at, client_members.c.user_id))).all())


async def add_member(conn: AsyncConnection, **values: object) -> tuple[Row[Any], bool]:
    """The member's row, and whether this call added it (False: a member already, kept as it was)."""
    added = (
        await conn.execute(
            pg_insert(client_members).values(**values).on_conflict_do_nothing().returning(client_members)
        )
    ).one_or_none()
    if added is not None:
        return added, True
    key = (client_members.c.client_id == values["client_id"], client_members.c.user_id == values["user_id"])
    return (await conn.execute(select(client_members).where(*key))).one(), False


async def remove_member(conn: AsyncConnection, client_id: UUID, user_id: UUID) -> bool:
    query = delete(client_members).where(client_members.c.client_id == client_id, client_members.c.user_id == user_id)
    return bool((await conn.execute(query.returning(client_members.c.user_id))).one_or_none())


async def is_member(conn: AsyncConnection, client_id: UUID, user_id: UUID) -> bool:
    query = select(true()).where(client_members.c.client_id == client_id, client_members.c.user_id == user_id)
    return (await conn.execute(query)).one_or_none() is not None


async def active_grant(conn: AsyncConnection, client_id: UUID, user_id: UUID) -> Row[Any] | None:
    """The user's active grant for the client that ends last (None: they hold none)."""
    query = select(access_requests).where(
        access_requests.c.client_id == client_id, access_requests.c.user_id == user_id, *_active_grant()
    )
    return (await conn.execute(query.order_by(access_requests.c.expires_at.desc()).limit(1))).one_or_none()


async def insert_access_request(conn: AsyncConnection, **values: object) -> Row[Any] | None:
    """The new request; None when the user has a pending one for this client already (one pending per pair)."""
    query = pg_insert(access_requests).values(**values).on_conflict_do_nothing().returning(access_requests)
    row: Row[Any] | None = (await conn.execute(query)).one_or_none()
    return row


async def get_access_request(conn: AsyncConnection, request_id: UUID, *, lock: bool = False) -> Row[Any] | None:
    query = select(access_requests).where(access_requests.c.id == request_id)
    return (await conn.execute(query.with_for_update() if lock else query)).one_or_none()


def _requests_of(user_id: UUID | None, status: str | None) -> list[Any]:
    where: list[Any] = [] if user_id is None else [access_requests.c.user_id == user_id]
    if status == "active":
        where += [*_active_grant(), access_requests.c.ended_at.is_(None)]
    elif status is not None:
        where.append(access_requests.c.status == status)
    return where


async def list_access_requests(
    conn: AsyncConnection, *, user_id: UUID | None, status: str | None, limit: int, offset: int
) -> list[Row[Any]]:
    """Newest first; with `user_id` only that user's; `status` "active": grants in force now."""
    query = select(access_requests).where(*_requests_of(user_id, status))
    query = query.order_by(access_requests.c.created_at.desc(), access_requests.c.id.desc())
    return list((await conn.execute(query.limit(limit).offset(offset))).all())


async def count_access_requests(conn: AsyncConnection, *, user_id: UUID | None, status: str | None) -> int:
    query = select(func.count()).select_from(access_requests).where(*_requests_of(user_id, status))
    return int((await conn.execute(query)).scalar_one())


async def update_access_request(conn: AsyncConnection, request_id: UUID, **values: object) -> Row[Any]:
    query = update(access_requests).where(access_requests.c.id == request_id).values(**values)
    row: Row[Any] = (await conn.execute(query.returning(access_requests))).one()
    return row


async def end_expired_grants(conn: AsyncConnection, limit: int) -> list[Row[Any]]:
    """Records the end of up to `limit` grants past their expiry whose end is not recorded yet, and answers them.
    Rows another replica is recording are skipped (SKIP LOCKED), and `ended_at` is set once: each end is recorded by
    exactly one transaction."""
    due = (
        select(access_requests.c.id)
        .where(
            access_requests.c.status == "approved",
            access_requests.c.ended_at.is_(None),
            access_requests.c.expires_at <= func.now(),
        )
        .order_by(access_requests.c.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    query = update(access_requests).where(access_requests.c.id.in_(due.scalar_subquery()))
    return list((await conn.execute(query.values(ended_at=func.now()).returning(access_requests))).all())


async def insert_client(conn: AsyncConnection, **values: object) -> Row[Any]:
    row: Row[Any] = (await conn.execute(insert(clients).values(**values).returning(*CLIENT_FIELDS))).one()
    return row


async def update_client(
    conn: AsyncConnection, client_id: UUID, *, if_revision: Collection[int] = (), **values: object
) -> Row[Any] | None:
    """Changes the client and moves its revision on; with `if_revision`, only while its revision is one of those
    (checked and set in this one statement): None when it is not."""
    query = update(clients).where(clients.c.id == client_id, *_revision_in(clients, if_revision))
    query = query.values(revision=clients.c.revision + 1, **values).returning(*CLIENT_FIELDS)
    return (await conn.execute(query)).one_or_none()


def _revision_in(table: Table, revisions: Collection[int]) -> list[Any]:
    return [table.c.revision.in_(list(revisions))] if revisions else []


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


async def get_task(
    conn: AsyncConnection, client_id: UUID, task_id: UUID, *, lock: bool = False, member: UUID | None = None
) -> Row[Any] | None:
    """A task of this client only: one under another client does not exist here (nor, with `member`, under a
    client that user is not a member of)."""
    of_client = (tasks.c.id == task_id, tasks.c.client_id == client_id, *_membership(member, tasks.c.client_id))
    query = select(tasks).where(*of_client)
    return (await conn.execute(query.with_for_update() if lock else query)).one_or_none()


async def insert_task(conn: AsyncConnection, **values: object) -> Row[Any]:
    row: Row[Any] = (await conn.execute(insert(tasks).values(**values).returning(tasks))).one()
    return row


async def insert_task_once(
    conn: AsyncConnection, *, client_id: UUID, created_by_user_id: UUID, origin_key: str, **values: object
) -> Row[Any]:
    """The task with this origin key that this creator made in this client: inserted now, or the one made before
    (a concurrent insert of the same key waits on the unique index, then finds it)."""
    key = {"client_id": client_id, "created_by_user_id": created_by_user_id, "origin_key": origin_key}
    inserted: Row[Any] | None = (
        await conn.execute(
            pg_insert(tasks).values(**key, **values).on_conflict_do_nothing(index_elements=list(key)).returning(tasks)
        )
    ).one_or_none()
    if inserted is not None:
        return inserted
    row: Row[Any] = (await conn.execute(select(tasks).filter_by(**key))).one()
    return row


async def update_task(
    conn: AsyncConnection, task_id: UUID, *, if_revision: Collection[int] = (), **values: object
) -> Row[Any] | None:
    """Changes the task and moves its revision on; with `if_revision` only while it is one of those (None if not)."""
    query = update(tasks).where(tasks.c.id == task_id, *_revision_in(tasks, if_revision))
    query = query.values(revision=tasks.c.revision + 1, **values).returning(tasks)
    row: Row[Any] | None = (await conn.execute(query)).one_or_none()
    return row


async def delete_task(conn: AsyncConnection, task_id: UUID) -> None:
    await conn.execute(delete(tasks).where(tasks.c.id == task_id))
