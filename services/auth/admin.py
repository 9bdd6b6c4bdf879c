"""What operators may do to the auth service in-process (the `clientvault` command, `up`): typed functions
with plain arguments. The operator layer (ops/) imports this module and the service's `main()`, nothing else.
Their security events (services/auth/security_events.py) name the operator as the actor: no user, no request
(the domain functions' defaults)."""

import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import SecretStr

from clientvault.db import Database
from clientvault.policy import Role
from clientvault.revocation import Revoker
from services.auth import signing, users
from services.auth.factors import Factors
from services.auth.mfa import Sealer
from services.auth.users import User

__all__ = [
    "User",
    "create_first_admin",
    "create_user",
    "disable",
    "enable",
    "issue_rotation_identity",
    "list_users",
    "mfa_reset",
    "public_key_of",
    "reset_password",
    "set_role",
]


async def create_user(database_url: str, *, email: str, full_name: str, role: str, password: str) -> User:
    async with Database(database_url, pool_size=1) as db:
        user, _ = await users.create_user(db, email=email, full_name=full_name, role=role, password=password)
        return user


async def create_first_admin(database_url: str, email: str) -> str | None:
    """On a database without people's accounts (a service identity may exist already), an admin with a generated
    password; that password (None: there were people)."""
    async with Database(database_url, pool_size=1) as db:
        if await users.count_people(db) > 0:
            return None
        password = secrets.token_urlsafe(18)
        await users.create_user(db, email=email, full_name="Administrator", role="admin", password=password)
        return password


async def issue_rotation_identity(database_url: str, *, email: str, password: str) -> User:
    """The vault's rotation-tasks identity (role `rotation_tasks`: Clients/CreateTask only), created or given this
    password; idempotent (`clientvault up` at each start, `clientvault migrate`)."""
    async with Database(database_url, pool_size=1) as db:
        return await users.issue_service_account(
            db, role=Role.ROTATION_TASKS, email=email, full_name="Rotation tasks (vault)", password=password
        )


async def list_users(database_url: str) -> list[User]:
    async with Database(database_url, pool_size=1) as db:
        return await users.list_users(db)


async def disable(database_url: str, nats_url: str, email: str) -> tuple[User, bool]:
    """Disables the user, ends their sessions and broadcasts the revocation of their access tokens; the user
    and whether NATS took the revocation within 15 s."""
    return await _set_disabled(database_url, nats_url, email, disabled=True)


async def enable(database_url: str, nats_url: str, email: str) -> tuple[User, bool]:
    return await _set_disabled(database_url, nats_url, email, disabled=False)


async def _set_disabled(database_url: str, nats_url: str, email: str, *, disabled: bool) -> tuple[User, bool]:
    return await _revoking(
        database_url, nats_url, lambda db, revoker: users.set_disabled(db, revoker, email, disabled=disabled)
    )


async def set_role(database_url: str, nats_url: str, email: str, role: str) -> tuple[User, bool]:
    """Changes the user's role and ends their sessions (the last active admin stays admin); the user and
    whether NATS took the revocation within 15 s."""

    async def change(db: Database, revoker: Revoker) -> User:
        return await users.update_user(db, revoker, await users.user_id_of(db, email), role=role)

    return await _revoking(database_url, nats_url, change)


async def reset_password(database_url: str, nats_url: str, email: str) -> tuple[str, bool]:
    """A temporary password for the user (to change at next sign-in), their sessions ended; it and whether
    NATS took the revocation within 15 s."""

    async def reset(db: Database, revoker: Revoker) -> str:
        return await users.reset_password(db, revoker, await users.user_id_of(db, email))

    return await _revoking(database_url, nats_url, reset)


async def mfa_reset(database_url: str, email: str) -> None:
    """Turns the user's MFA off (a lost device); they may sign in with the password and enrol again."""
    async with Database(database_url, pool_size=1) as db:
        # No seed is opened or sealed to turn MFA off, so no MFA key is needed here.
        await Factors(db, Sealer(None)).reset(await users.user_id_of(db, email))


T = TypeVar("T")


async def _revoking(
    database_url: str, nats_url: str, change: Callable[[Database, Revoker], Awaitable[T]]
) -> tuple[T, bool]:
    revoker = Revoker(nats_url)
    try:
        async with Database(database_url, pool_size=1) as db:
            result = await change(db, revoker)
        return result, await revoker.drain(timeout_s=15)
    finally:
        await revoker.close()


def public_key_of(private_key: str) -> str:
    """The public half of a signing key, for CLIENTVAULT_TOKEN_PREVIOUS_KEYS. SystemExit when it is no key."""
    return signing.public_half(signing.load_private_key(SecretStr(private_key)))
