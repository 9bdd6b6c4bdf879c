"""Per-client access in the vault (CLIENTVAULT_CLIENT_SCOPING): may this caller see this client's credentials?

The clients service owns memberships; the vault asks it as the caller (GetClient with the caller's token, which
answers NOT_FOUND to a non-member) and keeps the answer per (user, client) for `ttl_s`. Every change of a
membership reaches this process through the revocation bucket (clientvault/revocation.py, `access.<client>.<user>`)
and drops the answer kept for it at once; the TTL bounds how long an answer can outlive a change this process
missed. So a reveal stays one database round trip in the vault, plus this lookup, from memory when it is kept.
"""

import time
from uuid import UUID

from clientvault import policy
from clientvault.errors import NotFound
from clientvault.tokens import Caller
from services.vault.credentials import ClientLookup, ClientState

MAX_KEPT = 100_000  # answers kept at most; past it they are all dropped (then asked again, one by one)


class ClientAccess:
    def __init__(self, lookup: ClientLookup, *, scoping: bool, ttl_s: float) -> None:
        self._lookup = lookup
        self._scoping = scoping
        self._ttl_s = ttl_s
        self._kept: dict[tuple[UUID, UUID], tuple[bool, float]] = {}
        self._changes = 0  # counts changes, so an answer asked before one is not kept after it

    async def require(self, caller: Caller, client_id: UUID) -> None:
        """Raises NotFound("client not found") unless the caller may see the client: scoping is off, their role sees
        every client, or they are a member of it."""
        if not self._scoping or policy.sees_every_client(caller.role):
            return
        key, now = (caller.user_id, client_id), time.monotonic()
        kept = self._kept.get(key)
        if kept is not None and kept[1] > now:
            visible = kept[0]
        else:
            changes = self._changes
            visible = await self._lookup(client_id) is not ClientState.UNKNOWN
            if self._ttl_s > 0 and changes == self._changes:
                if len(self._kept) >= MAX_KEPT:
                    self._kept.clear()
                self._kept[key] = (visible, now + self._ttl_s)
        if not visible:
            raise NotFound("client not found")

    def changed(self, client_id: UUID, user_id: UUID) -> None:
        """The user's access to the client changed (DenyList.on_access): forget what was kept of it."""
        self._changes += 1
        self._kept.pop((user_id, client_id), None)
