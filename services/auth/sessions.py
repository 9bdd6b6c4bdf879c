"""Sign-in (with a second factor when the user enrolled one), refresh-token rotation with reuse detection
(RFC 9700), sign-out, the user's own password change and sessions.

A session (`sid`) groups the refresh tokens of one sign-in. Refresh tokens are opaque random strings,
stored as SHA-256 hashes, single use: each refresh marks the presented token used and issues the next.
A used token presented again means it leaked, so the whole session is revoked.

Each action writes its security event (services/auth/security_events.py) in the transaction of the change;
`sign_in_throttled`, `sign_in_failed` and `mfa_failed` in a transaction of their own (the attempt was counted
before the password or code was checked, throttle.py, and a throttled attempt's transaction rolls back).

A user with MFA gets no tokens for the password alone but an `mfaToken` (opaque, SHA-256 stored, 5 minutes,
single use) to answer with a code; wrong codes count as failed sign-ins in the same throttle.
"""

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault import metrics
from clientvault.context import RequestContext
from clientvault.db import Database
from clientvault.errors import Invalid, NotFound, Throttled, Unauthenticated, Unavailable
from clientvault.events import AuditAction
from clientvault.ids import new_id
from clientvault.logging import get_logger
from clientvault.revocation import Revoker
from clientvault.settings import AuthSettings
from clientvault.tokens import Caller
from services.auth import store, throttle
from services.auth.factors import Factors
from services.auth.passwords import check_strength, hash_password, needs_rehash, verify_password
from services.auth.security_events import Actor, record
from services.auth.signing import TokenSigner
from services.auth.users import User, normalise_email

log = get_logger(__name__)
WRONG_CREDENTIALS = "wrong email or password"
MFA_TOKEN_TTL = timedelta(minutes=5)
MFA_METHODS = ("totp", "recoveryCode")


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    """What a sign-in of a user with MFA answers instead of tokens."""

    mfa_token: str
    methods: tuple[str, ...] = MFA_METHODS


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: UUID
    created_at: datetime
    last_used_at: datetime
    ip: str
    user_agent: str
    current: bool


def _hash(opaque_token: str) -> bytes:
    return hashlib.sha256(opaque_token.encode()).digest()


class Sessions:
    def __init__(
        self,
        db: Database,
        signer: TokenSigner,
        revoker: Revoker,
        settings: AuthSettings,
        factors: Factors,
        outbox_written: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._signer = signer
        self._revoker = revoker
        self._settings = settings
        self._factors = factors
        self._outbox_written = outbox_written  # wakes auth's relay (clientvault/outbox.py)

    async def sign_in(self, email: str, password: str, context: RequestContext) -> TokenPair | MfaChallenge:
        now = datetime.now(UTC)
        normalised = normalise_email(email)
        key = throttle.email_key(normalised)
        attempt = await self._admit(key, email, context, now)
        async with self._db.read() as conn:
            # PostgreSQL text cannot hold NUL, and no stored (validated) email has one: an unknown email.
            row = None if "\x00" in normalised else await store.get_user_by_email(conn, normalised)
        # Unknown emails verify against a dummy hash, so both failures take the same time.
        matches = await verify_password(row.password_hash if row else None, password)
        if row is None or not matches or row.disabled_at is not None:
            metrics.SIGN_INS_BY_OUTCOME["failed"].inc()
            reason = "unknown email" if row is None else "wrong password" if not matches else "account disabled"
            await self._record_alone(AuditAction.SIGN_IN_FAILED, email, context, {"reason": reason})
            log.info("session.sign_in_failed", known_user=row is not None)
            raise Unauthenticated(WRONG_CREDENTIALS)
        expires = row.temporary_password_expires_at
        if row.password_change_required and expires is not None and now >= expires:
            metrics.SIGN_INS_BY_OUTCOME["failed"].inc()
            await self._record_alone(
                AuditAction.SIGN_IN_FAILED, email, context, {"reason": "temporary password expired"}
            )
            log.info("session.sign_in_failed", known_user=True)
            # Said only to whoever typed the right temporary password: the account exists, and they were given it.
            raise Unauthenticated("the temporary password has expired: ask an admin for a new one")
        user = User.from_row(row)
        if needs_rehash(row.password_hash):
            new_hash = await hash_password(password)
            async with self._db.begin() as conn:
                await store.set_password_hash(conn, user.id, new_hash)
        if user.mfa_enabled:
            mfa_token = secrets.token_urlsafe(32)
            async with self._db.begin() as conn:
                await throttle.withdraw(conn, attempt)
                await store.insert_mfa_challenge(
                    conn, token_hash=_hash(mfa_token), user_id=user.id, expires_at=now + MFA_TOKEN_TTL
                )
            log.info("session.mfa_challenged", user_id=str(user.id))
            return MfaChallenge(mfa_token)
        return await self._start_session(user, context, now, attempt=attempt, mfa=False)

    async def complete_mfa(self, mfa_token: str, code: str, context: RequestContext) -> TokenPair:
        """The token pair for a sign-in's MFA challenge answered with a TOTP or recovery code."""
        now = datetime.now(UTC)
        async with self._db.read() as conn:
            challenge = await store.get_mfa_challenge(conn, _hash(mfa_token))
            row = await store.get_user(conn, challenge.user_id) if challenge is not None else None
        if challenge is None or row is None or challenge.used_at is not None or now >= challenge.expires_at:
            raise Unauthenticated("invalid or expired mfa token; sign in again")
        key, challenge_email = throttle.email_key(row.email), row.email
        attempt = await self._admit(key, row.email, context, now)
        async with self._db.begin() as conn:
            challenge = await store.get_mfa_challenge(conn, _hash(mfa_token))  # locked: one answer per token
            if challenge is None or challenge.used_at is not None:
                raise Unauthenticated("invalid or expired mfa token; sign in again")
            row = await store.lock_user(conn, challenge.user_id)
            accepted = row is not None and row.disabled_at is None and await self._factors.accept(conn, row, code, now)
            if accepted:
                await store.use_mfa_challenge(conn, _hash(mfa_token), now)
        if not accepted or row is None:
            await self._record_alone(AuditAction.MFA_FAILED, challenge_email, context)
            raise Unauthenticated("wrong code")
        return await self._start_session(User.from_row(row), context, now, attempt=attempt, mfa=True)

    async def _admit(self, key: bytes, typed_email: str, context: RequestContext, now: datetime) -> int:
        """Counts an attempt against the sign-in throttle (refused, and recorded, when over it)."""
        try:
            async with self._db.begin() as conn:
                return await throttle.admit(conn, self._settings, key, context.client_ip, now)
        except Throttled:
            await self._record_alone(AuditAction.SIGN_IN_THROTTLED, typed_email, context)
            raise

    async def _record_alone(
        self, action: AuditAction, typed_email: str, context: RequestContext, detail: dict[str, object] | None = None
    ) -> None:
        """A refused attempt's event, in a transaction of its own (nothing else of the attempt is committed with
        it): nobody acted; the target is the user the email names, if one does."""
        normalised = normalise_email(typed_email)
        async with self._db.begin() as conn:
            row = None if "\x00" in normalised else await store.get_user_by_email(conn, normalised)
            target = User.from_row(row) if row else None
            await record(conn, action, actor=Actor.typed(typed_email), target=target, context=context, detail=detail)
        self._outbox_written()

    async def _start_session(
        self, user: User, context: RequestContext, now: datetime, *, attempt: int, mfa: bool
    ) -> TokenPair:
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
                ip=context.client_ip[:64],
                user_agent=context.user_agent[:512],
                mfa=mfa,
            )
            await store.insert_refresh_token(
                conn, token_hash=_hash(refresh_token), session_id=session_id, created_at=now
            )
            actor = Actor.of(user)
            for old_session in ended:
                detail = {"session_id": old_session, "reason": "session limit"}
                await record(
                    conn, AuditAction.SESSION_REVOKED, actor=actor, target=user, context=context, detail=detail
                )
            detail = {"session_id": session_id, "amr": ["pwd", "otp"] if mfa else ["pwd"]}
            await record(conn, AuditAction.SIGN_IN, actor=actor, target=user, context=context, detail=detail)
        self._outbox_written()
        for old_session in ended:  # their access tokens too, on every verifier
            await self._revoker.revoke_session(old_session)
        if ended:
            log.info("session.ended_oldest", user_id=str(user.id), count=len(ended))
        metrics.SIGN_INS_BY_OUTCOME["succeeded"].inc()
        log.info("session.signed_in", user_id=str(user.id), session_id=str(session_id))
        access = self._signer.sign(user, session_id, mfa=mfa, auth_time=int(now.timestamp()))
        return TokenPair(access, refresh_token, self._signer.ttl_s)

    async def refresh(self, refresh_token: str, context: RequestContext) -> TokenPair:
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
                    context=context,
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
        auth_time = int(row.session_created_at.timestamp())
        access = self._signer.sign(user, row.session_id, mfa=row.session_mfa, auth_time=auth_time)
        return TokenPair(access, next_token, self._signer.ttl_s)

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

    async def sign_out(self, caller: Caller, context: RequestContext) -> None:
        """Revokes the caller's session; again is a no-op (and no event)."""
        async with self._db.begin() as conn:
            revoked = await store.revoke_session(conn, caller.session_id, datetime.now(UTC))
            if revoked:
                detail = {"session_id": caller.session_id}
                await record(
                    conn, AuditAction.SIGN_OUT, actor=Actor.of(caller), target=caller, context=context, detail=detail
                )
        if revoked:
            self._outbox_written()
            await self._revoker.revoke_session(caller.session_id)
            log.info("session.signed_out", session_id=str(caller.session_id))

    async def change_password(self, caller: Caller, current: str, new: str, context: RequestContext) -> None:
        """The caller's own new password (the current one proves it is them). Ends every other session of the
        user; this one stays, and its next refresh drops the temporary password's restriction."""
        now = datetime.now(UTC)
        if new == current:
            raise Invalid("the new password must differ from the current one", "new_password")
        check_strength(new, caller.email, "new_password")  # before the password check: a weak one is no guess
        async with self._proven(caller, current, "current_password", context):
            new_hash = await hash_password(new)
            async with self._db.begin() as conn:
                await store.update_user(
                    conn,
                    caller.user_id,
                    password_hash=new_hash,
                    password_change_required=False,
                    temporary_password_expires_at=None,
                )
                ended = await store.revoke_user_sessions(conn, caller.user_id, now, keep=caller.session_id)
                detail = {"sessions_ended": len(ended)}
                actor = Actor.of(caller)
                await record(
                    conn, AuditAction.PASSWORD_CHANGED, actor=actor, target=caller, context=context, detail=detail
                )
        self._outbox_written()
        for session_id in ended:
            await self._revoker.revoke_session(session_id)
        log.info("user.password_changed", user_id=str(caller.user_id), sessions_ended=len(ended))

    async def disable_mfa(self, caller: Caller, password: str, code: str, context: RequestContext) -> None:
        """The caller turns their MFA off with their password and a current code."""
        async with self._proven(caller, password, "password", context):
            await self._factors.disable(caller, code, context)
        self._outbox_written()

    @asynccontextmanager
    async def _proven(self, caller: Caller, password: str, field: str, context: RequestContext) -> AsyncIterator[None]:
        """Runs the block once `password` is the caller's, for a change that needs it. Every attempt counts in
        the sign-in throttle (a stolen access token must not become a way to guess the password, or the code
        checked with it) and is withdrawn only when the whole block succeeds."""
        attempt = await self._admit(throttle.email_key(caller.email), caller.email, context, datetime.now(UTC))
        async with self._db.read() as conn:
            row = await store.get_user(conn, caller.user_id)
        if row is None or not await verify_password(row.password_hash, password):
            raise Invalid("the password is wrong", field)
        yield
        async with self._db.begin() as conn:
            await throttle.withdraw(conn, attempt)

    async def list_sessions(self, caller: Caller) -> list[SessionInfo]:
        now = datetime.now(UTC)
        idle_since = now - timedelta(seconds=self._settings.refresh_idle_ttl_s)
        async with self._db.read() as conn:
            rows = await store.live_sessions(conn, caller.user_id, now, idle_since)
        return [_session_info(row, caller.session_id) for row in rows]

    async def revoke_session(self, caller: Caller, session_id: UUID, context: RequestContext) -> None:
        """Ends one of the caller's own sessions (another user's is not found)."""
        async with self._db.begin() as conn:
            row = await store.get_session(conn, session_id)
            if row is None or row.user_id != caller.user_id:
                raise NotFound("session not found")
            if await store.revoke_session(conn, session_id, datetime.now(UTC)):
                await self._session_revoked(conn, Actor.of(caller), caller, [session_id], "ended by the user", context)
        self._outbox_written()
        await self._revoker.revoke_session(session_id)

    async def revoke_user_sessions(self, actor: Caller, user_id: UUID, context: RequestContext) -> None:
        """Ends every session of a user (an admin's)."""
        async with self._db.begin() as conn:
            row = await store.get_user(conn, user_id)
            if row is None:
                raise NotFound("user not found")
            ended = await store.revoke_user_sessions(conn, user_id, datetime.now(UTC))
            await self._session_revoked(conn, Actor.of(actor), User.from_row(row), ended, "ended by an admin", context)
        self._outbox_written()
        await self._revoker.revoke_user(user_id)

    async def _session_revoked(
        self,
        conn: AsyncConnection,
        actor: Actor,
        target: User | Caller,
        ended: list[UUID],
        reason: str,
        context: RequestContext,
    ) -> None:
        """One `session_revoked` per session ended, as the per-user cap records them."""
        for session_id in ended:
            detail = {"session_id": session_id, "reason": reason}
            await record(conn, AuditAction.SESSION_REVOKED, actor=actor, target=target, context=context, detail=detail)


def _session_info(row: Row[Any], current: UUID) -> SessionInfo:
    return SessionInfo(row.id, row.created_at, row.last_used_at, row.ip, row.user_agent, row.id == current)
