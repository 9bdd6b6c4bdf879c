"""The user's second factor: TOTP enrolment (pending until a code confirms it), recovery codes, turning it
off (the user with password and code, or an admin), and accepting a code at sign-in (once)."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault.context import NO_REQUEST, Caller, RequestContext
from clientvault.db import Database
from clientvault.errors import Conflict, Invalid, NotFound
from clientvault.events import AuditAction
from clientvault.logging import get_logger
from services.auth import mfa, store
from services.auth.mfa import Sealer
from services.auth.security_events import OPERATOR, Actor, record
from services.auth.users import User

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str  # base32, shown once for manual entry
    otpauth_uri: str


class Factors:
    def __init__(self, db: Database, sealer: Sealer, outbox_written: Callable[[], None] = lambda: None) -> None:
        self._db = db
        self._sealer = sealer
        self._outbox_written = outbox_written  # wakes auth's relay (clientvault/outbox.py)

    async def start_totp(self, user_id: UUID) -> Enrolment:
        """A new TOTP secret for the user, pending until `confirm_totp`; starting again replaces it."""
        seed = mfa.new_seed()
        sealed = self._sealer.seal(user_id, seed)
        async with self._db.begin() as conn:
            row = await store.lock_user(conn, user_id)
            if row is None:
                raise NotFound("user not found")
            if row.mfa_enabled_at is not None:
                raise Conflict("MFA is already on: turn it off first to enrol a new device")
            await store.update_user(conn, user_id, totp_pending_sealed=sealed)
        return Enrolment(seed, mfa.otpauth_uri(seed, row.email))

    async def confirm_totp(self, caller: Caller, code: str, context: RequestContext) -> list[str]:
        """Turns MFA on when `code` is the pending secret's; the ten recovery codes, shown this once."""
        now, user_id = datetime.now(UTC), caller.user_id
        codes = mfa.new_recovery_codes()
        async with self._db.begin() as conn:
            row = await store.lock_user(conn, user_id)
            if row is None:
                raise NotFound("user not found")
            if row.totp_pending_sealed is None:
                raise Conflict("no TOTP enrolment is pending: start one first")
            step = mfa.matching_step(self._sealer.open(user_id, row.totp_pending_sealed), code.strip(), None)
            if step is None:
                raise Invalid("the code does not match: check the device's clock and try the next code", "code")
            await store.update_user(
                conn,
                user_id,
                totp_sealed=row.totp_pending_sealed,
                totp_pending_sealed=None,
                mfa_enabled_at=now,
                totp_last_step=step,
            )
            await store.replace_recovery_codes(conn, user_id, [mfa.recovery_code_hash(c) for c in codes])
            detail = {"method": "totp"}
            await record(
                conn, AuditAction.MFA_ENROLLED, actor=Actor.of(caller), target=caller, context=context, detail=detail
            )
        self._outbox_written()
        log.info("mfa.enrolled", user_id=str(user_id))
        return codes

    async def disable(self, caller: Caller, code: str, context: RequestContext) -> None:
        """The user turns MFA off, proving it with a current code (and, checked by the caller, the password)."""
        async with self._db.begin() as conn:
            row = await store.lock_user(conn, caller.user_id)
            if row is None:
                raise NotFound("user not found")
            if row.mfa_enabled_at is None:
                raise Conflict("MFA is not on")
            if not await self.accept(conn, row, code, datetime.now(UTC)):
                raise Invalid("the code does not match", "code")
            await self._turn_off(conn, row, actor=Actor.of(caller), by="user", context=context)

    async def reset(self, user_id: UUID, *, actor: Actor = OPERATOR, context: RequestContext = NO_REQUEST) -> None:
        """An admin (or an operator) turns a user's MFA off (a lost device); the user may enrol again."""
        async with self._db.begin() as conn:
            row = await store.lock_user(conn, user_id)
            if row is None:
                raise NotFound("user not found")
            await self._turn_off(conn, row, actor=actor, by="admin", context=context)
        self._outbox_written()

    async def _turn_off(
        self, conn: AsyncConnection, row: Row[Any], *, actor: Actor, by: str, context: RequestContext
    ) -> None:
        await store.update_user(
            conn, row.id, totp_sealed=None, totp_pending_sealed=None, mfa_enabled_at=None, totp_last_step=None
        )
        await store.replace_recovery_codes(conn, row.id, [])
        target = User.from_row(row)
        await record(conn, AuditAction.MFA_DISABLED, actor=actor, target=target, context=context, detail={"by": by})
        log.info("mfa.disabled", user_id=str(row.id), by=by)

    async def accept(self, conn: AsyncConnection, row: Row[Any], code: str, now: datetime) -> bool:
        """Whether `code` is a TOTP code of the user's not used before, or one of their unused recovery codes;
        either is used up. `row` is the user's, locked in `conn`'s transaction."""
        if row.totp_sealed is None:
            return False
        code = code.strip()
        seed = self._sealer.open(row.id, row.totp_sealed)
        step = mfa.matching_step(seed, code, row.totp_last_step, now.timestamp())
        if step is not None:
            await store.update_user(conn, row.id, totp_last_step=step)
            return True
        if len(code) > 64:
            return False
        return await store.use_recovery_code(conn, row.id, mfa.recovery_code_hash(code), now)
