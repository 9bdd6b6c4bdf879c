"""User accounts: creation with validated fields, lookup, and disabling (which revokes everything). A creation or a
change writes its security event (`user_created`, `user_updated` with what changed) in its transaction."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError

from clientvault.context import RequestContext
from clientvault.db import Database
from clientvault.errors import AlreadyExists, Invalid, NotFound
from clientvault.events import AuditAction
from clientvault.ids import new_id
from clientvault.logging import get_logger
from clientvault.policy import Role
from clientvault.revocation import Revoker
from services.auth import store
from services.auth.passwords import check_strength, hash_password
from services.auth.security_events import Actor, record

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class User:
    id: UUID
    email: str
    full_name: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> "User":
        m = row._mapping
        return cls(m["id"], m["email"], m["full_name"], Role(m["role"]), m["created_at"], m["disabled_at"])


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _valid_email(email: str) -> str:
    try:
        return normalise_email(validate_email(email.strip(), check_deliverability=False).normalized)
    except EmailNotValidError as error:
        raise Invalid(f"email is not valid: {error}") from None


def _valid_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise Invalid(f"unknown role {role!r}: use one of {', '.join(r.value for r in Role)}") from None


async def create_user(
    db: Database, *, email: str, full_name: str, role: str, password: str, actor: Actor, context: RequestContext
) -> User:
    values = {"email": _valid_email(email), "full_name": full_name.strip(), "role": _valid_role(role).value}
    if not 1 <= len(values["full_name"]) <= 200:
        raise Invalid("full name must be 1 to 200 characters")
    check_strength(password)
    password_hash = await hash_password(password)
    try:
        async with db.begin() as conn:
            row = await store.insert_user(
                conn, id=new_id(), password_hash=password_hash, created_at=datetime.now(UTC), **values
            )
            detail = {"role": row.role, "full_name": row.full_name}
            await record(
                conn, AuditAction.USER_CREATED, actor=actor, target=User.from_row(row), context=context, detail=detail
            )
    except IntegrityError:
        raise AlreadyExists(f"a user with email {values['email']} already exists") from None
    log.info("user.created", user_id=str(row.id), role=row.role)
    return User.from_row(row)


async def get_user(db: Database, user_id: UUID) -> User:
    async with db.read() as conn:
        row = await store.get_user(conn, user_id)
    if row is None:
        raise NotFound("user not found")
    return User.from_row(row)


async def get_users(db: Database, user_ids: list[UUID]) -> list[User]:
    async with db.begin() as conn:
        return [User.from_row(row) for row in await store.get_users(conn, user_ids)]


async def list_users(db: Database) -> list[User]:
    async with db.begin() as conn:
        return [User.from_row(row) for row in await store.list_users(conn)]


async def count_users(db: Database) -> int:
    async with db.begin() as conn:
        return await store.count_users(conn)


async def set_disabled(
    db: Database, revoker: Revoker, email: str, *, disabled: bool, actor: Actor, context: RequestContext
) -> User:
    """Disabling revokes every session of the user and denies their access tokens everywhere."""
    now = datetime.now(UTC)
    async with db.begin() as conn:
        before = await store.get_user_by_email(conn, normalise_email(email))
        if before is None:
            raise NotFound(f"no user with email {normalise_email(email)}")
        await store.set_user_disabled(conn, before.id, now if disabled else None)
        if disabled:
            await store.revoke_user_sessions(conn, before.id, now)
        row = await store.get_user(conn, before.id)
        assert row is not None
        was = before.disabled_at is not None
        if was != disabled:  # disabling a disabled user changes nothing: no event
            detail = {"disabled": {"from": was, "to": disabled}}
            await record(
                conn, AuditAction.USER_UPDATED, actor=actor, target=User.from_row(row), context=context, detail=detail
            )
    if disabled:
        await revoker.revoke_user(row.id)
    log.info("user.disabled" if disabled else "user.enabled", user_id=str(row.id))
    return User.from_row(row)
