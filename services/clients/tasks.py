"""Tasks of a client: the rules. A task is always addressed under its client; under any other it does
not exist. An archived client is read-only: its tasks can be listed but not created, changed or deleted.

A create may name an origin key (what made the task: the vault's rotation work on leave names
`leaver:<userId>:<credentialId>:<lastRevealedAt>`): the same caller creating with the same key in the same client
gets the task made the first time, unchanged, so a retried or redelivered create adds nothing. It may also ask for
the client's owner as the assignee, whom the caller need not know."""

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, get_args
from uuid import UUID

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault import fields, idempotency
from clientvault.db import Database
from clientvault.errors import Invalid, NotFound
from clientvault.idempotency import Once, Replay
from clientvault.ids import canonical_id, new_id
from clientvault.tokens import Caller
from services.clients import rules, store
from services.clients.clients import ClientArchived, Scope

TaskStatus = Literal["todo", "in_progress", "done"]
TaskPriority = Literal["low", "medium", "high"]
WRITABLE = ("title", "description", "status", "priority", "due_date", "assignee_user_id")
UserExists = Callable[[UUID], Awaitable[bool]]  # asks the auth service
ORIGIN_KEY_MAX = 200


@dataclass(frozen=True, slots=True)
class Task:
    id: UUID
    client_id: UUID
    title: str
    description: str | None
    status: TaskStatus
    priority: TaskPriority
    due_date: date | None
    assignee_user_id: UUID | None
    created_by_user_id: UUID
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    revision: int  # the ETag; +1 on every change
    origin_key: str | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> "Task":
        return cls(**row._mapping)


async def validate(values: dict[str, Any], user_exists: UserExists) -> dict[str, Any]:
    rules.writable_only(values, WRITABLE)
    checked: dict[str, Any] = {}
    if "title" in values:
        checked["title"] = rules.text(values["title"], "title", max_length=fields.TITLE_MAX, required=True)
    if "description" in values:
        checked["description"] = rules.text(values["description"], "description", max_length=fields.DESCRIPTION_MAX)
    for name, allowed in (("status", get_args(TaskStatus)), ("priority", get_args(TaskPriority))):
        if name in values:
            if values[name] not in allowed:
                raise Invalid(f"{name} must be one of {', '.join(allowed)}", name)
            checked[name] = values[name]
    if "due_date" in values:
        checked["due_date"] = _due_date(values["due_date"])
    if "assignee_user_id" in values:
        checked["assignee_user_id"] = await _assignee(values["assignee_user_id"], user_exists)
    return checked


def _due_date(value: str | date | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid("dueDate must be a date, YYYY-MM-DD", "due_date") from None


async def _assignee(value: str | UUID | None, user_exists: UserExists) -> UUID | None:
    if value is None:
        return None
    user_id = value if isinstance(value, UUID) else canonical_id(value)
    if user_id is None or not await user_exists(user_id):
        raise Invalid("assigneeUserId is not a user", "assignee_user_id")
    return user_id


async def _writable_client(conn: AsyncConnection, client_id: UUID, scope: Scope) -> Row[Any]:
    """The client, which exists (for the scope) and is not archived; the row stays share-locked so it cannot be
    archived meanwhile."""
    client = await store.get_client(conn, client_id, share=True, member=scope)
    if client is None:
        raise NotFound("client not found")
    if client.archived_at is not None:
        raise ClientArchived
    return client


def _origin_key(value: str) -> str | None:
    if not value:
        return None
    if len(value) > ORIGIN_KEY_MAX or not value.isprintable():
        raise Invalid(f"originKey must be 1 to {ORIGIN_KEY_MAX} printable characters", "origin_key")
    return value


def _completion(
    old_status: str | None, new_status: str, completed_at: datetime | None, now: datetime
) -> datetime | None:
    if new_status != "done":
        return None
    return completed_at if old_status == "done" else now


async def create_task(
    db: Database,
    caller: Caller,
    client_id: UUID,
    values: dict[str, Any],
    user_exists: UserExists,
    once: Once | None = None,
    scope: Scope = None,
    *,
    origin_key: str = "",
    assign_to_owner: bool = False,
) -> Task | Replay:
    """The new task; with `once` (an idempotency key), the first reply again when the key was used already (even
    if the client was archived since); with an `origin_key` this caller used in this client before, the task made
    then."""
    if assign_to_owner and values.get("assignee_user_id") is not None:
        raise Invalid("assigneeUserId and assignToOwner exclude each other", "assignee_user_id")
    key = _origin_key(origin_key)
    now = datetime.now(UTC)
    if once is not None:
        async with db.read() as conn:
            if replay := await idempotency.stored(conn, store.idempotency_keys, once, now):
                return replay
    checked = await validate({"status": "todo", "priority": "medium", **values}, user_exists)
    if "title" not in checked:
        raise Invalid("title is required", "title")
    async with db.begin() as conn:
        if once is not None and (replay := await idempotency.claim(conn, store.idempotency_keys, once, now)):
            return replay
        client = await _writable_client(conn, client_id, scope)
        if assign_to_owner:
            checked["assignee_user_id"] = client.owner_user_id
        made = dict(
            id=new_id(),
            created_at=now,
            updated_at=now,
            completed_at=_completion(None, checked["status"], None, now),
            **checked,
        )
        if key is None:
            row = await store.insert_task(conn, client_id=client_id, created_by_user_id=caller.user_id, **made)
        else:
            row = await store.insert_task_once(
                conn, client_id=client_id, created_by_user_id=caller.user_id, origin_key=key, **made
            )
        task = Task.from_row(row)
        if once is not None:
            await idempotency.remember(conn, store.idempotency_keys, once, task)
    return task


async def get_task(db: Database, client_id: UUID, task_id: UUID, scope: Scope = None) -> Task:
    async with db.read() as conn:
        row = await store.get_task(conn, client_id, task_id, member=scope)
    if row is None:
        raise NotFound("task not found")
    return Task.from_row(row)


async def update_task(
    db: Database,
    client_id: UUID,
    task_id: UUID,
    changes: dict[str, Any],
    user_exists: UserExists,
    if_revision: Collection[int] = (),
    scope: Scope = None,
) -> Task:
    """Changes the task; with `if_revision` (If-Match) only while it is at one of those revisions, else
    PreconditionFailed."""
    checked = await validate(changes, user_exists)
    now = datetime.now(UTC)
    async with db.begin() as conn:
        row = await store.get_task(conn, client_id, task_id, lock=True, member=scope)
        if row is None:
            raise NotFound("task not found")
        await _writable_client(conn, client_id, scope)
        rules.unchanged(row, if_revision, "task")
        if checked:
            status = checked.get("status", row.status)
            completed_at = _completion(row.status, status, row.completed_at, now)
            row = await store.update_task(
                conn, task_id, if_revision=if_revision, updated_at=now, completed_at=completed_at, **checked
            )
            if row is None:
                raise rules.changed("task")
    return Task.from_row(row)


async def delete_task(db: Database, client_id: UUID, task_id: UUID, scope: Scope = None) -> None:
    async with db.begin() as conn:
        if await store.get_task(conn, client_id, task_id, lock=True, member=scope) is None:
            raise NotFound("task not found")
        await _writable_client(conn, client_id, scope)
        await store.delete_task(conn, task_id)


async def list_tasks(
    db: Database, client_id: UUID, *, status: str | None, page: int, page_size: int, scope: Scope = None
) -> rules.Page[Task]:
    limit, offset = rules.page(page, page_size)
    if status is not None and status not in get_args(TaskStatus):
        raise Invalid("unknown status", "status")
    async with db.read() as conn:
        if await store.get_client(conn, client_id, member=scope) is None:
            raise NotFound("client not found")
        rows = await store.list_tasks(conn, client_id, status=status, limit=limit, offset=offset)
        total = await store.count_tasks(conn, client_id, status=status)
    return rules.Page([Task.from_row(row) for row in rows], total, page, page_size)
