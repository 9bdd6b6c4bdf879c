"""Password hashing (argon2id, argon2-cffi's RFC 9106 defaults) and the password rules: 12 to 1024
characters, not the email, and not guessable (zxcvbn's score of at least 3: common passwords, words, names,
dates, keyboard patterns and what is made of the email all count as guessable).

Hashing takes tens of milliseconds and memory, so it runs in a worker thread, off the event loop.
"""

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from clientvault.errors import Invalid

MIN_LENGTH = 12
MAX_LENGTH = 1024  # hashing cost grows with length; a cap keeps a request from becoming a DoS
MIN_SCORE = 3  # zxcvbn: "safely unguessable: moderate protection from offline slow-hash scenario"
# zxcvbn's matching is quadratic in the length; what makes a password guessable shows in its first 72 characters.
SCORED_LENGTH = 72

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the email is unknown, so that answer takes as long as a wrong password. Made on first use,
    not at import: `up` and every operator command import this module and need none."""
    return _hasher.hash("clientvault-timing-equaliser")


def check_strength(password: str, email: str, field: str = "password") -> None:
    """Refuses a password that breaks a rule, naming the rule (a 422 on the `password` field)."""
    if not password.strip():
        raise Invalid("password is empty", field)
    if len(password) < MIN_LENGTH:
        raise Invalid(f"password is too short: use at least {MIN_LENGTH} characters", field)
    if len(password) > MAX_LENGTH:
        raise Invalid(f"password is too long: use at most {MAX_LENGTH} characters", field)
    if password.strip().lower() == email.strip().lower():
        raise Invalid("password must not be the email address", field)
    name = email.partition("@")[0]
    from zxcvbn import zxcvbn  # its dictionaries load on the first password set, not at every start of auth

    scored = zxcvbn(password[:SCORED_LENGTH], user_inputs=[email, name], max_length=SCORED_LENGTH)
    if scored["score"] < MIN_SCORE:
        hint = scored["feedback"]["warning"] or "add more words or characters"
        raise Invalid(f"password is too easy to guess (strength {scored['score']} of 4, at least 3): {hint}", field)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; with no hash (unknown user) it costs the same and is False."""

    def verify() -> bool:
        try:
            return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
