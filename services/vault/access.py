"""Per-client access in the vault: may this caller see this client's credentials, and on what terms?

The clients service owns memberships, grants and what a client requires of a reveal; the vault asks it as the
caller (GetClient with the caller's token, which answers NOT_FOUND to a non-member when CLIENTVAULT_CLIENT_SCOPING is
on) and keeps the answer (`Access`) for `ttl_s`, never past the end of the grant it came from (`expires_at`), so a
grant's end is a 404 at once without anyone acting.

- With scoping on, a caller who does not see every client gets the answer kept per (user, client).
- Everyone else (scoping off, or an admin) gets the same answer about a client (its `reveal_reason_required`; no
  grant), kept per client. Only a reveal needs it there: other calls ask nothing (`reveal=False`).

Every change reaches this process through the revocation bucket (clientvault/revocation.py): `access.<client>.<user>`
(a membership or grant) drops the answer kept for that user, `access.<client>` (the client's reveal_reason_required)
every answer kept about the client. The TTL bounds how long an answer can outlive a change this process missed. So a
reveal stays one database round trip in the vault, plus this lookup, from memory when it is kept.
"""

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

from clientvault import policy
from clientvault.errors import NotFound
from clientvault.tokens import Caller

MAX_KEPT = 100_000  # answers kept at most; past it they are all dropped (then asked again, one by one)


@dataclass(frozen=True, slots=True)
class Access:
    """What the clients service answered about a client, to a caller who may see it."""

    reveal_reason_required: bool = False  # every reveal must name a reason
    grant_id: UUID | None = None  # the caller sees the client through this grant (not membership or role)
    expires_at: datetime | None = None  # when that grant ends


EVERYONE = Access()  # no per-client rule known: what the vault assumes without a lookup

# The clients service's answer about a client to the caller of the RPC being served; None: not found for them.
SeeClient = Callable[[UUID], Awaitable[Access | None]]


class RequireAccess(Protocol):
    async def __call__(self, caller: Caller, client_id: UUID, *, reveal: bool = False) -> Access:
        """The caller's access to the client; NotFound("client not found") when they may not see it. `reveal`: the
        answer must say what the client requires of a reveal."""
        ...


async def everyone(caller: Caller, client_id: UUID, *, reveal: bool = False) -> Access:
    """No per-client access: everyone sees every client, and no client requires anything of a reveal."""
    return EVERYONE


class ClientAccess:
    def __init__(self, see: SeeClient, *, scoping: bool, ttl_s: float) -> None:
        self._see = see
        self._scoping = scoping
        self._ttl_s = ttl_s
        self._kept: dict[tuple[UUID | None, UUID], tuple[Access | None, float]] = {}
        self._changes = 0  # counts changes, so an answer asked before one is not kept after it

    async def require(self, caller: Caller, client_id: UUID, *, reveal: bool = False) -> Access:
        """Raises NotFound("client not found") unless the caller may see the client: scoping is off, their role sees
        every client, or the clients service shows it to them (a member, or a grant). With `reveal`, or when it had to
        ask anyway, the answer says what the client requires of a reveal and the grant it came through."""
        scoped = self._scoping and not policy.sees_every_client(caller.role)
        if not scoped and not reveal:
            return EVERYONE
        key, now = (caller.user_id if scoped else None, client_id), time.monotonic()
        kept = self._kept.get(key)
        if kept is not None and kept[1] > now:
            found = kept[0]
        else:
            changes = self._changes
            found = await self._see(client_id)
            keep_s = self._ttl_s
            if found is not None and found.expires_at is not None:  # never past the grant's end
                keep_s = min(keep_s, (found.expires_at - datetime.now(UTC)).total_seconds())
            if keep_s > 0 and changes == self._changes:
                if len(self._kept) >= MAX_KEPT:
                    self._kept.clear()
                self._kept[key] = (found, now + keep_s)
        if found is None:
            if scoped:
                raise NotFound("client not found")
            return EVERYONE  # not the vault's to say (an unknown client's credential is not found by the reveal)
        return found

    def changed(self, client_id: UUID, user_id: UUID | None) -> None:
        """The user's (None: every user's) access to the client changed (DenyList.on_access): forget what was kept
        of it."""
        self._changes += 1
        if user_id is not None:
            self._kept.pop((user_id, client_id), None)
            return
        for key in [key for key in self._kept if key[1] == client_id]:  # rare (an admin's setting): a scan is fine
            del self._kept[key]
