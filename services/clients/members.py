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

from clientvault.db import Database
from clientvault.errors import Invalid, NotFound
from clientvault.logging import get_logger
from clientvault.tokens import Caller
from services.clients import store
from services.clients.clients import Scope
from services.clients.tasks import UserExists

log = get_logger(__name__)

# Tells every verifier that this user's access to this client changed (the vault drops its cached answer).
AccessChanged = Callable[[UUID, UUID], Awaitable[None]]


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


async def put_member(
    db: Database,
    caller: Caller,
    client_id: UUID,
    user_id: UUID,
    user_exists: UserExists,
    access_changed: AccessChanged,
) -> tuple[Member, bool]:
    """Makes the user a member; idempotent. The member, and whether this call added them."""
    if not await user_exists(user_id):
        raise Invalid("userId is not a user", "user_id")
    async with db.begin() as conn:
        if await store.get_client(conn, client_id, share=True) is None:
            raise NotFound("client not found")
        row, added = await store.add_member(
            conn, client_id=client_id, user_id=user_id, added_at=datetime.now(UTC), added_by_user_id=caller.user_id
        )
    if added:
        log.info("client.member_added", client_id=str(client_id), user_id=str(user_id))
        await access_changed(client_id, user_id)
    return Member.from_row(row), added


async def remove_member(db: Database, client_id: UUID, user_id: UUID, access_changed: AccessChanged) -> None:
    async with db.begin() as conn:
        if await store.get_client(conn, client_id, share=True) is None:
            raise NotFound("client not found")
        if not await store.remove_member(conn, client_id, user_id):
            raise NotFound("not a member of this client")
    log.info("client.member_removed", client_id=str(client_id), user_id=str(user_id))
    await access_changed(client_id, user_id)
