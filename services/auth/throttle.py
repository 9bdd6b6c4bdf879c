"""Sign-in throttling per email address (known or not) and per client IP, kept in PostgreSQL so that
every auth replica counts the same failures.

After `max` failures inside `window`, further attempts are refused (even with the right password) until
the oldest of those failures leaves the window; `Retry-After` says how long that is.

An attempt is counted as a failure *before* its password is checked, in the same transaction as the
check and under a lock per email and per IP, and withdrawn if the password was right. So a burst of
parallel guesses cannot all pass the check before any of them is recorded: the limit holds under
concurrency.
"""

import hashlib
import math
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault import metrics
from clientvault.errors import Throttled
from clientvault.settings import AuthSettings
from services.auth import store


def email_key(normalised_email: str) -> bytes:
    return hashlib.sha256(normalised_email.encode()).digest()


async def admit(conn: AsyncConnection, settings: AuthSettings, key: bytes, client_ip: str, now: datetime) -> int:
    """Refuses the attempt if the email or the IP is over its limit; otherwise counts it as a failure
    until `withdraw` says it was not one. Returns the id of that provisional failure."""
    await store.lock_sign_in_keys(conn, key, client_ip)
    await _check(conn, settings, key, client_ip, now)
    return await store.insert_sign_in_failure(conn, key, client_ip, now)


async def withdraw(conn: AsyncConnection, failure_id: int) -> None:
    """The attempt succeeded: it is not a failure after all."""
    await store.delete_sign_in_failure(conn, failure_id)


async def _check(conn: AsyncConnection, settings: AuthSettings, key: bytes, client_ip: str, now: datetime) -> None:
    limits = [
        ("email_key", key, settings.sign_in_email_max_failures, settings.sign_in_email_window_s),
        ("client_ip", client_ip, settings.sign_in_ip_max_failures, settings.sign_in_ip_window_s),
    ]
    waits = []
    for column, value, limit, window_s in limits:
        window = timedelta(seconds=window_s)
        failures = await store.recent_failure_times(conn, column, value, now - window, limit)
        if len(failures) >= limit:
            waits.append((failures[-1] + window - now).total_seconds())
    if waits:
        metrics.SIGN_INS_BY_OUTCOME["throttled"].inc()
        raise Throttled("too many failed sign-in attempts; try again later", math.ceil(max(waits)))
