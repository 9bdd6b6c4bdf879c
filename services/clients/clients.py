"""Client companies: the rules. No transport here; each function owns its transaction."""

import asyncio
import re
import unicodedata
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, get_args
from uuid import UUID

import email_validator
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Row

from clientvault import fields, idempotency, policy
from clientvault.context import RequestContext
from clientvault.db import Database
from clientvault.errors import Conflict, Forbidden, Invalid, NotFound
from clientvault.events import AuditAction
from clientvault.idempotency import Once, Replay
from clientvault.ids import new_id
from clientvault.logging import get_logger
from clientvault.tokens import Caller
from services.clients import audit, rules, store

log = get_logger(__name__)

ClientStatus = Literal["lead", "active", "inactive", "archived"]
SETTABLE_STATUSES = ("lead", "active", "inactive")  # "archived" only through archive_client
WRITABLE = ("name", "company", "email", "phone", "status", "notes")
# Changed by an update only, by an admin (policy.FIELD_POLICY): every reveal of the client must then name a reason.
REASON_REQUIRED = "reveal_reason_required"
# Tells every vault that what a client requires of every reveal changed (its cached answers are dropped at once).
ClientChanged = Callable[[UUID], Awaitable[None]]
PHONE = re.compile(fields.PHONE)


@dataclass(frozen=True, slots=True)
class Client:
    id: UUID
    name: str
    company: str | None
    email: str | None
    phone: str | None
    status: ClientStatus
    notes: str | None
    owner_user_id: UUID
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None
    revision: int  # the ETag; +1 on every change
    reveal_reason_required: bool  # every reveal of its credentials must name a reason (0007)
    # The caller's grant when a grant is their only access to it (GetClient for a scoped caller; else None).
    access_grant_id: UUID | None = None
    access_expires_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> "Client":
        """From a row of `clients.clients` (SQLAlchemy's, or psycopg's named tuple from a hot read)."""
        return cls(**row._asdict())


class ClientArchived(Conflict):
    def __init__(self) -> None:
        super().__init__("client is archived")


Scope = UUID | None  # the user whose memberships bound what a caller sees, or None: every client


def scope_of(caller: Caller, scoping: bool) -> Scope:
    """With client scoping on, a caller who does not see every client (policy.SEES_EVERY_CLIENT) sees only the
    clients they are a member of or hold an active grant for (services/clients/grants.py); anything else is answered
    as if it did not exist."""
    return caller.user_id if scoping and not policy.sees_every_client(caller.role) else None


def validate(values: dict[str, Any], writable: Collection[str] = WRITABLE) -> dict[str, Any]:
    """The writable fields given (all on create, the patched ones on update), checked and normalised."""
    rules.writable_only(values, writable)
    checked: dict[str, Any] = {}
    if REASON_REQUIRED in values:
        if not isinstance(values[REASON_REQUIRED], bool):
            raise Invalid(f"{REASON_REQUIRED} must be true or false", REASON_REQUIRED)
        checked[REASON_REQUIRED] = values[REASON_REQUIRED]
    if "name" in values:
        checked["name"] = rules.text(values["name"], "name", max_length=fields.NAME_MAX, required=True)
    if "company" in values:
        checked["company"] = rules.text(values["company"], "company", max_length=fields.COMPANY_MAX)
    if "notes" in values:
        checked["notes"] = rules.text(values["notes"], "notes", max_length=fields.NOTES_MAX)
    if "phone" in values:
        phone = rules.text(values["phone"], "phone", max_length=fields.PHONE_MAX)
        if phone is not None and not PHONE.fullmatch(phone):
            raise Invalid("phone may hold digits, spaces, + ( ) . - and an extension", "phone")
        checked["phone"] = phone
    if "email" in values:
        checked["email"] = _email(values["email"])
    if "status" in values:
        status = values["status"]
        if status not in SETTABLE_STATUSES:
            hint = "; archive a client with its archive route" if status == "archived" else ""
            raise Invalid(f"status must be one of {', '.join(SETTABLE_STATUSES)}{hint}", "status")
        checked["status"] = status
    return checked


@contextmanager
def _special_use_domains_allowed() -> Iterator[None]:
    """email-validator refuses special-use and reserved domains (.local, .test, .internal, .arpa ...): agencies
    serve clients whose domains are on-premises, so a contact's address may be on one. The library's documented
    switch is its module list `SPECIAL_USE_DOMAIN_NAMES` (its README, "Testing"); it is emptied only for the
    synchronous call inside this block (no await, so no other coroutine sees it), leaving auth's check of staff
    emails, in the same process in the service tests, as the library ships it."""
    names = list(email_validator.SPECIAL_USE_DOMAIN_NAMES)
    email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()
    try:
        yield
    finally:
        email_validator.SPECIAL_USE_DOMAIN_NAMES.extend(names)


def _email(value: str | None) -> str | None:
    """Any syntactically valid address: reserved and internal domains included, a dotless host too
    (`it@fileserver`); deliverability is not checked (no DNS)."""
    email = rules.text(value, "email", max_length=fields.EMAIL_MAX)
    if email is None:
        return None
    try:
        with _special_use_domains_allowed():
            return validate_email(email, check_deliverability=False, globally_deliverable=False).normalized
    except EmailNotValidError as error:
        raise Invalid(f"email is not valid: {error}", "email") from None


async def create_client(
    db: Database, caller: Caller, values: dict[str, Any], once: Once | None = None
) -> Client | Replay:
    """The new client; with `once` (an idempotency key), the first reply again when the key was used already."""
    checked = validate({"status": "active", **values})
    if "name" not in checked:
        raise Invalid("name is required", "name")
    now = datetime.now(UTC)
    async with db.begin() as conn:
        if once is not None and (replay := await idempotency.claim(conn, store.idempotency_keys, once, now)):
            return replay
        row = await store.insert_client(
            conn, id=new_id(), owner_user_id=caller.user_id, created_at=now, updated_at=now, **checked
        )
        # Its creator is its first member (with scoping off too, so turning it on keeps their clients theirs).
        await store.add_member(
            conn, client_id=row.id, user_id=caller.user_id, added_at=now, added_by_user_id=caller.user_id
        )
        client = Client.from_row(row)
        if once is not None:
            await idempotency.remember(conn, store.idempotency_keys, once, client)
    log.info("client.created", client_id=str(row.id))
    return client


async def get_client(db: Database, client_id: UUID, scope: Scope = None) -> Client:
    """The client; for a scoped caller whose only access is a grant, with that grant's id and end (the vault keeps
    its answer no longer than that)."""
    async with db.read() as conn:
        row = await store.get_client(conn, client_id, member=scope)
        if row is None:
            raise NotFound("client not found")
        client = Client.from_row(row)
        if scope is None or await store.is_member(conn, client_id, scope):
            return client
        grant = await store.active_grant(conn, client_id, scope)
    if grant is None:  # it ended between the two statements: the next call answers 404
        return client
    return replace(client, access_grant_id=grant.id, access_expires_at=grant.expires_at)


async def get_clients(db: Database, client_ids: list[UUID], scope: Scope = None) -> list[Client]:
    """The clients of these ids that exist (archived ones too) and that the scope sees."""
    if len(client_ids) > fields.PAGE_SIZE_MAX:
        raise Invalid(f"ask for at most {fields.PAGE_SIZE_MAX} clients at once", "ids")
    async with db.read() as conn:
        return [Client.from_row(row) for row in await store.get_clients(conn, client_ids, member=scope)]


async def update_client(
    db: Database,
    caller: Caller,
    client_id: UUID,
    changes: dict[str, Any],
    client_changed: ClientChanged,
    context: RequestContext,
    outbox_written: Callable[[], None],
    if_revision: Collection[int] = (),
    scope: Scope = None,
) -> Client:
    """Changes the client; with `if_revision` (If-Match) only while it is at one of those revisions, else
    PreconditionFailed. Only an admin changes `reveal_reason_required` (Forbidden otherwise, before anything is
    read); a change of it is audited (`client_policy_changed`, in the same transaction) and announced
    (`client_changed`) once committed."""
    if refused := policy.field_refusal("Clients/UpdateClient", changes, caller.role):
        raise Forbidden(refused)
    checked = validate(changes, (*WRITABLE, REASON_REQUIRED))
    async with db.begin() as conn:
        row = await store.get_client(conn, client_id, lock=True, member=scope)
        if row is None:
            raise NotFound("client not found")
        if row.archived_at is not None:
            raise ClientArchived
        rules.unchanged(row, if_revision, "client")
        before = row.reveal_reason_required
        if checked:
            row = await store.update_client(
                conn, client_id, if_revision=if_revision, updated_at=datetime.now(UTC), **checked
            )
            if row is None:
                raise rules.changed("client")
        policy_changed = REASON_REQUIRED in checked and checked[REASON_REQUIRED] != before
        if policy_changed:
            change = {"revealReasonRequired": {"from": before, "to": row.reveal_reason_required}}
            await audit.record(
                conn, AuditAction.CLIENT_POLICY_CHANGED, caller, context, client_id=client_id, detail=change
            )
    client = Client.from_row(row)
    if policy_changed:
        outbox_written()
        log.info("client.reveal_reason_required", client_id=str(client_id), required=client.reveal_reason_required)
        await client_changed(client_id)
    return client


async def archive_client(
    db: Database, caller: Caller, context: RequestContext, client_id: UUID, outbox_written: Callable[[], None]
) -> None:
    """Archives once, audited as `client_archived`; archiving again changes nothing (no event) and keeps the first
    `archived_at`."""
    async with db.begin() as conn:
        row = await store.get_client(conn, client_id, lock=True)
        if row is None:
            raise NotFound("client not found")
        if row.archived_at is not None:
            return
        now = datetime.now(UTC)
        await store.update_client(conn, client_id, status="archived", archived_at=now, updated_at=now)
        await audit.record(conn, AuditAction.CLIENT_ARCHIVED, caller, context, client_id=client_id)
    outbox_written()
    log.info("client.archived", client_id=str(client_id))


async def unarchive_client(
    db: Database, caller: Caller, context: RequestContext, client_id: UUID, outbox_written: Callable[[], None]
) -> Client:
    """Makes an archived client live again, with the status "active", audited as `client_unarchived`; a live client
    is answered as it is (no event)."""
    async with db.begin() as conn:
        row = await store.get_client(conn, client_id, lock=True)
        if row is None:
            raise NotFound("client not found")
        if row.archived_at is None:
            return Client.from_row(row)
        row = await store.update_client(
            conn, client_id, status="active", archived_at=None, updated_at=datetime.now(UTC)
        )
        if row is None:  # the row is locked above: it cannot have gone
            raise NotFound("client not found")
        await audit.record(conn, AuditAction.CLIENT_UNARCHIVED, caller, context, client_id=client_id)
    outbox_written()
    log.info("client.unarchived", client_id=str(client_id))
    return Client.from_row(row)


async def list_clients(
    db: Database,
    *,
    term: str,
    status: str | None,
    page: int,
    page_size: int,
    archived: bool = False,
    scope: Scope = None,
) -> rules.Page[Client]:
    """Live clients (or, `archived`, the archived ones), newest first, that the scope sees."""
    limit, offset = rules.page(page, page_size)
    term = rules.text(term, "q", max_length=fields.SEARCH_MAX) or ""
    if any(unicodedata.category(char) == "Cc" for char in term):
        raise Invalid("q must not contain control characters", "q")
    if status is not None and status not in get_args(ClientStatus):
        raise Invalid("unknown status", "status")

    def own_total(found: list[Any]) -> int | None:
        """A short page is its own total (None: count them)."""
        return offset + len(found) if len(found) < limit and (found or offset == 0) else None

    if not term and not archived and scope is None:
        # The web frontend's first page on every visit: off the engine, on a hot connection, the total from the live
        # counts (a few rows).
        async with db.hot() as hot:
            found = await store.read_live_clients(hot, status=status, limit=limit, offset=offset)
            total = own_total(found)
            if total is None:
                total = await store.read_live_count(hot, status=status)
        return rules.Page([Client.from_row(row) for row in found], total, page, page_size)

    async def rows() -> list[Row[Any]]:
        async with db.read() as conn:
            return await store.list_clients(
                conn, term=term, status=status, limit=limit, offset=offset, archived=archived, member=scope
            )

    async def count() -> int:
        async with db.read() as conn:
            return await store.count_clients(conn, term=term, status=status, archived=archived, member=scope)

    if term:  # a search counts its matches: page and count run side by side, on two connections
        found, total = await asyncio.gather(rows(), count())
    else:  # a member's or the archived clients, counted for real unless the page is short
        found = await rows()
        total = own_total(found)
        if total is None:
            total = await count()
    return rules.Page([Client.from_row(row) for row in found], total, page, page_size)
