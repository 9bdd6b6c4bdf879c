"""Sign-in throttling per email address (known or not) and per client IP, kept in PostgreSQL so that
every auth replica counts the same failures.

After `max` failures inside `window`, further attempts are refused (even with the right password) until
the oldest of those failures leaves the window; `Retry-After` says how long that is.
"""

import hashlib
import math
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault.errors import Throttled
from clientvault.settings import AuthSettings
from services.auth import store


def email_key(normalised_email: str) -> bytes:
    return hashlib.sha256(normalised_email.encode()).digest()


async def check(conn: AsyncConnection, settings: AuthSettings, key: bytes, client_ip: str, now: datetime) -> None:
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
        raise Throttled("too many failed sign-in attempts; try again later", math.ceil(max(waits)))


async def record_failure(conn: AsyncConnection, key: bytes, client_ip: str, now: datetime) -> None:
    await store.insert_sign_in_failure(conn, key, client_ip, now)
