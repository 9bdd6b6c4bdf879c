"""Tables and queries of schema "auth". Returns rows; no rules, no proto."""

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection as DriverConnection
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    Row,
    Table,
    Text,
    Uuid,
    bindparam,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault import policy
from clientvault.db import driver_sql, fetch_one, like_pattern
from clientvault.db import metadata as schema_metadata
from clientvault.outbox import outbox_table

metadata = schema_metadata("auth")

users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", Text, nullable=False, unique=True),  # stored lower-cased
    Column("full_name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True)),
    # A temporary password (created or reset by an admin): its tokens may only change it (policy.py).
    Column("password_change_required", Boolean, nullable=False, server_default=false()),
    Column("temporary_password_expires_at", DateTime(timezone=True)),  # after it the temporary password is refused
    Column("totp_sealed", LargeBinary),  # the TOTP seed, AES-256-GCM (services/auth/mfa.py); set once confirmed
    Column("totp_pending_sealed", LargeBinary),  # an enrolment not confirmed yet
    Column("mfa_enabled_at", DateTime(timezone=True)),
    Column("totp_last_step", BigInteger),  # the time step of the last accepted code: no code counts twice
    CheckConstraint("role in ('admin', 'manager', 'read_only', 'rotation_tasks')", name="role"),  # migration 0005
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),  # the absolute end
    Column("revoked_at", DateTime(timezone=True)),
    Column("ip", Text, nullable=False, server_default=""),  # of the sign-in, as the gateway vouched for it
    Column("user_agent", Text, nullable=False, server_default=""),
    Column("mfa", Boolean, nullable=False, server_default=false()),  # signed in with a second factor
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),  # SHA-256 of the opaque token
    Column("session_id", Uuid, nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),  # set when rotated; presenting it again is a reuse
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("code_hash", LargeBinary, primary_key=True),  # SHA-256 of a random 80-bit code
    Column("user_id", Uuid, nullable=False, index=True),
    Column("used_at", DateTime(timezone=True)),
)

mfa_challenges = Table(
    "mfa_challenges",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),  # SHA-256 of the opaque mfaToken
    Column("user_id", Uuid, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("used_at", DateTime(timezone=True)),
)

sign_in_failures = Table(
    "sign_in_failures",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("email_key", LargeBinary, nullable=False),  # SHA-256 of the normalised email, known or not
    Column("client_ip", Text, nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False),
    Index(None, "email_key", "failed_at"),
    Index(None, "client_ip", "failed_at"),
)

# Auth's security events waiting for (or done with) publication (services/auth/security_events.py).
outbox = outbox_table(metadata)


async def insert_user(conn: AsyncConnection, **values: object) -> Row[Any]:
    row: Row[Any] = (await conn.execute(insert(users).values(**values).returning(users))).one()
    return row


async def get_user(conn: AsyncConnection, user_id: UUID) -> Row[Any] | None:
    return (await conn.execute(select(users).where(users.c.id == user_id))).one_or_none()


# `GET /users/me`'s read, on a hot connection (clientvault/db.py `Database.hot`): what `users.User` holds, no hash
# or sealed seed.
USER_BY_ID = driver_sql(
    select(
        users.c.id,
        users.c.email,
        users.c.full_name,
        users.c.role,
        users.c.created_at,
        users.c.disabled_at,
        users.c.password_change_required,
        users.c.mfa_enabled_at,
    ).where(users.c.id == bindparam("user_id"))
)


async def read_user(conn: DriverConnection[Any], user_id: UUID) -> Any:
    """A user's row by id (None if there is none), as `get_user` answers it, off the engine (the hot path)."""
    return await fetch_one(conn, USER_BY_ID, {"user_id": user_id})


async def get_user_by_email(conn: AsyncConnection, email: str) -> Row[Any] | None:
    return (await conn.execute(select(users).where(users.c.email == email))).one_or_none()


async def get_users(conn: AsyncConnection, user_ids: list[UUID]) -> list[Row[Any]]:
    return list((await conn.execute(select(users).where(users.c.id.in_(user_ids)))).all())


async def list_users(conn: AsyncConnection) -> list[Row[Any]]:
    return list((await conn.execute(select(users).order_by(users.c.created_at))).all())


async def find_users(
    conn: AsyncConnection, *, term: str, role: str | None, disabled: bool | None, limit: int, offset: int
) -> tuple[list[Row[Any]], int]:
    """A page of users, newest first, and how many match in all."""
    conditions: list[Any] = []
    if term:
        pattern = func.lower(like_pattern(term))
        conditions.append(or_(users.c.email.like(pattern), func.lower(users.c.full_name).like(pattern)))
    if role is not None:
        conditions.append(users.c.role == role)
    if disabled is not None:
        conditions.append(users.c.disabled_at.is_not(None) if disabled else users.c.disabled_at.is_(None))
    page = select(users).where(*conditions).order_by(users.c.created_at.desc(), users.c.id.desc())
    rows = list((await conn.execute(page.limit(limit).offset(offset))).all())
    total = (await conn.execute(select(func.count()).select_from(users).where(*conditions))).scalar_one()
    return rows, int(total)


async def lock_user(conn: AsyncConnection, user_id: UUID) -> Row[Any] | None:
    return (await conn.execute(select(users).where(users.c.id == user_id).with_for_update())).one_or_none()


async def lock_active_admins(conn: AsyncConnection) -> list[UUID]:
    """The active admins' ids, locked: two admins demoting each other at once cannot leave none."""
    query = select(users.c.id).where(users.c.role == "admin", users.c.disabled_at.is_(None)).with_for_update()
    return list((await conn.execute(query)).scalars())


async def update_user(conn: AsyncConnection, user_id: UUID, **values: object) -> Row[Any]:
    row: Row[Any] = (
        await conn.execute(update(users).where(users.c.id == user_id).values(**values).returning(users))
    ).one()
    return row


async def replace_recovery_codes(conn: AsyncConnection, user_id: UUID, code_hashes: list[bytes]) -> None:
    await conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
    if code_hashes:
        await conn.execute(insert(recovery_codes), [{"code_hash": h, "user_id": user_id} for h in code_hashes])


async def use_recovery_code(conn: AsyncConnection, user_id: UUID, code_hash: bytes, now: datetime) -> bool:
    """Marks an unused recovery code of the user used; False when there is none such."""
    result = await conn.execute(
        update(recovery_codes)
        .where(
            recovery_codes.c.code_hash == code_hash,
            recovery_codes.c.user_id == user_id,
            recovery_codes.c.used_at.is_(None),
        )
        .values(used_at=now)
    )
    return bool(result.rowcount)


async def insert_mfa_challenge(conn: AsyncConnection, **values: object) -> None:
    await conn.execute(insert(mfa_challenges).values(**values))


async def get_mfa_challenge(conn: AsyncConnection, token_hash: bytes) -> Row[Any] | None:
    """The challenge, locked, so that one mfaToken cannot be answered twice at once."""
    query = select(mfa_challenges).where(mfa_challenges.c.token_hash == token_hash).with_for_update()
    return (await conn.execute(query)).one_or_none()


async def use_mfa_challenge(conn: AsyncConnection, token_hash: bytes, now: datetime) -> None:
    await conn.execute(update(mfa_challenges).where(mfa_challenges.c.token_hash == token_hash).values(used_at=now))


def _live(user_id: UUID, now: datetime, idle_since: datetime) -> list[Any]:
    """A session of the user neither revoked, nor past its end, nor idle since `idle_since`."""
    return [
        sessions.c.user_id == user_id,
        sessions.c.revoked_at.is_(None),
        sessions.c.expires_at > now,
        sessions.c.last_used_at > idle_since,
    ]


async def live_sessions(conn: AsyncConnection, user_id: UUID, now: datetime, idle_since: datetime) -> list[Row[Any]]:
    query = (
        select(sessions)
        .where(*_live(user_id, now, idle_since))
        .order_by(sessions.c.last_used_at.desc(), sessions.c.id.desc())
    )
    return list((await conn.execute(query)).all())


async def count_people(conn: AsyncConnection) -> int:
    """Accounts of people: the operator's service identities (policy.SERVICE_ROLES) are not counted."""
    query = (
        select(func.count()).select_from(users).where(users.c.role.in_(sorted(role.value for role in policy.PEOPLE)))
    )
    return int((await conn.execute(query)).scalar_one())


async def set_user_disabled(conn: AsyncConnection, user_id: UUID, disabled_at: datetime | None) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(disabled_at=disabled_at))


async def set_password_hash(conn: AsyncConnection, user_id: UUID, password_hash: str) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))


async def insert_session(conn: AsyncConnection, **values: object) -> None:
    await conn.execute(insert(sessions).values(**values))


async def get_session(conn: AsyncConnection, session_id: UUID) -> Row[Any] | None:
    return (await conn.execute(select(sessions).where(sessions.c.id == session_id))).one_or_none()


async def touch_session(conn: AsyncConnection, session_id: UUID, now: datetime) -> None:
    await conn.execute(update(sessions).where(sessions.c.id == session_id).values(last_used_at=now))


async def revoke_session(conn: AsyncConnection, session_id: UUID, now: datetime) -> bool:
    """Revokes a live session; False when it was revoked already."""
    result = await conn.execute(
        update(sessions).where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(result.rowcount)


async def end_sessions_beyond(
    conn: AsyncConnection, user_id: UUID, *, keep: int, now: datetime, idle_since: datetime
) -> list[UUID]:
    """Revokes the user's live sessions but the `keep` most recently used; their ids. The rows are locked,
    so two sign-ins of one user at once cannot both keep the same sessions."""
    live = (
        select(sessions.c.id)
        .where(*_live(user_id, now, idle_since))
        .order_by(sessions.c.last_used_at.desc(), sessions.c.id.desc())
        .offset(keep)
        .with_for_update()
    )
    ended = list((await conn.execute(live)).scalars())
    if ended:
        await conn.execute(update(sessions).where(sessions.c.id.in_(ended)).values(revoked_at=now))
    return ended


async def revoke_user_sessions(
    conn: AsyncConnection, user_id: UUID, now: datetime, *, keep: UUID | None = None
) -> list[UUID]:
    """Revokes the user's live sessions (but `keep`); their ids."""
    query = update(sessions).where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
    if keep is not None:
        query = query.where(sessions.c.id != keep)
    return list((await conn.execute(query.values(revoked_at=now).returning(sessions.c.id))).scalars())


async def insert_refresh_token(conn: AsyncConnection, **values: object) -> None:
    await conn.execute(insert(refresh_tokens).values(**values))


async def get_refresh_token(conn: AsyncConnection, token_hash: bytes) -> Row[Any] | None:
    """The token with its session and user, locked so that two uses of one token are serialised."""
    query = (
        select(
            refresh_tokens.c.used_at,
            sessions.c.id.label("session_id"),
            sessions.c.last_used_at,
            sessions.c.expires_at,
            sessions.c.revoked_at,
            sessions.c.created_at.label("session_created_at"),
            sessions.c.mfa.label("session_mfa"),
            users,
        )
        .join(sessions, sessions.c.id == refresh_tokens.c.session_id)
        .join(users, users.c.id == sessions.c.user_id)
        .where(refresh_tokens.c.token_hash == token_hash)
        .with_for_update(of=refresh_tokens)
    )
    return (await conn.execute(query)).one_or_none()


async def mark_refresh_token_used(conn: AsyncConnection, token_hash: bytes, now: datetime) -> None:
    await conn.execute(update(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash).values(used_at=now))


async def purge(conn: AsyncConnection, *, failures_before: datetime, sessions_ended_before: datetime) -> None:
    """Deletes sign-in failures out of every window, MFA challenges and sessions (with their tokens) long over."""
    await conn.execute(delete(sign_in_failures).where(sign_in_failures.c.failed_at < failures_before))
    await conn.execute(delete(mfa_challenges).where(mfa_challenges.c.expires_at < sessions_ended_before))
    ended = select(sessions.c.id).where(
        or_(sessions.c.expires_at < sessions_ended_before, sessions.c.revoked_at < sessions_ended_before)
    )
    await conn.execute(delete(refresh_tokens).where(refresh_tokens.c.session_id.in_(ended)))
    await conn.execute(delete(sessions).where(sessions.c.id.in_(ended)))


async def lock_sign_in_keys(conn: AsyncConnection, email_key: bytes, client_ip: str) -> None:
    """Serialises attempts on the same email or IP until the transaction ends (email first, then IP, in
    every transaction, so two attempts cannot wait on each other)."""
    await conn.execute(
        text(
            "SELECT pg_advisory_xact_lock(hashtextextended(:email, 1)), pg_advisory_xact_lock(hashtextextended(:ip, 2))"
        ),
        {"email": email_key.hex(), "ip": client_ip},
    )


async def insert_sign_in_failure(conn: AsyncConnection, email_key: bytes, client_ip: str, now: datetime) -> int:
    query = insert(sign_in_failures).values(email_key=email_key, client_ip=client_ip, failed_at=now)
    return int((await conn.execute(query.returning(sign_in_failures.c.id))).scalar_one())


async def delete_sign_in_failure(conn: AsyncConnection, failure_id: int) -> None:
    await conn.execute(delete(sign_in_failures).where(sign_in_failures.c.id == failure_id))


async def recent_failure_times(
    conn: AsyncConnection, column: str, value: object, since: datetime, limit: int
) -> list[datetime]:
    """The newest `limit` failures for an email key or an IP since a time, newest first."""
    col = sign_in_failures.c[column]
    query = (
        select(sign_in_failures.c.failed_at)
        .where(col == value, sign_in_failures.c.failed_at >= since)
        .order_by(sign_in_failures.c.failed_at.desc())
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())
