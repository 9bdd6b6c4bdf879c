"""Client members: the staff assigned to a client. The rules; no transport here.

With client scoping on (CLIENTVAULT_CLIENT_SCOPING), a non-admin sees and acts on only the clients they are a
member of (services/clients/clients.py `scope_of`); the vault asks this service and caches the answer, so every
change of membership is announced (`AccessChanged`) for the vault to drop what it cached at once.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row

from clientvault.context import RequestContext
from clientvault.db import Database
from clientvault.errors import Invalid, NotFound
from clientvault.events import AuditAction
from clientvault.logging import get_logger
from clientvault.tokens import Caller
from services.clients import audit, store
from services.clients.clients import Scope
from services.clients.tasks import UserExists

log = get_logger(__name__)

# Tells every verifier that this user's (None: every user's) access to this client changed (the vault drops its
# cached answer).
AccessChanged = Callable[[UUID, UUID | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Member:
    client_id: UUID
    user_id: UUID
    added_at: datetime
    added_by_user_id: UUID

    @classmethod
    def from_row(cls, row: Row[Any]) -> "Member":
        return cls(**row._mapping)


async def list_members(db: Database, client_id: UUID, scope: Scope = None) -> list[Member]:
    """The client's members, first added first (archived clients' too)."""
    async with db.read() as conn:
        if await store.get_client(conn, client_id, member=scope) is None:
            raise NotFound("client not found")
        return [Member.from_row(row) for row in await store.list_members(conn, client_id)]


@dataclass(frozen=True, slots=True)
class Changes:
    """What follows a member change: the access announcement (for the vault's cache) and the outbox relay's wake."""

    access_changed: AccessChanged
    outbox_written: Callable[[], None]


async def put_member(
    db: Database,
    caller: Caller,
    context: RequestContext,
    client_id: UUID,
    user_id: UUID,
    user_exists: UserExists,
    changes: Changes,
) -> tuple[Member, bool]:
    """Makes the user a member, audited as `client_member_added`; idempotent (adding again writes no event). The
    member, and whether this call added them."""
    if not await user_exists(user_id):
        raise Invalid("userId is not a user", "user_id")
    async with db.begin() as conn:
        if await store.get_client(conn, client_id, share=True) is None:
            raise NotFound("client not found")
        row, added = await store.add_member(
            conn, client_id=client_id, user_id=user_id, added_at=datetime.now(UTC), added_by_user_id=caller.user_id
        )
        if added:
            await audit.record(
                conn, AuditAction.CLIENT_MEMBER_ADDED, caller, context, client_id=client_id, member_id=user_id
            )
    if added:
        changes.outbox_written()
        log.info("client.member_added", client_id=str(client_id), user_id=str(user_id))
        await changes.access_changed(client_id, user_id)
    return Member.from_row(row), added


async def remove_member(
    db: Database, caller: Caller, context: RequestContext, client_id: UUID, user_id: UUID, changes: Changes
) -> None:
    """Ends the membership, audited as `client_member_removed`."""
    async with db.begin() as conn:
        if await store.get_client(conn, client_id, share=True) is None:
            raise NotFound("client not found")
        if not await store.remove_member(conn, client_id, user_id):
            raise NotFound("not a member of this client")
        await audit.record(
            conn, AuditAction.CLIENT_MEMBER_REMOVED, caller, context, client_id=client_id, member_id=user_id
        )
    changes.outbox_written()
    log.info("client.member_removed", client_id=str(client_id), user_id=str(user_id))
    await changes.access_changed(client_id, user_id)
