"""Revocation of access tokens, broadcast to every verifier within a second.

Access tokens are stateless, so a revoked session (sign-out, refresh-token reuse) or a disabled user is
published to a JetStream key-value bucket. Every verifier (gateway and service replicas) watches the
bucket and keeps a deny list in memory; a verifier that starts or reconnects replays the whole bucket, so
it misses nothing. Entries expire from the bucket once every token they could deny has expired.

The same bucket carries changes of per-client access (`access.<client_id>.<user_id>`, put by the clients service
when a member is added or removed or a grant starts or ends; `access.<client_id>` alone when what the client
requires of everyone changed, its `reveal_reason_required`): they deny no token, but a verifier's listeners
(`on_access`: the vault's cache of who may see which client and on what terms, services/vault/access.py) drop what
they kept about that user (or every user) and client at once.
"""

import asyncio
import json
import time
from collections.abc import Callable
from uuid import UUID

import stamina
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.errors import BucketNotFoundError

from clientvault import metrics, retrying
from clientvault.logging import get_logger, log_nats_error
from clientvault.nats_access import BOOTSTRAP_HINT, BUCKET, connect

ENTRY_TTL_S = 3600 + 60  # the longest access-token lifetime the settings allow, plus clock slack

log = get_logger(__name__)


async def create_bucket(nc: NATS, replicas: int) -> None:
    """The bucket as the operator creates it (ops/jetstream.py), never a process (their NATS users may not)."""
    await nc.jetstream().create_key_value(bucket=BUCKET, ttl=ENTRY_TTL_S, history=1, replicas=replicas)


async def _bucket(nc: NATS) -> object:
    try:
        return await nc.jetstream().key_value(BUCKET)
    except BucketNotFoundError:
        # Not for a process to create (its NATS user may not): `clientvault up` or `migrate` makes it.
        log.error("revocations.bucket_missing", bucket=BUCKET, fix=BOOTSTRAP_HINT)
        raise


# (client_id, user_id): that user's access to that client changed; (client_id, None): every user's did.
AccessListener = Callable[[UUID, UUID | None], None]


def _access_key(ident: str) -> tuple[UUID, UUID | None] | None:
    client, _, user = ident.partition(".")
    try:
        return UUID(client), UUID(user) if user else None
    except ValueError:
        return None


class DenyList:
    def __init__(self) -> None:
        self._sessions: dict[str, float] = {}
        self._users: dict[str, float] = {}
        self._access_listeners: list[AccessListener] = []
        self.synced = asyncio.Event()

    def on_access(self, listener: AccessListener) -> None:
        """Calls `listener(client_id, user_id)` for every change of a user's access to a client (replayed ones
        too, after a reconnect: a listener that keeps answers for less than the bucket keeps entries misses none)."""
        self._access_listeners.append(listener)

    def is_revoked(self, session_id: UUID, user_id: UUID, issued_at: int) -> bool:
        if str(session_id) in self._sessions:
            return True
        revoked_at = self._users.get(str(user_id))
        return revoked_at is not None and issued_at <= revoked_at

    def apply(self, key: str, value: bytes | None) -> float | None:
        """Adds a revocation to the list; when it was published (None: not a revocation)."""
        kind, _, ident = key.partition(".")
        at = float(json.loads(value)["at"]) if value else None
        if kind == "access" and (changed := _access_key(ident)) is not None:
            for listener in self._access_listeners:
                listener(*changed)
            return None
        table = self._sessions if kind == "session" else self._users if kind == "user" else None
        if table is None or at is None:
            return None
        table[ident] = max(at, table.get(ident, at))
        horizon = time.time() - ENTRY_TTL_S
        for stale in [k for k, v in table.items() if v < horizon]:
            del table[stale]
        return at

    async def run(self, nats_url: str) -> None:
        """Watch the bucket forever, reconnecting (and replaying it) after any broker outage."""
        await retrying.forever(
            lambda: self._watch(nats_url), outage="revocations.unavailable", failure="revocations.failed"
        )

    async def _watch(self, nats_url: str) -> None:
        """One connection: replay the bucket, then follow it until the connection closes."""
        closed = asyncio.Event()

        async def on_closed() -> None:
            closed.set()

        nc = await connect(
            nats_url, allow_reconnect=False, connect_timeout=2, closed_cb=on_closed, error_cb=log_nats_error
        )
        try:
            watcher = await (await _bucket(nc)).watchall()  # type: ignore[attr-defined]
            watching = asyncio.create_task(self._consume(watcher))
            await asyncio.wait([watching, asyncio.create_task(closed.wait())], return_when="FIRST_COMPLETED")
            watching.cancel()
        finally:
            self.synced.clear()
            await nc.close()

    async def _consume(self, watcher: object) -> None:
        async for entry in watcher:  # type: ignore[attr-defined]
            if entry is None:  # the initial replay is complete
                self.synced.set()
                log.info("revocations.synced", sessions=len(self._sessions), users=len(self._users))
                continue
            at = self.apply(entry.key, entry.value)
            if at is not None and self.synced.is_set():  # a live revocation, not the replay of old ones
                metrics.REVOCATION_LAG.observe(max(0.0, time.time() - at))


class _NotOut(Exception):
    """A revocation NATS did not take yet."""


class Revoker:
    """Publishes revocations (auth service, operator CLI). One quick attempt in the request; if the broker
    does not answer, the revocation is retried in the background until it is out or no token it could
    deny is left, so a NATS outage delays revocation but never loses it."""

    ATTEMPT_TIMEOUT_S = 1.0

    def __init__(self, nats_url: str) -> None:
        self._nats_url = nats_url
        self._nc: NATS | None = None
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()

    async def revoke_session(self, session_id: UUID) -> None:
        await self._publish(f"session.{session_id}")

    async def revoke_user(self, user_id: UUID) -> None:
        await self._publish(f"user.{user_id}")

    async def access_changed(self, client_id: UUID, user_id: UUID | None = None) -> None:
        """A user became, or stopped being, a member of a client (the clients service), or with no user, what the
        client requires of everyone changed (its reveal_reason_required): verifiers drop what they cached of it
        (`DenyList.on_access`)."""
        await self._publish(f"access.{client_id}" if user_id is None else f"access.{client_id}.{user_id}")

    async def _publish(self, key: str) -> None:
        value = json.dumps({"at": time.time()}).encode()
        if not await self._attempt(key, value):
            retry = asyncio.create_task(self._retry(key, value))
            self._pending.add(retry)
            retry.add_done_callback(self._pending.discard)

    async def _attempt(self, key: str, value: bytes) -> bool:
        try:
            async with asyncio.timeout(self.ATTEMPT_TIMEOUT_S):
                async with self._lock:
                    if self._nc is None or self._nc.is_closed:
                        self._nc = await connect(
                            self._nats_url, connect_timeout=1, max_reconnect_attempts=-1, error_cb=log_nats_error
                        )
                    bucket = await _bucket(self._nc)
                await bucket.put(key, value)  # type: ignore[attr-defined]
            return True
        except (OSError, NatsError, TimeoutError) as error:
            log.warning("revocations.publish_failed", error=type(error).__name__, kind=key.partition(".")[0])
            return False

    async def _retry(self, key: str, value: bytes) -> None:
        """Until it is out, or no token it could deny is left (the entry's lifetime)."""
        try:
            async for attempt in stamina.retry_context(
                on=_NotOut, attempts=None, timeout=ENTRY_TTL_S, **retrying.BACKOFF
            ):
                with attempt:
                    if not await self._attempt(key, value):
                        raise _NotOut
        except _NotOut:
            log.error("revocations.not_broadcast", kind=key.partition(".")[0])
            return
        log.info("revocations.published_late", kind=key.partition(".")[0])

    async def drain(self, timeout_s: float) -> bool:
        """Waits for revocations still being retried; False if some are not out yet."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout_s)
        return not self._pending

    async def close(self) -> None:
        for retry in self._pending:
            retry.cancel()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
