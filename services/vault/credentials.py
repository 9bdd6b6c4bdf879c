"""Credentials: the rules. Every write and every reveal commits its audit event in the same transaction.

A reveal is one statement (store.REVEAL): the stamp, the audit event and the read commit together or not at
all, and the secret is decrypted only from what that statement answered, so nothing is revealed unless its
event is durable. A reveal refused by the limits writes a `reveal_throttled` event in that same statement; one
refused by policy (the caller's role) a `reveal_denied` event (`record_denied`, called by the gRPC edge), and so does
one refused because the caller may not see the client (per-client access, services/vault/access.py). A reveal of a
client that requires a reason, without one, is refused before anything is counted or written (docs/access.md). The
outbox relay (clientvault/outbox.py) publishes the events afterwards.
"""

import asyncio
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, cast
from uuid import UUID

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault import fields, idempotency, metrics, outbox, tracing
from clientvault.context import Caller, RequestContext
from clientvault.db import Database
from clientvault.errors import (
    Conflict,
    Gone,
    Invalid,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Unavailable,
)
from clientvault.events import AuditAction, detail_text
from clientvault.idempotency import Once, Replay
from clientvault.ids import new_id
from clientvault.logging import get_logger
from services.vault import exporting, importing, store, totp
from services.vault.access import Access, RequireAccess, everyone
from services.vault.crypto import DataKeys, Undecryptable, open_sealed, seal
from services.vault.keys import Wrapped, zero
from services.vault.limits import RevealLimiter

log = get_logger(__name__)

# The actor of the events the vault writes on its own (the trash's purge): no user acted, so no user id and no
# email (NULL and empty in the event, as auth's "operator (clientvault command)"); the name says who did it.
PURGER_FULL_NAME = "vault (trash purge)"
PURGE_BATCH = 500

MAX_LABEL = 200
MAX_SECRET = 10_000
MAX_USERNAME = 500
MAX_URL = 2048
NEW_REVISION = 1  # a new credential's revision (the column's default); every change adds one
CHANGED = "the credential was changed since it was read (If-Match): read it again and retry"
MAX_NOTES = 10_000
MAX_EXPORT_BYTES = 15 * 1024 * 1024  # an export travels as one gRPC message (clientvault/rpc.py: 16 MiB)
FIELDS = frozenset({"label", "username", "url", "secret", "totp_secret", "notes"})
# The fields sealed apart from the secret (store.credential_fields), by their name there.
SEALED_FIELDS = {"totp_secret": "totp", "notes": "notes"}


class ClientState(Enum):
    ACTIVE = "active"
    ARCHIVED = "archived"
    UNKNOWN = "unknown"


ClientLookup = Callable[[UUID], Awaitable[ClientState]]
NEEDS_REASON = "this client requires a reason for every reveal: give one (reason)"
NOT_A_MEMBER = "not a member of the client (or no such client)"  # a scoped reveal's refusal, in its reveal_denied event


# The client's state and name, from the clients service (the vault owns neither).
ClientDescription = Callable[[UUID], Awaitable[tuple[ClientState, str]]]
SHREDDED = "the client was shredded: its credentials are gone for good"


class ClientArchived(Conflict): ...


class NotArchived(Conflict): ...


class WrongName(Conflict): ...


@dataclass(frozen=True, slots=True)
class Credential:
    id: UUID
    client_id: UUID
    label: str
    username: str | None
    url: str | None
    created_at: datetime
    updated_at: datetime
    last_accessed_at: datetime | None
    secret_changed_at: datetime
    deleted_at: datetime | None  # in the trash since
    revision: int  # the ETag; +1 on every change (a reveal leaves it)
    has_totp: bool = False  # a TOTP seed is sealed with it

    @classmethod
    def from_row(cls, row: Row[Any]) -> "Credential":
        return cls(**row._mapping)


@dataclass(frozen=True, slots=True)
class Revealed:
    id: UUID
    label: str
    username: str | None
    url: str | None
    secret: str = field(repr=False)
    notes: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a secret is revealed and the ticket it is for, as the caller gave them (checked by `reason_of`)."""

    reason: str | None = None
    ticket_ref: str | None = None


NO_REASON = Reason()


def reason_of(reason: str, ticket_ref: str) -> Reason:
    return Reason(
        fields.said(reason, "reason", fields.REASON_MAX), fields.said(ticket_ref, "ticket_ref", fields.TICKET_REF_MAX)
    )


def _reason_given(access: Access, why: Reason) -> None:
    """A client that requires a reason refuses a reveal (or a TOTP code) without one."""
    if access.reveal_reason_required and why.reason is None:
        raise PreconditionRequired(NEEDS_REASON)


def _reveal_detail(version: int | None, why: Reason, access: Access) -> str:
    """A reveal's event detail: the version revealed, the reason, ticket and grant, each only when there is one
    (a plain reveal's detail stays empty, and its event is encoded as it always was)."""
    return detail_text(
        {"version": version, "reason": why.reason, "ticketRef": why.ticket_ref, "grantId": access.grant_id}
    )


@dataclass(frozen=True, slots=True)
class Version:
    """An old secret of a credential (never the secret itself): its number, when it became the current secret
    and who set it."""

    version: int
    created_at: datetime
    created_by_user_id: UUID

    @classmethod
    def from_row(cls, row: Row[Any]) -> "Version":
        return cls(**row._mapping)


@dataclass(frozen=True, slots=True)
class Shredded:
    """What a crypto-shred destroyed."""

    shredded_at: datetime
    credentials: int
    versions: int
    data_keys: int

    def detail(self, generations: list[int]) -> str:
        """The erasure event's detail: {"credentials":3,"data_keys":2,"generations":[1,2],"versions":5}."""
        return detail_text(
            {
                "credentials": self.credentials,
                "versions": self.versions,
                "data_keys": self.data_keys,
                "generations": generations,
            }
        )


@dataclass(frozen=True, slots=True)
class CredentialDraft:
    label: str
    username: str | None
    url: str | None
    secret: str = field(repr=False)
    totp_secret: str | None = field(default=None, repr=False)  # base32 or otpauth://totp/ (totp.py)
    notes: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ImportProblem:
    row: int
    message: str


@dataclass(frozen=True, slots=True)
class Imported:
    """What an import did (or, dry, would do)."""

    imported: int  # written, or with dry_run would be
    ids: list[UUID]  # the new credentials' (none on a dry run)
    problems: list[ImportProblem]
    dry_run: bool


def _text(name: str, value: str, low: int, high: int) -> str:
    if not low <= len(value) <= high:
        raise Invalid(f"{name} must be {low} to {high} characters")
    if "\x00" in value:
        raise Invalid(f"{name} must not contain NUL characters")
    return value


def _optional(name: str, value: str | None, high: int) -> str | None:
    return None if value is None or value == "" else _text(name, value, 1, high)


def _secret(value: str) -> str:
    if not 1 <= len(value) <= MAX_SECRET:
        raise Invalid(f"secret must be 1 to {MAX_SECRET} characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise Invalid("secret must be valid Unicode text (no lone surrogates)") from None
    return value


def _valid(changes: dict[str, str | None]) -> dict[str, str | None]:
    valid: dict[str, str | None] = {}
    for name, value in changes.items():
        if name == "label":
            valid[name] = _text("label", (value or "").strip(), 1, MAX_LABEL)
        elif name == "username":
            valid[name] = _optional("username", value, MAX_USERNAME)
        elif name == "url":
            valid[name] = _optional("url", value, MAX_URL)
        elif name == "secret":
            valid[name] = _secret(value or "")
        elif name == "totp_secret":
            valid[name] = None if value is None or value == "" else totp.normalized(value)
        elif name == "notes":
            valid[name] = _optional("notes", value, MAX_NOTES)
        else:
            raise Invalid(f"{name} cannot be changed")
    return valid


class Credentials:
    def __init__(
        self,
        db: Database,
        keys: DataKeys,
        outbox_written: Callable[[], None],
        limiter: RevealLimiter,
        *,
        versions_kept: int = 10,
        require_access: RequireAccess = everyone,
    ) -> None:
        self._db = db
        self._require_access = require_access
        self._keys = keys
        self._outbox_written = outbox_written
        self._limiter = limiter
        self._versions_kept = versions_kept

    def _event(
        self, action: AuditAction, caller: Caller, meta: RequestContext, now: datetime, **about: object
    ) -> dict[str, Any]:
        return {
            "event_id": new_id(),
            "action": action,
            "occurred_at": now,
            "user_id": caller.user_id,
            "user_email": caller.email,
            "user_full_name": caller.full_name,
            "ip": meta.client_ip,
            "user_agent": meta.user_agent,
            "request_id": meta.request_id,
            "traceparent": tracing.traceparent(),  # the audit append continues this request's trace
            **about,
        }

    async def _record(
        self,
        conn: AsyncConnection,
        action: AuditAction,
        caller: Caller,
        meta: RequestContext,
        now: datetime,
        *,
        client_id: UUID,
        credential: Row[Any] | None,
        detail: str = "",
    ) -> None:
        """Writes one audit event to the vault's outbox in `conn`'s transaction (the kit's outbox,
        clientvault/outbox.py): about `credential` (its id and label as they are now) or, None, the client alone."""
        await outbox.insert_event(
            conn,
            store.outbox,
            **self._event(
                action,
                caller,
                meta,
                now,
                credential_id=None if credential is None else credential.id,
                credential_label="" if credential is None else credential.label,
                client_id=client_id,
                detail=detail,
            ),
        )

    async def _writable(self, lookup: ClientLookup, client_id: UUID, missing: str) -> None:
        """A client's credentials change only while the client exists and is not archived (the contract: writes on
        an archived client are 409; on a shredded one, which is archived, 410). `missing` is the NotFound
        message when the client does not exist."""
        state = await lookup(client_id)
        if state is ClientState.UNKNOWN:
            raise NotFound(missing)
        if state is ClientState.ARCHIVED:
            raise await self._missing(client_id, ClientArchived("client is archived"))

    async def _shredded(self, client_id: UUID) -> bool:
        async with self._db.read() as conn:
            return await store.is_shredded(conn, client_id)

    async def _missing(self, client_id: UUID, otherwise: Exception) -> Exception:
        """What to answer when a client's credential is not there: Gone if the client was shredded, else
        `otherwise`. Asked only on that path, so a reveal that finds its credential costs no extra query."""
        return Gone(SHREDDED) if await self._shredded(client_id) else otherwise

    async def list_credentials(
        self, caller: Caller, client_id: UUID, lookup: ClientLookup, *, trashed: bool = False
    ) -> list[Credential]:
        """The client's credentials, or with `trashed` those in its trash (with `deleted_at`)."""
        await self._require_access(caller, client_id)
        async with self._db.read() as conn:
            rows = await store.list_credentials(conn, client_id, trashed=trashed)
        if not rows:
            if await self._shredded(client_id):
                raise Gone(SHREDDED)
            if await lookup(client_id) is ClientState.UNKNOWN:
                raise NotFound("client not found")
        return [Credential.from_row(row) for row in rows]

    async def _newest_key(self, conn: AsyncConnection, client_id: UUID, now: datetime) -> tuple[int, bytearray]:
        """The client's newest data key (made on the client's first credential), unwrapped, and held until the
        transaction ends. The key returned is always the stored one: when several requests make a client's
        first key at once, one insert wins and the others use the winner's key, never their own."""
        row = await store.newest_key(conn, client_id, lock=True)
        if row is None:
            dek, wrapped = await self._keys.wrap_new(client_id, 1)
            won = await store.insert_key(
                conn,
                client_id=client_id,
                generation=1,
                wrapped_key=wrapped.wrapped_key,
                kek_version=wrapped.kek_version,
                created_at=now,
            )
            if won:
                return 1, dek
            zero(dek)
            row = await store.newest_key(conn, client_id, lock=True)  # the winner's, committed by now
            if row is None:
                raise Unavailable("the client's data key is being created; try again")
        dek = await self._keys.unwrap(client_id, row.generation, Wrapped(row.wrapped_key, row.kek_version))
        return row.generation, dek

    def _sealed_fields(
        self, dek: bytearray, generation: int, client_id: UUID, credential_id: UUID, fields: dict[str, str]
    ) -> list[dict[str, Any]]:
        """credential_fields rows of `fields` (by their stored names, "totp", "notes"), each sealed under its name."""
        rows = []
        for name, value in fields.items():
            ciphertext, nonce = seal(dek, client_id, credential_id, value, field=name)
            rows.append(
                {
                    "credential_id": credential_id,
                    "field": name,
                    "client_id": client_id,
                    "ciphertext": ciphertext,
                    "nonce": nonce,
                    "key_generation": generation,
                }
            )
        return rows

    def _new_credential(
        self,
        dek: bytearray,
        generation: int,
        caller: Caller,
        client_id: UUID,
        values: dict[str, str | None],
        now: datetime,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A new credential's row (its secret sealed) and its sealed fields' rows, from validated `values`."""
        credential_id = new_id()
        sealed = {stored: values[name] for name, stored in SEALED_FIELDS.items() if values.get(name) is not None}
        ciphertext, nonce = seal(dek, client_id, credential_id, str(values["secret"]))
        row = {
            "id": credential_id,
            "client_id": client_id,
            "label": values["label"],
            "username": values.get("username"),
            "url": values.get("url"),
            "ciphertext": ciphertext,
            "nonce": nonce,
            "key_generation": generation,
            "created_by_user_id": caller.user_id,
            "updated_by_user_id": caller.user_id,
            "created_at": now,
            "updated_at": now,
            "secret_changed_at": now,
            "secret_version": 1,
            "secret_changed_by_user_id": caller.user_id,
            "has_totp": "totp" in sealed,
        }
        return row, self._sealed_fields(dek, generation, client_id, credential_id, cast(dict[str, str], sealed))

    async def create_credential(
        self,
        caller: Caller,
        meta: RequestContext,
        client_id: UUID,
        draft: CredentialDraft,
        lookup: ClientLookup,
        once: Once | None = None,
    ) -> UUID | Replay:
        """The new credential's id (its revision is NEW_REVISION); with `once` (an idempotency key), the first
        reply again when the key was used already, with nothing created and no audit event."""
        values = _valid(
            {
                "label": draft.label,
                "username": draft.username,
                "url": draft.url,
                "secret": draft.secret,
                "totp_secret": draft.totp_secret,
                "notes": draft.notes,
            }
        )
        now = datetime.now(UTC)
        if once is not None:
            async with self._db.read() as conn:
                if replay := await idempotency.stored(conn, store.idempotency_keys, once, now):
                    return replay
        await self._writable(lookup, client_id, "client not found")
        async with self._db.begin() as conn:
            if once is not None and (replay := await idempotency.claim(conn, store.idempotency_keys, once, now)):
                return replay
            generation, dek = await self._newest_key(conn, client_id, now)
            try:
                new, fields = self._new_credential(dek, generation, caller, client_id, values, now)
            finally:
                self._keys.release(dek)
            row = await store.insert_credential(conn, **new)
            await store.put_fields(conn, fields)
            await self._record(
                conn, AuditAction.CREDENTIAL_CREATE, caller, meta, now, client_id=client_id, credential=row
            )
            if once is not None:
                await idempotency.remember(conn, store.idempotency_keys, once, row.id)
        self._outbox_written()
        log.info("credential.created", credential_id=str(row.id), client_id=str(client_id))
        return cast(UUID, row.id)

    async def import_credentials(
        self,
        caller: Caller,
        meta: RequestContext,
        client_id: UUID,
        format_: str,
        content: bytes,
        lookup: ClientLookup,
        *,
        dry_run: bool = False,
    ) -> Imported:
        """Imports another tool's export file (importing.py). Every row is read and checked first; then the good
        ones are written in one transaction, each with its `credential_create` event (detail: the source format and
        the row), or none is. Bad rows are reported by number, never with their values. `dry_run` writes nothing."""
        entries = importing.parse(format_, content)
        good: list[tuple[int, dict[str, str | None]]] = []
        problems: list[ImportProblem] = []
        for entry in entries:
            if entry.problem is not None:
                problems.append(ImportProblem(entry.row, entry.problem))
                continue
            if entry.label is None or not entry.label.strip():
                problems.append(ImportProblem(entry.row, "the row has no name/title for the label"))
                continue
            if entry.secret is None:
                problems.append(ImportProblem(entry.row, "the row has no password"))
                continue
            try:
                values = _valid(
                    {
                        "label": entry.label,
                        "username": entry.username,
                        "url": entry.url,
                        "secret": entry.secret,
                        "totp_secret": entry.totp,
                        "notes": entry.notes,
                    }
                )
            except Invalid as error:
                problems.append(ImportProblem(entry.row, str(error)))
                continue
            good.append((entry.row, values))
        await self._writable(lookup, client_id, "client not found")
        if dry_run or not good:
            return Imported(len(good), [], problems, dry_run)
        now = datetime.now(UTC)
        async with self._db.begin() as conn:
            generation, dek = await self._newest_key(conn, client_id, now)
            new_rows, field_rows, events = [], [], []
            try:
                for number, values in good:
                    new, fields = self._new_credential(dek, generation, caller, client_id, values, now)
                    new_rows.append(new)
                    field_rows.extend(fields)
                    events.append(
                        self._event(
                            AuditAction.CREDENTIAL_CREATE,
                            caller,
                            meta,
                            now,
                            credential_id=new["id"],
                            credential_label=new["label"],
                            client_id=client_id,
                            detail=detail_text({"source": format_, "row": number}),
                        )
                    )
            finally:
                self._keys.release(dek)
            await store.insert_credentials(conn, new_rows)
            await store.put_fields(conn, field_rows)
            await outbox.insert_events(conn, store.outbox, events)
        self._outbox_written()
        log.info(
            "credentials.imported",
            client_id=str(client_id),
            source=format_,
            imported=len(new_rows),
            skipped=len(problems),
        )
        return Imported(len(new_rows), [row["id"] for row in new_rows], problems, False)

    async def export_credentials(
        self, caller: Caller, meta: RequestContext, client_id: UUID, recipient: str, lookup: ClientLookup
    ) -> tuple[bytes, int]:
        """Every live credential of the client (an archived one's too), decrypted into Bitwarden's JSON export shape
        and age-encrypted to `recipient` (exporting.py): (the file, how many). One `credential_export` event per
        credential commits, in the transaction that reads them, before anything is decrypted."""
        to = exporting.recipient(recipient)
        if await lookup(client_id) is ClientState.UNKNOWN:
            raise await self._missing(client_id, NotFound("client not found"))
        now = datetime.now(UTC)
        async with self._db.begin() as conn:
            rows, field_rows = await store.sealed_of_client(conn, client_id)
            generations = {row.key_generation for row in rows} | {row.key_generation for row in field_rows}
            wrapped = {g: await store.get_key(conn, client_id, g) for g in generations}
            await outbox.insert_events(
                conn,
                store.outbox,
                [
                    self._event(
                        AuditAction.CREDENTIAL_EXPORT,
                        caller,
                        meta,
                        now,
                        credential_id=row.id,
                        credential_label=row.label,
                        client_id=client_id,
                        detail=detail_text({"recipient": str(to)}),
                    )
                    for row in rows
                ],
            )
        if not rows and await self._shredded(client_id):
            raise Gone(SHREDDED)
        self._outbox_written()
        deks: dict[int, bytearray] = {}
        try:
            for generation, key in wrapped.items():
                assert key is not None  # a foreign key holds every sealed row to its data key
                deks[generation] = await self._keys.unwrap(
                    client_id, generation, Wrapped(key.wrapped_key, key.kek_version)
                )
            fields: dict[tuple[UUID, str], str] = {
                (f.credential_id, f.field): open_sealed(
                    deks[f.key_generation], client_id, f.credential_id, f.ciphertext, f.nonce, field=f.field
                )
                for f in field_rows
            }
            items = [
                exporting.Item(
                    row.id,
                    row.label,
                    row.username,
                    row.url,
                    row.created_at,
                    row.updated_at,
                    open_sealed(deks[row.key_generation], client_id, row.id, row.ciphertext, row.nonce),
                    fields.get((row.id, "notes")),
                    fields.get((row.id, "totp")),
                )
                for row in rows
            ]
        finally:
            for dek in deks.values():
                self._keys.release(dek)
        content = exporting.encrypt(exporting.bitwarden_json(items), to)
        if len(content) > MAX_EXPORT_BYTES:
            raise Invalid(
                "the export is over 15 MiB, more than one answer carries: ask an operator (docs/credential-tools.md)"
            )
        log.info("credentials.exported", client_id=str(client_id), credentials=len(items))
        return content, len(items)

    async def totp_code(
        self, caller: Caller, meta: RequestContext, client_id: UUID, credential_id: UUID, why: Reason = NO_REASON
    ) -> totp.Code:
        """The current code of the credential's sealed TOTP seed; its `credential_totp` event commits first (with
        the reason, ticket and grant in its detail, as a reveal's). A code gives what a reveal gives: a client that
        requires a reason refuses one without it (PreconditionRequired), before anything is written."""
        access = await self._may_disclose(caller, meta, client_id, credential_id, why)
        now = datetime.now(UTC)
        async with self._db.begin() as conn:
            row = await store.get_field(conn, client_id, credential_id, "totp")
            if row is not None:
                await self._record(
                    conn,
                    AuditAction.CREDENTIAL_TOTP,
                    caller,
                    meta,
                    now,
                    client_id=client_id,
                    credential=row,
                    detail=_reveal_detail(None, why, access),
                )
        if row is None:
            raise await self._missing(client_id, NotFound("credential not found, or it has no TOTP seed"))
        self._outbox_written()
        dek = await self._keys.unwrap(client_id, row.key_generation, Wrapped(row.wrapped_key, row.kek_version))
        try:
            seed = open_sealed(dek, client_id, row.id, row.ciphertext, row.nonce, field="totp")
        finally:
            self._keys.release(dek)
        return totp.code_now(seed)

    async def reveal_credential(
        self,
        caller: Caller,
        meta: RequestContext,
        client_id: UUID,
        credential_id: UUID,
        version: int | None = None,
        why: Reason = NO_REASON,
    ) -> Revealed:
        """The current secret, or with `version` that old version of it (audited as `credential_version_reveal`,
        the version named in the event's detail: {"version":3}). Both count against the reveal limits. The reason,
        ticket and grant (`why`, and the access it came through) go into the event's detail too.

        A client the caller may not see (per-client access) is not found, before anything is counted: its refusal
        is recorded (`reveal_denied`, as a role's is). A client that requires a reason refuses a reveal without one
        (PreconditionRequired), before anything is counted or written: nothing was attempted yet, the caller is
        asked to say why and retry (docs/access.md)."""
        access = await self._may_disclose(caller, meta, client_id, credential_id, why)
        now = datetime.now(UTC)
        counting = self._limiter.counting(caller.user_id, meta.client_ip, now)
        action = AuditAction.CREDENTIAL_REVEAL if version is None else AuditAction.CREDENTIAL_VERSION_REVEAL
        event = self._event(action, caller, meta, now)
        async with self._db.hot() as conn:  # one statement in autocommit: its own transaction, one round trip
            row = await store.reveal(
                conn,
                credential_id=credential_id,
                client_id=client_id,
                event_id=event.pop("event_id"),
                now=event.pop("occurred_at"),
                limit_keys=counting.keys,
                limit_maxes=counting.maxes,
                window_start=counting.window_start,
                version=version,
                detail=_reveal_detail(version, why, access),
                throttled_action=AuditAction.REVEAL_THROTTLED,
                **event,
            )
        if row.over:
            metrics.REVEALS_BY_OUTCOME["throttled"].inc()
            self._outbox_written()
            raise self._limiter.refused(caller.user_id, counting)
        if row.id is None:
            metrics.REVEALS_BY_OUTCOME["not_found"].inc()
            raise await self._missing(
                client_id, NotFound("credential not found" if version is None else "credential or version not found")
            )
        self._outbox_written()
        metrics.REVEALS_BY_OUTCOME["revealed"].inc()
        dek = await self._keys.unwrap(client_id, row.key_generation, Wrapped(row.wrapped_key, row.kek_version))
        try:
            secret = open_sealed(dek, client_id, row.id, row.ciphertext, row.nonce)
            notes = None if row.notes_ciphertext is None else await self._open_notes(client_id, row)
        except Undecryptable:
            # Loud and once per attempt, with what an operator needs to find the row and its key; the caller
            # gets a DataLoss answer (500 naming the credential), not a retryable error.
            log.error(
                "credential.undecryptable",
                credential_id=str(row.id),
                client_id=str(client_id),
                key_generation=row.key_generation,
                kek_version=row.kek_version,
            )
            raise
        finally:
            self._keys.release(dek)
        log.debug("credential.revealed", credential_id=str(row.id))  # the audit event is the record
        return Revealed(row.id, row.label, row.username, row.url, secret, notes)

    async def _may_disclose(
        self, caller: Caller, meta: RequestContext, client_id: UUID, credential_id: UUID, why: Reason
    ) -> Access:
        """What every read of a secret (a reveal, a version's reveal, a TOTP code) checks first, before anything is
        counted or written: the caller may see the client, else the refusal is recorded (`reveal_denied`) and the
        client is not found; then the client's reason rule (PreconditionRequired)."""
        try:
            access = await self._require_access(caller, client_id, reveal=True)
        except NotFound:
            await self.record_denied(caller, meta, client_id, credential_id, NOT_A_MEMBER)
            raise
        _reason_given(access, why)
        return access

    async def _open_notes(self, client_id: UUID, row: Row[Any]) -> str:
        """The sealed notes the reveal statement answered with (under their own data key generation)."""
        dek = await self._keys.unwrap(
            client_id, row.notes_generation, Wrapped(row.notes_wrapped_key, row.notes_kek_version)
        )
        try:
            return open_sealed(dek, client_id, row.id, row.notes_ciphertext, row.notes_nonce, field="notes")
        finally:
            self._keys.release(dek)

    async def record_denied(
        self, caller: Caller, meta: RequestContext, client_id: UUID | None, credential_id: UUID | None, reason: str
    ) -> None:
        """Records a refused reveal: the policy's, or per-client access's (one statement, as the reveal is)."""
        event = self._event(AuditAction.REVEAL_DENIED, caller, meta, datetime.now(UTC))
        async with self._db.read() as conn:  # one statement in autocommit
            await store.insert_denied(
                conn,
                now=event.pop("occurred_at"),
                credential_id=credential_id,
                client_id=client_id,
                detail=detail_text({"reason": reason}),
                **event,
            )
        self._outbox_written()
        log.info("reveal.denied", user_id=str(caller.user_id), reason=reason)

    async def update_credential(
        self,
        caller: Caller,
        meta: RequestContext,
        client_id: UUID,
        credential_id: UUID,
        changes: dict[str, str | None],
        lookup: ClientLookup,
        if_revision: Collection[int] = (),
    ) -> Credential:
        """Changes the credential; with `if_revision` (If-Match) only while it is at one of those revisions (checked
        on the locked row and again in the UPDATE itself), else PreconditionFailed and nothing audited."""
        values: dict[str, Any] = _valid(changes)
        await self._writable(lookup, client_id, "credential not found")
        now = datetime.now(UTC)
        async with self._db.begin() as conn:
            current = await store.get_credential(conn, client_id, credential_id)
            if current is None:
                raise NotFound("credential not found")
            if if_revision and current.revision not in if_revision:
                raise PreconditionFailed(CHANGED)
            if "secret" in values:
                generation, dek = await self._newest_key(conn, client_id, now)
                try:
                    values["ciphertext"], values["nonce"] = seal(dek, client_id, credential_id, values.pop("secret"))
                finally:
                    self._keys.release(dek)
                values["key_generation"] = generation
                values |= await self._replacing_secret(conn, caller, current, now)
            sealed = {SEALED_FIELDS[name]: values.pop(name) for name in list(values) if name in SEALED_FIELDS}
            if sealed:
                await self._replace_fields(conn, client_id, credential_id, sealed, now)
                if "totp" in sealed:
                    values["has_totp"] = sealed["totp"] is not None
            row = await store.update_credential(
                conn,
                credential_id,
                if_revision=if_revision,
                updated_at=now,
                updated_by_user_id=caller.user_id,
                **values,
            )
            if row is None:
                raise PreconditionFailed(CHANGED)
            await self._record(
                conn, AuditAction.CREDENTIAL_UPDATE, caller, meta, now, client_id=client_id, credential=row
            )
        self._outbox_written()
        log.info("credential.updated", credential_id=str(credential_id), fields=sorted(changes))
        return Credential.from_row(row)

    async def _replace_fields(
        self, conn: AsyncConnection, client_id: UUID, credential_id: UUID, sealed: dict[str, Any], now: datetime
    ) -> None:
        """Seals the given fields anew under the client's newest data key; a None one is removed."""
        removed = [name for name, value in sealed.items() if value is None]
        if removed:
            await store.delete_fields(conn, credential_id, removed)
        kept = {name: value for name, value in sealed.items() if value is not None}
        if kept:
            generation, dek = await self._newest_key(conn, client_id, now)
            try:
                rows = self._sealed_fields(dek, generation, client_id, credential_id, kept)
            finally:
                self._keys.release(dek)
            await store.put_fields(conn, rows)

    async def _replacing_secret(
        self, conn: AsyncConnection, caller: Caller, current: Row[Any], now: datetime
    ) -> dict[str, Any]:
        """Keeps the current secret as an old version; the columns that describe the secret replacing it."""
        await store.keep_version(conn, current.id, self._versions_kept)
        return {
            "secret_version": current.secret_version + 1,
            "secret_changed_at": now,
            "secret_changed_by_user_id": caller.user_id,
        }

    async def get_credential(self, caller: Caller, client_id: UUID, credential_id: UUID) -> Credential:
        """A live credential's metadata (never the secret); not audited, as the list is not."""
        await self._require_access(caller, client_id)
        async with self._db.read() as conn:
            row = await store.get_metadata(conn, client_id, credential_id)
        if row is None:
            raise await self._missing(client_id, NotFound("credential not found"))
        return Credential.from_row(row)

    async def list_versions(self, caller: Caller, client_id: UUID, credential_id: UUID) -> list[Version]:
        """A credential's old versions, newest first (never a secret)."""
        await self._require_access(caller, client_id)
        async with self._db.read() as conn:
            found = await store.get_credential(conn, client_id, credential_id, lock=False) is not None
            rows = await store.list_versions(conn, credential_id) if found else []
        if not found:
            raise await self._missing(client_id, NotFound("credential not found"))
        return [Version.from_row(row) for row in rows]

    async def restore_version(
        self,
        caller: Caller,
        meta: RequestContext,
        client_id: UUID,
        credential_id: UUID,
        version: int,
        lookup: ClientLookup,
    ) -> Credential:
        """Makes an old version the current secret again (as it was sealed: no key is needed), keeping the current
        one as a version. Audited as `credential_update`, its detail naming the version: {"restored_version":3}."""
        await self._writable(lookup, client_id, "credential not found")
        now = datetime.now(UTC)
        async with self._db.begin() as conn:
            current = await store.get_credential(conn, client_id, credential_id)
            if current is None:
                raise NotFound("credential not found")
            old = await store.get_version(conn, credential_id, version)
            if old is None:
                raise NotFound("version not found")
            replacing = await self._replacing_secret(conn, caller, current, now)
            row = await store.update_credential(
                conn,
                credential_id,
                ciphertext=old.ciphertext,
                nonce=old.nonce,
                key_generation=old.key_generation,
                updated_at=now,
                updated_by_user_id=caller.user_id,
                **replacing,
            )
            if row is None:  # only a condition refuses an update, and this one has none
                raise NotFound("credential not found")
            await self._record(
                conn,
                AuditAction.CREDENTIAL_UPDATE,
                caller,
                meta,
                now,
                client_id=client_id,
                credential=row,
                detail=detail_text({"restored_version": version}),
            )
        self._outbox_written()
        log.info("credential.version_restored", credential_id=str(credential_id), version=version)
        return Credential.from_row(row)

    async def delete_credential(
        self, caller: Caller, meta: RequestContext, client_id: UUID, credential_id: UUID, lookup: ClientLookup
    ) -> None:
        """Moves the credential to the trash: it no longer lists or reveals; an admin may restore it until the
        vault purges it (`purge_trash`)."""
        await self._writable(lookup, client_id, "credential not found")
        now = datetime.now(UTC)
        async with self._db.begin() as conn:
            row = await store.trash_credential(conn, client_id, credential_id, now, caller.user_id)
            if row is None:
                raise NotFound("credential not found")
            await self._record(
                conn, AuditAction.CREDENTIAL_DELETE, caller, meta, now, client_id=client_id, credential=row
            )
        self._outbox_written()
        log.info("credential.deleted", credential_id=str(credential_id))

    async def restore_credential(
        self, caller: Caller, meta: RequestContext, client_id: UUID, credential_id: UUID, lookup: ClientLookup
    ) -> Credential:
        """Brings a credential back from the trash, as it was (its secret and old versions too)."""
        await self._writable(lookup, client_id, "credential not found")
        now = datetime.now(UTC)
        async with self._db.begin() as conn:
            row = await store.untrash_credential(conn, client_id, credential_id)
            if row is None:
                raise NotFound("credential not found in the trash")
            await self._record(
                conn, AuditAction.CREDENTIAL_RESTORE, caller, meta, now, client_id=client_id, credential=row
            )
        self._outbox_written()
        log.info("credential.restored", credential_id=str(credential_id))
        return Credential.from_row(row)

    async def shred_client(
        self, caller: Caller, meta: RequestContext, client_id: UUID, confirm_name: str, describe: ClientDescription
    ) -> Shredded:
        """Crypto-shred: destroys every data key and sealed secret (current, old versions, in the trash) of an
        archived client in one transaction, and writes one `client_shredded` event (no credential; the counts and
        the keys' generations in its detail). From then on the client's
        credentials answer Gone. `confirm_name` must be the client's name, as the clients service has it."""
        state, name = await describe(client_id)
        if state is ClientState.UNKNOWN:
            raise NotFound("client not found")
        if await self._shredded(client_id):
            raise Gone(SHREDDED)
        if state is not ClientState.ARCHIVED:
            raise NotArchived("only an archived client can be shredded: archive it first")
        if confirm_name != name:
            raise WrongName("confirmName is not the client's name")
        now = datetime.now(UTC)
        async with self._db.begin() as conn:
            done = await store.shred(conn, client_id, now, caller.user_id)
            if done is None:
                raise Gone(SHREDDED)
            row, generations = done
            shredded = Shredded(row.shredded_at, row.credentials, row.versions, row.data_keys)
            await self._record(
                conn,
                AuditAction.CLIENT_SHREDDED,
                caller,
                meta,
                now,
                client_id=client_id,
                credential=None,
                detail=shredded.detail(generations),
            )
        self._keys.forget(client_id)  # this process's cached keys; other replicas' expire (CLIENTVAULT_DEK_CACHE_TTL_S)
        self._outbox_written()
        log.warning("client.shredded", client_id=str(client_id), credentials=row.credentials, data_keys=row.data_keys)
        return shredded

    async def purge_trash(self, keep: timedelta) -> int:
        """Deletes for good the credentials in the trash for longer than `keep`, with their old versions: one
        `credential_purge` event each, written by the vault itself (no user acted: `PURGER_FULL_NAME`). How many it
        purged."""
        purged = 0
        while True:
            now = datetime.now(UTC)
            async with self._db.begin() as conn:
                rows = await store.purge_trashed(conn, now - keep, PURGE_BATCH)
                await outbox.insert_events(
                    conn,
                    store.outbox,
                    [
                        {
                            "event_id": new_id(),
                            "action": AuditAction.CREDENTIAL_PURGE,
                            "occurred_at": now,
                            "user_id": None,
                            "user_email": "",
                            "user_full_name": PURGER_FULL_NAME,
                            "credential_id": row.id,
                            "credential_label": row.label,
                            "client_id": row.client_id,
                            "ip": "",
                            "user_agent": "",
                            "request_id": "",
                            "traceparent": None,  # no request: the purge loop starts no trace
                        }
                        for row in rows
                    ],
                )
            purged += len(rows)
            if rows:
                self._outbox_written()
                log.info("credential.purged", credentials=len(rows))
            if len(rows) < PURGE_BATCH:
                return purged

    async def purge_trash_forever(self, keep: timedelta, every_s: float) -> None:
        """`purge_trash` every `every_s` seconds (CLIENTVAULT_TRASH_PURGE_INTERVAL_S), on every replica: rows one
        replica holds are skipped by the others."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.purge_trash(keep)
            except Unavailable:
                log.warning("trash.purge_postponed")
