"""What operators may do to the auth service in-process (the `clientvault` command, `up`): typed functions
with plain arguments. The operator layer (ops/) imports this module and the service's `main()`, nothing else.
Their security events (services/auth/security_events.py) name the operator as the actor: no user, no request."""

import secrets

from pydantic import SecretStr

from clientvault.context import NO_REQUEST
from clientvault.db import Database
from clientvault.revocation import Revoker
from services.auth import signing, users
from services.auth.security_events import OPERATOR
from services.auth.users import User

__all__ = [
    "User",
    "create_first_admin",
    "create_user",
    "disable",
    "enable",
    "list_users",
    "public_key_of",
]


async def create_user(database_url: str, *, email: str, full_name: str, role: str, password: str) -> User:
    async with Database(database_url, pool_size=1) as db:
        return await users.create_user(
            db, email=email, full_name=full_name, role=role, password=password, actor=OPERATOR, context=NO_REQUEST
        )


async def create_first_admin(database_url: str, email: str) -> str | None:
    """On a database without users, an admin with a generated password; that password (None: there were users)."""
    async with Database(database_url, pool_size=1) as db:
        if await users.count_users(db) > 0:
            return None
        password = secrets.token_urlsafe(18)
        await users.create_user(
            db,
            email=email,
            full_name="Administrator",
            role="admin",
            password=password,
            actor=OPERATOR,
            context=NO_REQUEST,
        )
        return password


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
    revoker = Revoker(nats_url)
    try:
        async with Database(database_url, pool_size=1) as db:
            user = await users.set_disabled(db, revoker, email, disabled=disabled, actor=OPERATOR, context=NO_REQUEST)
        return user, await revoker.drain(timeout_s=15)
    finally:
        await revoker.close()


def public_key_of(private_key: str) -> str:
    """The public half of a signing key, for CLIENTVAULT_TOKEN_PREVIOUS_KEYS. SystemExit when it is no key."""
    return signing.public_half(signing.load_private_key(SecretStr(private_key)))
