"""Sign-in, refresh-token rotation with reuse detection (RFC 9700), and sign-out.

A session (`sid`) groups the refresh tokens of one sign-in. Refresh tokens are opaque random strings,
stored as SHA-256 hashes, single use: each refresh marks the presented token used and issues the next.
A used token presented again means it leaked, so the whole session is revoked.

Each of these writes its security event (services/auth/security_events.py) in the transaction of the change:
`sign_in` with the session it creates, `session_revoked` for each session the per-user cap ends, `sign_out`,
`refresh_token_reused`; `sign_in_throttled` and `sign_in_failed` in a transaction of their own (the attempt was
counted before the password was checked, throttle.py, and a throttled attempt's transaction rolls back).
"""

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clientvault import metrics
from clientvault.context import RequestContext
from clientvault.db import Database
from clientvault.errors import Throttled, Unauthenticated, Unavailable
from clientvault.events import AuditAction
from clientvault.ids import new_id
from clientvault.logging import get_logger
from clientvault.revocation import Revoker
from clientvault.settings import AuthSettings
from clientvault.tokens import Caller
from services.auth import store, throttle
from services.auth.passwords import hash_password, needs_rehash, verify_password
from services.auth.security_events import Actor, record
from services.auth.signing import TokenSigner
from services.auth.users import User, normalise_email

log = get_logger(__name__)
WRONG_CREDENTIALS = "wrong email or password"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


def _hash(refresh_token: str) -> bytes:
    return hashlib.sha256(refresh_token.encode()).digest()


class Sessions:
    def __init__(
        self,
        db: Database,
        signer: TokenSigner,
        revoker: Revoker,
        settings: AuthSettings,
        outbox_written: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._signer = signer
        self._revoker = revoker
        self._settings = settings
        self._outbox_written = outbox_written  # wakes auth's relay (clientvault/outbox.py)

    async def sign_in(self, email: str, password: str, meta: RequestContext) -> TokenPair:
        now = datetime.now(UTC)
        normalised = normalise_email(email)
        key = throttle.email_key(normalised)
        try:
            async with self._db.begin() as conn:
                attempt = await throttle.admit(conn, self._settings, key, meta.client_ip, now)
                # PostgreSQL text cannot hold NUL, and no stored (validated) email has one: an unknown email.
                row = None if "\x00" in normalised else await store.get_user_by_email(conn, normalised)
        except Throttled:
            await self._record_alone(AuditAction.SIGN_IN_THROTTLED, email, normalised, meta)
            raise
        # Unknown emails verify against a dummy hash, so both failures take the same time.
        matches = await verify_password(row.password_hash if row else None, password)
        if row is None or not matches or row.disabled_at is not None:
            metrics.SIGN_INS_BY_OUTCOME["failed"].inc()
            log.info("session.sign_in_failed", known_user=row is not None)
            reason = "unknown email" if row is None else "wrong password" if not matches else "account disabled"
            await self._record_alone(AuditAction.SIGN_IN_FAILED, email, normalised, meta, {"reason": reason})
            raise Unauthenticated(WRONG_CREDENTIALS)
        user = User.from_row(row)
        if needs_rehash(row.password_hash):
            new_hash = await hash_password(password)
            async with self._db.begin() as conn:
                await store.set_password_hash(conn, user.id, new_hash)
        session_id = new_id()
        refresh_token = secrets.token_urlsafe(32)
        async with self._db.begin() as conn:
            await throttle.withdraw(conn, attempt)
            # At most max_sessions_per_user live sessions: this one ends the least recently used beyond that.
            ended = await store.end_sessions_beyond(
                conn,
                user.id,
                keep=self._settings.max_sessions_per_user - 1,
                now=now,
                idle_since=now - timedelta(seconds=self._settings.refresh_idle_ttl_s),
            )
            await store.insert_session(
                conn,
                id=session_id,
                user_id=user.id,
                created_at=now,
                last_used_at=now,
                expires_at=now + timedelta(seconds=self._settings.refresh_absolute_ttl_s),
            )
            await store.insert_refresh_token(
                conn, token_hash=_hash(refresh_token), session_id=session_id, created_at=now
            )
            actor = Actor.of(user)
            for old_session in ended:
                detail = {"session_id": old_session, "reason": "session limit"}
                await record(conn, AuditAction.SESSION_REVOKED, actor=actor, target=user, context=meta, detail=detail)
            await record(
                conn, AuditAction.SIGN_IN, actor=actor, target=user, context=meta, detail={"session_id": session_id}
            )
        self._outbox_written()
        for old_session in ended:  # their access tokens too, on every verifier
            await self._revoker.revoke_session(old_session)
        if ended:
            log.info("session.ended_oldest", user_id=str(user.id), count=len(ended))
        metrics.SIGN_INS_BY_OUTCOME["succeeded"].inc()
        log.info("session.signed_in", user_id=str(user.id), session_id=str(session_id))
        return TokenPair(self._signer.sign(user, session_id), refresh_token, self._signer.ttl_s)

    async def _record_alone(
        self,
        action: AuditAction,
        typed_email: str,
        normalised: str,
        meta: RequestContext,
        detail: dict[str, object] | None = None,
    ) -> None:
        """A refused attempt's event, in a transaction of its own (nothing else of the attempt is committed with
        it): nobody acted; the target is the user the email names, if one does."""
        async with self._db.begin() as conn:
            row = None if "\x00" in normalised else await store.get_user_by_email(conn, normalised)
            target = User.from_row(row) if row else None
            await record(conn, action, actor=Actor.typed(typed_email), target=target, context=meta, detail=detail)
        self._outbox_written()

    async def refresh(self, refresh_token: str, meta: RequestContext) -> TokenPair:
        now = datetime.now(UTC)
        token_hash = _hash(refresh_token)
        next_token = secrets.token_urlsafe(32)
        reused = False
        async with self._db.begin() as conn:
            row = await store.get_refresh_token(conn, token_hash)
            if row is None:
                raise Unauthenticated("invalid refresh token")
            if row.used_at is not None:
                reused = await store.revoke_session(conn, row.session_id, now)
                owner = User.from_row(row)
                await record(
                    conn,
                    AuditAction.REFRESH_TOKEN_REUSED,
                    actor=Actor.of(owner),
                    target=owner,
                    context=meta,
                    detail={"session_id": row.session_id, "session_revoked": reused},
                )
            else:
                idle_end = row.last_used_at + timedelta(seconds=self._settings.refresh_idle_ttl_s)
                if row.revoked_at is not None or now >= row.expires_at or now >= idle_end:
                    raise Unauthenticated("the session has ended; sign in again")
                if row.disabled_at is not None:
                    raise Unauthenticated("the account is disabled")
                await store.mark_refresh_token_used(conn, token_hash, now)
                await store.insert_refresh_token(
                    conn, token_hash=_hash(next_token), session_id=row.session_id, created_at=now
                )
                await store.touch_session(conn, row.session_id, now)
        if row.used_at is not None:
            self._outbox_written()
            if reused:
                await self._revoker.revoke_session(row.session_id)
            log.warning("session.refresh_token_reused", session_id=str(row.session_id), user_id=str(row.id))
            raise Unauthenticated("refresh token was already used; the session is revoked")
        user = User.from_row(row)
        return TokenPair(self._signer.sign(user, row.session_id), next_token, self._signer.ttl_s)

    async def purge_forever(self, every_s: float = 600) -> None:
        """Keeps the tables small: old failures and long-ended sessions go (a day after they stop mattering)."""
        longest_window = max(self._settings.sign_in_email_window_s, self._settings.sign_in_ip_window_s)
        while True:
            now = datetime.now(UTC)
            try:
                async with self._db.begin() as conn:
                    await store.purge(
                        conn,
                        failures_before=now - timedelta(seconds=longest_window),
                        sessions_ended_before=now - timedelta(days=1),
                    )
            except Unavailable:
                log.warning("session.purge_postponed")
            await asyncio.sleep(every_s)

    async def sign_out(self, caller: Caller, meta: RequestContext) -> None:
        """Revokes the caller's session; again is a no-op (and no event)."""
        async with self._db.begin() as conn:
            revoked = await store.revoke_session(conn, caller.session_id, datetime.now(UTC))
            if revoked:
                await record(
                    conn,
                    AuditAction.SIGN_OUT,
                    actor=Actor.of(caller),
                    target=caller,
                    context=meta,
                    detail={"session_id": caller.session_id},
                )
        if revoked:
            self._outbox_written()
            await self._revoker.revoke_session(caller.session_id)
            log.info("session.signed_out", session_id=str(caller.session_id))
