"""User accounts: creation with validated fields, lookup, role changes and disabling (which revoke every
session), and an admin's password reset."""

import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError

from clientvault import fields
from clientvault.context import NO_REQUEST, RequestContext
from clientvault.db import Database
from clientvault.errors import AlreadyExists, Conflict, Invalid, NotFound
from clientvault.events import AuditAction
from clientvault.ids import new_id
from clientvault.logging import get_logger
from clientvault.policy import PEOPLE, SERVICE_ROLES, Role
from clientvault.revocation import Revoker
from services.auth import store
from services.auth.passwords import check_strength, hash_password, verify_password
from services.auth.security_events import OPERATOR, Actor, record

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class User:
    id: UUID
    email: str
    full_name: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None
    password_change_required: bool = False
    mfa_enabled: bool = False

    @classmethod
    def from_row(cls, row: Any) -> "User":
        """From a row of `auth.users` (SQLAlchemy's, or psycopg's named tuple from a hot read)."""
        return cls(
            row.id,
            row.email,
            row.full_name,
            Role(row.role),
            row.created_at,
            row.disabled_at,
            row.password_change_required,
            row.mfa_enabled_at is not None,
        )


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _valid_email(email: str) -> str:
    try:
        return normalise_email(validate_email(email.strip(), check_deliverability=False).normalized)
    except EmailNotValidError as error:
        raise Invalid(f"email is not valid: {error}") from None


def _valid_role(role: str) -> Role:
    """A person's role: a service role is issued by the operator (`issue_service_account`), never given."""
    try:
        valid = Role(role)
    except ValueError:
        valid = None
    if valid in SERVICE_ROLES:
        raise Invalid(
            f"{role} is a service identity's role: the operator issues its account (docs/security.md)", "role"
        )
    if valid is None:
        raise Invalid(f"unknown role {role!r}: use one of {', '.join(sorted(PEOPLE))}") from None
    return valid


def _valid_name(full_name: str) -> str:
    name = full_name.strip()
    if not 1 <= len(name) <= fields.NAME_MAX or "\x00" in name:
        raise Invalid(f"full name must be 1 to {fields.NAME_MAX} characters", "full_name")
    return name


# How long a temporary password signs in: long enough to hand over, short enough that one left in a mail or a
# ticket stops working by itself (an admin resets it again).
TEMPORARY_PASSWORD_TTL = timedelta(hours=72)


def temporary_password() -> str:
    """A one-time password an admin hands over (24 characters, 144 random bits); it must be changed at once."""
    return secrets.token_urlsafe(18)


async def create_user(
    db: Database,
    *,
    email: str,
    full_name: str,
    role: str,
    password: str | None,
    actor: Actor = OPERATOR,
    context: RequestContext = NO_REQUEST,
) -> tuple[User, str | None]:
    """A new account and, without `password`, its temporary password (to change at first sign-in)."""
    values = {"email": _valid_email(email), "full_name": _valid_name(full_name), "role": _valid_role(role).value}
    return await _insert_user(db, values, password, actor=actor, context=context)


async def _insert_user(
    db: Database, values: dict[str, str], password: str | None, *, actor: Actor, context: RequestContext
) -> tuple[User, str | None]:
    temporary = temporary_password() if password is None else None
    if password is not None:
        check_strength(password, values["email"])
    password_hash = await hash_password(password if password is not None else temporary or "")
    now = datetime.now(UTC)
    try:
        async with db.begin() as conn:
            row = await store.insert_user(
                conn,
                id=new_id(),
                password_hash=password_hash,
                created_at=now,
                password_change_required=temporary is not None,
                temporary_password_expires_at=now + TEMPORARY_PASSWORD_TTL if temporary is not None else None,
                **values,
            )
            detail = {"role": row.role, "full_name": row.full_name, "temporary_password": temporary is not None}
            target = User.from_row(row)
            await record(conn, AuditAction.USER_CREATED, actor=actor, target=target, context=context, detail=detail)
    except IntegrityError:
        raise AlreadyExists(f"a user with email {values['email']} already exists") from None
    log.info("user.created", user_id=str(row.id), role=row.role)
    return User.from_row(row), temporary


async def issue_service_account(db: Database, *, role: Role, email: str, full_name: str, password: str) -> User:
    """The operator's issuance of a service identity (`clientvault up`, `clientvault migrate`): the account of
    `role` (a service role) with this email, created, or given this password when it has another (its sessions
    end). Idempotent; it does not enable an account an admin disabled (that is the identity's off switch)."""
    if role not in SERVICE_ROLES:
        raise ValueError(f"{role} is not a service role")
    email = _valid_email(email)
    async with db.read() as conn:
        row = await store.get_user_by_email(conn, email)
    if row is not None and row.role == role.value and await verify_password(row.password_hash, password):
        return User.from_row(row)  # issued before with this password, whose strength was checked then: each `up`
    check_strength(password, email)
    if row is None:
        values = {"email": email, "full_name": _valid_name(full_name), "role": role.value}
        try:
            user, _ = await _insert_user(db, values, password, actor=OPERATOR, context=NO_REQUEST)
            return user
        except AlreadyExists:  # issued at the same moment by another command: take that one
            async with db.read() as conn:
                row = await store.get_user_by_email(conn, email)
    if row is None or row.role != role.value:
        raise Conflict(f"{email} is not a {role} account: give the service identity an email of its own")
    if await verify_password(row.password_hash, password):
        return User.from_row(row)
    password_hash = await hash_password(password)
    now = datetime.now(UTC)
    async with db.begin() as conn:
        row = await store.update_user(
            conn,
            row.id,
            password_hash=password_hash,
            password_change_required=False,
            temporary_password_expires_at=None,
        )
        await store.revoke_user_sessions(conn, row.id, now)
        target = User.from_row(row)
        await record(conn, AuditAction.PASSWORD_CHANGED, actor=OPERATOR, target=target, context=NO_REQUEST)
    log.info("user.service_identity_reissued", user_id=str(row.id), role=row.role)
    return User.from_row(row)


async def get_user(db: Database, user_id: UUID) -> User:
    async with db.hot() as conn:  # `GET /users/me` on every page load: the hot path
        row = await store.read_user(conn, user_id)
    if row is None:
        raise NotFound("user not found")
    return User.from_row(row)


async def get_users(db: Database, user_ids: list[UUID]) -> list[User]:
    async with db.begin() as conn:
        return [User.from_row(row) for row in await store.get_users(conn, user_ids)]


async def list_users(db: Database) -> list[User]:
    async with db.begin() as conn:
        return [User.from_row(row) for row in await store.list_users(conn)]


async def find_users(
    db: Database, *, term: str, role: Role | None, disabled: bool | None, page: int, page_size: int
) -> tuple[list[User], int]:
    """A page of users matching the filters, newest first, and how many match in all."""
    if len(term) > fields.SEARCH_MAX:
        raise Invalid(f"q must be at most {fields.SEARCH_MAX} characters", "q")
    if any(unicodedata.category(char) == "Cc" for char in term):  # as fields.NO_CONTROL says
        raise Invalid("q must not contain control characters", "q")
    if not 1 <= page <= fields.PAGE_MAX or not 1 <= page_size <= fields.PAGE_SIZE_MAX:
        raise Invalid(f"page must be 1 to {fields.PAGE_MAX} and page size 1 to {fields.PAGE_SIZE_MAX}")
    async with db.read() as conn:
        rows, total = await store.find_users(
            conn,
            term=term,
            role=role.value if role else None,
            disabled=disabled,
            limit=page_size,
            offset=(page - 1) * page_size,
        )
    return [User.from_row(row) for row in rows], total


async def count_people(db: Database) -> int:
    async with db.begin() as conn:
        return await store.count_people(conn)


async def update_user(
    db: Database,
    revoker: Revoker,
    user_id: UUID,
    *,
    full_name: str | None = None,
    role: str | None = None,
    disabled: bool | None = None,
    actor: Actor = OPERATOR,
    context: RequestContext = NO_REQUEST,
) -> User:
    """Renames, changes the role of, disables or enables a user. A role change or disabling ends every session
    of the user and denies their access tokens everywhere; the last active admin stays an active admin."""
    now = datetime.now(UTC)
    async with db.begin() as conn:
        admins = await store.lock_active_admins(conn)  # first: every update takes the locks in one order
        row = await store.lock_user(conn, user_id)
        if row is None:
            raise NotFound("user not found")
        values: dict[str, object] = {}
        if full_name is not None and _valid_name(full_name) != row.full_name:
            values["full_name"] = _valid_name(full_name)
        if role is not None and role != row.role and row.role in SERVICE_ROLES:
            raise Invalid("a service identity keeps its role: disable it, or issue another account", "role")
        if role is not None and _valid_role(role).value != row.role:
            values["role"] = _valid_role(role).value
        if disabled is not None and disabled != (row.disabled_at is not None):
            values["disabled_at"] = now if disabled else None
        stays_admin = values.get("role", row.role) == Role.ADMIN and values.get("disabled_at", row.disabled_at) is None
        if row.id in admins and not stays_admin and len(admins) == 1:
            raise Conflict("this is the last active admin: make another user admin first")
        if not values:
            return User.from_row(row)
        updated = await store.update_user(conn, row.id, **values)
        ends_sessions = "role" in values or values.get("disabled_at") is not None
        if ends_sessions:
            await store.revoke_user_sessions(conn, row.id, now)
        changes = {
            CHANGE_NAMES[name]: {"from": _shown(row._mapping[name]), "to": _shown(value)}
            for name, value in values.items()
        }
        target = User.from_row(updated)
        await record(conn, AuditAction.USER_UPDATED, actor=actor, target=target, context=context, detail=changes)
    if ends_sessions:
        await revoker.revoke_user(row.id)
    log.info("user.updated", user_id=str(row.id), changed=sorted(values))
    return User.from_row(updated)


CHANGE_NAMES = {"full_name": "name", "role": "role", "disabled_at": "disabled"}  # as user_updated names them


def _shown(value: object) -> object:
    """A changed value as the event shows it (disabled_at: whether disabled)."""
    return value if not isinstance(value, datetime | type(None)) else value is not None


async def user_id_of(db: Database, email: str) -> UUID:
    async with db.read() as conn:
        row = await store.get_user_by_email(conn, normalise_email(email))
    if row is None:
        raise NotFound(f"no user with email {normalise_email(email)}")
    return UUID(str(row.id))


async def set_disabled(
    db: Database,
    revoker: Revoker,
    email: str,
    *,
    disabled: bool,
    actor: Actor = OPERATOR,
    context: RequestContext = NO_REQUEST,
) -> User:
    """Disabling revokes every session of the user and denies their access tokens everywhere."""
    user_id = await user_id_of(db, email)
    return await update_user(db, revoker, user_id, disabled=disabled, actor=actor, context=context)


async def reset_password(
    db: Database, revoker: Revoker, user_id: UUID, *, actor: Actor = OPERATOR, context: RequestContext = NO_REQUEST
) -> str:
    """Gives the user a temporary password (their tokens may only change it) and ends their sessions."""
    temporary = temporary_password()
    password_hash = await hash_password(temporary)
    now = datetime.now(UTC)
    async with db.begin() as conn:
        if await store.lock_user(conn, user_id) is None:
            raise NotFound("user not found")
        row = await store.update_user(
            conn,
            user_id,
            password_hash=password_hash,
            password_change_required=True,
            temporary_password_expires_at=now + TEMPORARY_PASSWORD_TTL,
        )
        ended = await store.revoke_user_sessions(conn, user_id, now)
        detail = {"sessions_ended": len(ended)}
        target = User.from_row(row)
        await record(conn, AuditAction.PASSWORD_RESET, actor=actor, target=target, context=context, detail=detail)
    await revoker.revoke_user(user_id)
    log.info("user.password_reset", user_id=str(user_id))
    return temporary
