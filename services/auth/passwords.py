"""Password hashing (argon2id, argon2-cffi's RFC 9106 defaults) and the password rule.

Hashing takes tens of milliseconds and memory, so it runs in a worker thread, off the event loop.
"""

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from clientvault.errors import Invalid

MIN_LENGTH = 12
MAX_LENGTH = 1024  # hashing cost grows with length; a cap keeps a request from becoming a DoS

_hasher = PasswordHasher()
# Verified when the email is unknown, so that answer takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("clientvault-timing-equaliser")


def check_strength(password: str) -> None:
    if not password.strip():
        raise Invalid("password is empty")
    if len(password) < MIN_LENGTH:
        raise Invalid(f"password is too short: use at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise Invalid(f"password is too long: use at most {MAX_LENGTH} characters")
    if len(set(password)) < 5:
        raise Invalid("password is too weak: use more different characters")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; with no hash (unknown user) it costs the same and is False."""

    def verify() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
