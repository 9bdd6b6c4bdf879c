"""Access requests, grants and break-glass: time-boxed access to a client (docs/access.md). The rules; no transport.

- A person who is not a member of a client (not an admin, who sees every client: the policy refuses them) asks for
  access with a reason, an optional ticket reference and a number of minutes (1 .. CLIENTVAULT_GRANT_MAX_MINUTES);
  they hold at most one pending request per client. An admin other than the requester approves it (the request
  becomes a grant, its id the grant's id, valid for its minutes from the approval) or denies it; deciding a request
  that is no longer pending is a conflict. An admin ends a grant early (revoke).
- With client scoping on, an active grant gives what membership gives (services/clients/store.py `_membership`):
  it stops at `expires_at` by the SQL condition alone, nobody acting.
- Break-glass (CLIENTVAULT_BREAK_GLASS=on; off by default): an admin or manager takes access at once, for 60
  minutes, with a reason. Its `break_glass` event on `audit.clients.break_glass` is what integrations consume to
  alert the admins; its end (revoked or expired) is an `access_grant_ended` event that the vault turns into a
  rotation task per credential revealed under it (services/vault/rotation_work.py).
- Every step is an audit event of the clients service, written in the transaction of the change; its `detail`
  holds the keys shared with the reveal reasons: `reason`, `ticketRef`, `grantId`, plus `requestId`, `minutes`,
  `expiresAt`, `breakGlass`, `startedAt`, `ended`.
- A grant's start, revoke and recorded end put `access.<client>.<user>` on the revocation bucket, so the vault drops
  what it cached of that user's access. The end of an expired grant is recorded by `end_expired`, which every
  replica runs every CLIENTVAULT_GRANT_SWEEP_INTERVAL_S: each end is recorded once (store.end_expired_grants).
"""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NoReturn, get_args
from uuid import UUID

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault import fields, policy, retrying
from clientvault.context import NO_REQUEST, RequestContext
from clientvault.db import Database
from clientvault.errors import Conflict, Forbidden, Invalid, NotFound
from clientvault.events import AuditAction
from clientvault.ids import new_id
from clientvault.logging import get_logger
from clientvault.outbox import Actor
from clientvault.tokens import Caller
from services.clients import audit, rules, store
from services.clients.clients import ClientArchived
from services.clients.members import Changes

log = get_logger(__name__)

RequestStatus = Literal["pending", "approved", "denied"]
LISTED = (*get_args(RequestStatus), "active")  # what ListAccessRequests filters by; "active": grants in force now
SWEEP_BATCH = 200  # grant ends recorded per transaction


@dataclass(frozen=True, slots=True)
class AccessRequest:
    id: UUID
    client_id: UUID
    user_id: UUID
    status: RequestStatus
    reason: str
    ticket_ref: str | None
    minutes: int
    break_glass: bool
    created_at: datetime
    decided_at: datetime | None
    decided_by_user_id: UUID | None
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by_user_id: UUID | None
    ended_at: datetime | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> "AccessRequest":
        return cls(**row._mapping)

    def active(self, now: datetime) -> bool:
        """An approved grant in force at `now`."""
        return self.expires_at is not None and self.revoked_at is None and now < self.expires_at


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _detail(row: AccessRequest, **more: object) -> dict[str, object]:
    """What an event of this request or grant says about it (keys shared with the reveal reasons' events)."""
    granted = row.status == "approved"
    return {
        "requestId": str(row.id),
        "grantId": str(row.id) if granted else None,
        "reason": row.reason,
        "ticketRef": row.ticket_ref,
        "minutes": row.minutes,
        "breakGlass": row.break_glass or None,
        "startedAt": _when(row.decided_at) if granted else None,
        "expiresAt": _when(row.expires_at),
        **more,
    }


async def _record(
    conn: AsyncConnection,
    action: AuditAction,
    actor: Actor,
    context: RequestContext,
    request: AccessRequest,
    **more: object,
) -> None:
    """The event of a step of this request or grant: about its client and its requester (or holder)."""
    await audit.record(
        conn,
        action,
        actor,
        context,
        client_id=request.client_id,
        member_id=request.user_id,
        detail=_detail(request, **more),
    )


def _reason(value: str) -> str:
    checked = fields.said(value, "reason", fields.REASON_MAX)
    if checked is None:
        raise Invalid("reason must not be blank", "reason")
    return checked


def _minutes(minutes: int, max_minutes: int) -> int:
    if not 1 <= minutes <= max_minutes:
        raise Invalid(f"minutes must be between 1 and {max_minutes} (CLIENTVAULT_GRANT_MAX_MINUTES)", "minutes")
    return minutes


async def _live_client(conn: AsyncConnection, client_id: UUID) -> None:
    """The client exists (share-locked against archiving for the transaction) and is not archived. Asking for
    access confirms that a client id exists, which the caller had to be told anyway: ids are random."""
    client = await store.get_client(conn, client_id, share=True)
    if client is None:
        raise NotFound("client not found")
    if client.archived_at is not None:
        raise ClientArchived


async def request_access(
    db: Database,
    caller: Caller,
    context: RequestContext,
    client_id: UUID,
    *,
    reason: str,
    ticket_ref: str | None,
    minutes: int,
    max_minutes: int,
    changes: Changes,
) -> AccessRequest:
    """A pending request of the caller for the client, audited as `access_requested`."""
    checked_reason = _reason(reason)
    ticket = fields.said(ticket_ref, "ticketRef", fields.TICKET_REF_MAX)
    _minutes(minutes, max_minutes)
    async with db.begin() as conn:
        await _live_client(conn, client_id)
        if await store.is_member(conn, client_id, caller.user_id):
            raise Conflict("you are a member of this client: there is no access to request")
        if await store.active_grant(conn, client_id, caller.user_id) is not None:
            raise Conflict("you hold an active grant for this client already")
        row = await store.insert_access_request(
            conn,
            id=new_id(),
            client_id=client_id,
            user_id=caller.user_id,
            status="pending",
            reason=checked_reason,
            ticket_ref=ticket,
            minutes=minutes,
            created_at=datetime.now(UTC),
        )
        if row is None:
            raise Conflict("you have a pending access request for this client already")
        made = AccessRequest.from_row(row)
        await _record(conn, AuditAction.ACCESS_REQUESTED, caller, context, made)
    changes.outbox_written()
    log.info("access.requested", request_id=str(made.id), client_id=str(client_id))
    return made


async def list_access_requests(
    db: Database, caller: Caller, *, status: str | None, page: int, page_size: int
) -> rules.Page[AccessRequest]:
    """Newest first: every request for an admin, the caller's own for anyone else."""
    limit, offset = rules.page(page, page_size)
    if status is not None and status not in LISTED:
        raise Invalid(f"status must be one of {', '.join(LISTED)}", "status")
    whose = None if policy.sees_every_client(caller.role) else caller.user_id
    async with db.read() as conn:
        rows = await store.list_access_requests(conn, user_id=whose, status=status, limit=limit, offset=offset)
        total = await store.count_access_requests(conn, user_id=whose, status=status)
    return rules.Page([AccessRequest.from_row(row) for row in rows], total, page, page_size)


async def _pending(conn: AsyncConnection, caller: Caller, request_id: UUID) -> AccessRequest:
    row = await store.get_access_request(conn, request_id, lock=True)
    if row is None:
        raise NotFound("access request not found")
    request = AccessRequest.from_row(row)
    if request.user_id == caller.user_id:
        raise Forbidden("nobody approves or denies their own access request: another admin must")
    if request.status != "pending":
        raise Conflict(f"the access request is {request.status} already")
    return request


async def approve(
    db: Database,
    caller: Caller,
    context: RequestContext,
    request_id: UUID,
    *,
    max_minutes: int,
    changes: Changes,
) -> AccessRequest:
    """The request becomes a grant valid for its minutes from now, audited as `access_approved`."""
    async with db.begin() as conn:
        request = await _pending(conn, caller, request_id)
        _minutes(request.minutes, max_minutes)  # the maximum may have been lowered since it was asked
        await _live_client(conn, request.client_id)
        now = datetime.now(UTC)
        row = await store.update_access_request(
            conn,
            request_id,
            status="approved",
            decided_at=now,
            decided_by_user_id=caller.user_id,
            expires_at=now + timedelta(minutes=request.minutes),
        )
        granted = AccessRequest.from_row(row)
        await _record(conn, AuditAction.ACCESS_APPROVED, caller, context, granted)
    await _announce(changes, granted, "access.approved")
    return granted


async def deny(
    db: Database, caller: Caller, context: RequestContext, request_id: UUID, changes: Changes
) -> AccessRequest:
    """The request is denied (no grant), audited as `access_denied`."""
    async with db.begin() as conn:
        await _pending(conn, caller, request_id)
        row = await store.update_access_request(
            conn, request_id, status="denied", decided_at=datetime.now(UTC), decided_by_user_id=caller.user_id
        )
        denied = AccessRequest.from_row(row)
        await _record(conn, AuditAction.ACCESS_DENIED, caller, context, denied)
    changes.outbox_written()
    log.info("access.denied", request_id=str(request_id))
    return denied


async def revoke(db: Database, caller: Caller, context: RequestContext, grant_id: UUID, changes: Changes) -> None:
    """Ends a grant in force now, audited as `access_grant_ended` with `{"ended": "revoked"}`."""
    async with db.begin() as conn:
        row = await store.get_access_request(conn, grant_id, lock=True)
        if row is None or row.status != "approved":
            raise NotFound("grant not found")
        now = datetime.now(UTC)
        if not AccessRequest.from_row(row).active(now) or row.ended_at is not None:
            raise Conflict("the grant has ended already")
        row = await store.update_access_request(
            conn, grant_id, revoked_at=now, revoked_by_user_id=caller.user_id, ended_at=now
        )
        ended = AccessRequest.from_row(row)
        await _record(conn, AuditAction.ACCESS_GRANT_ENDED, caller, context, ended, ended="revoked", endedAt=_when(now))
    await _announce(changes, ended, "access.grant_revoked")


async def break_glass(
    db: Database,
    caller: Caller,
    context: RequestContext,
    client_id: UUID,
    *,
    reason: str,
    enabled: bool,
    changes: Changes,
) -> AccessRequest:
    """Access at once for 60 minutes (a grant the caller approves by breaking the glass), audited as
    `break_glass`; refused unless the installation enables it."""
    if not enabled:
        raise Forbidden("break-glass is off on this installation (CLIENTVAULT_BREAK_GLASS)")
    checked_reason = _reason(reason)
    async with db.begin() as conn:
        await _live_client(conn, client_id)
        now = datetime.now(UTC)
        row = await store.insert_access_request(
            conn,
            id=new_id(),
            client_id=client_id,
            user_id=caller.user_id,
            status="approved",
            reason=checked_reason,
            minutes=fields.BREAK_GLASS_MINUTES,
            break_glass=True,
            created_at=now,
            decided_at=now,
            decided_by_user_id=caller.user_id,
            expires_at=now + timedelta(minutes=fields.BREAK_GLASS_MINUTES),
        )
        if row is None:  # a new id conflicts with nothing, and a grant is never pending
            raise Conflict("the break-glass was not recorded: try again")
        granted = AccessRequest.from_row(row)
        await _record(conn, AuditAction.BREAK_GLASS, caller, context, granted)
    await _announce(changes, granted, "access.break_glass")
    return granted


async def end_expired(db: Database, changes: Changes) -> int:
    """Records the end of grants past their expiry (a batch): one `access_grant_ended` event each, with
    `{"ended": "expired"}` and no actor, in the transaction that marks them ended. How many it recorded."""
    async with db.begin() as conn:
        rows = [AccessRequest.from_row(row) for row in await store.end_expired_grants(conn, SWEEP_BATCH)]
        for ended in rows:
            expired = {"ended": "expired", "endedAt": _when(ended.expires_at)}
            await _record(conn, AuditAction.ACCESS_GRANT_ENDED, audit.GRANT_EXPIRY, NO_REQUEST, ended, **expired)
    for ended in rows:
        await _announce(changes, ended, "access.grant_expired")
    return len(rows)


async def end_expired_forever(db: Database, changes: Changes, every_s: float) -> NoReturn:
    """`end_expired` every `every_s` seconds (CLIENTVAULT_GRANT_SWEEP_INTERVAL_S), on every replica, until a batch
    is not full. Access itself needs no sweep: it stops at the expiry in every query."""

    async def sweep() -> None:
        await asyncio.sleep(every_s)
        while await end_expired(db, changes) == SWEEP_BATCH:
            pass

    await retrying.forever(sweep, outage="grants.sweep_paused", failure="grants.sweep_failed")


async def _announce(changes: Changes, grant: AccessRequest, event: str) -> None:
    """After the commit: wake the relay, say it in the log, and tell the verifiers (the vault's cache)."""
    changes.outbox_written()
    log.info(event, grant_id=str(grant.id), client_id=str(grant.client_id), user_id=str(grant.user_id))
    await changes.access_changed(grant.client_id, grant.user_id)
