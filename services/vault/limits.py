"""Reveal rate limits per user and per client IP, counted in PostgreSQL so that every vault replica counts
the same reveals (a per-process counter would multiply the limit by the number of replicas).

Fixed windows of `reveal_window_s` seconds, aligned to the epoch: in one window a user may reveal at most
`reveal_user_max` times and a client IP at most `reveal_ip_max` times; the next attempt is refused with
`Retry-After` = the seconds left in the window. Every attempt counts, also one for a credential that does
not exist, so guessing ids is limited as well. A refused attempt reveals nothing; it is audited as
`reveal_throttled` (naming the limits exceeded) and logged. A limit of 0 turns that limit off. A call without
a client IP (a service calling the vault directly, not through the gateway) is limited per user only.

The counting is part of the reveal's one statement (store.REVEAL): no extra round trip, and a refused
attempt stamps nothing and writes its `reveal_throttled` event in the same breath.
"""

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from clientvault.db import Database
from clientvault.errors import Throttled, Unavailable
from clientvault.logging import get_logger
from clientvault.settings import VaultSettings
from services.vault import store

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Counting:
    """What the reveal statement (store.REVEAL) counts an attempt against: keys and their maxima, the window."""

    keys: list[str]
    maxes: list[int]
    window_start: datetime
    left_s: float


class RevealLimiter:
    def __init__(self, db: Database, settings: VaultSettings) -> None:
        self._db = db
        self._settings = settings

    def _window(self, now: datetime) -> tuple[datetime, float]:
        """The start of the window `now` is in, and the seconds left in it."""
        window_s = self._settings.reveal_window_s
        start = now.timestamp() // window_s * window_s
        return datetime.fromtimestamp(start, UTC), start + window_s - now.timestamp()

    def counting(self, user_id: UUID, client_ip: str, now: datetime) -> Counting:
        """The counters one attempt adds to (user before IP: every reveal locks them in that order)."""
        limits = {}
        if self._settings.reveal_user_max:
            limits[f"user:{user_id}"] = self._settings.reveal_user_max
        if self._settings.reveal_ip_max and client_ip:
            limits[f"ip:{client_ip}"] = self._settings.reveal_ip_max
        window_start, left_s = self._window(now)
        return Counting(list(limits), list(limits.values()), window_start, left_s)

    def refused(self, user_id: UUID, counting: Counting) -> Throttled:
        log.warning("reveal.throttled", user_id=str(user_id))
        return Throttled("too many reveals; try again later", math.ceil(counting.left_s))

    async def purge_forever(self) -> None:
        """Deletes the counters of windows that have ended."""
        while True:
            await asyncio.sleep(self._settings.reveal_window_s)
            window_start, _ = self._window(datetime.now(UTC))
            try:
                async with self._db.read() as conn:
                    await store.purge_reveal_counts(conn, before=window_start)
            except Unavailable:
                log.warning("reveal.purge_postponed")
