"""Wire models: camelCase JSON on the outside, snake_case in Python; unknown fields are a 422.

Every property has a type in the OpenAPI document (a client generated from it is typed end to end), and each
enum is one named schema (`Role`, `ClientStatus`, `TaskStatus`, `TaskPriority`, `AuditAction`).
"""

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, Self, TypeVar, get_args
from uuid import UUID

import pydantic_core
from fastapi import Path, Query
from fastapi.responses import JSONResponse
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

from clientvault import fields
from clientvault.convert import enum_name, enum_number, from_timestamp
from clientvault.events import AuditAction as AuditAction  # one named schema, the kit's vocabulary
from clientvault.ids import canonical_id
from clientvault.policy import Role
from clientvault.v1 import auth_pb2, clients_pb2, events_pb2, vault_pb2


class WireModel(BaseModel):
    # A response property with a default (tokenType) is always sent: the document says it is required.
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        json_schema_serialization_defaults_required=True,
    )

    @field_validator("*", mode="after")
    @classmethod
    def _not_null(cls, value: object, info: ValidationInfo) -> object:
        """A field typed `… | NotNull` may be left out (its default) but not sent as null: 422 naming it."""
        if value is None and info.field_name and _not_nullable(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"{to_camel(info.field_name)} cannot be null: leave it out instead")
        return value


def _not_nullable(annotation: object) -> bool:
    """Whether a field's type is `… | NotNull`: its None is the default only, absent from the schema."""
    return NotNull in get_args(annotation)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# An instant as answered: RFC 3339 in UTC with milliseconds and `Z`, e.g. 2026-01-31T09:30:00.000Z.
DateTime = Annotated[
    AwareDatetime,
    PlainSerializer(_rfc3339, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


def _canonical(value: object) -> object:
    if isinstance(value, str) and canonical_id(value) is None:
        raise ValueError("must be an id as the API writes it: lowercase, with hyphens")
    return value


# An id in a body or a query: only its canonical spelling, so that one object never has several names.
Id = Annotated[UUID, BeforeValidator(_canonical)]

# The ids in paths, named as in the contract. Not parsed as UUIDs: a malformed id is a 404, like an unknown one.
ClientId = Annotated[str, Path(alias="clientId", description="The client's id.")]
TaskId = Annotated[str, Path(alias="taskId", description="The task's id.")]
CredentialId = Annotated[str, Path(alias="credentialId", description="The credential's id.")]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1, description="An old version's number.")]


class SignInIn(WireModel):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(WireModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class TokenPairOut(WireModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int

    @classmethod
    def from_proto(cls, pair: auth_pb2.TokenPair) -> "TokenPairOut":
        return cls(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


ROLE_FROM_PROTO = {
    auth_pb2.ROLE_ADMIN: Role.ADMIN,
    auth_pb2.ROLE_MANAGER: Role.MANAGER,
    auth_pb2.ROLE_READ_ONLY: Role.READ_ONLY,
    auth_pb2.ROLE_ROTATION_TASKS: Role.ROTATION_TASKS,  # the service identity, listed among the users
}
ROLE_TO_PROTO = {role: number for number, role in ROLE_FROM_PROTO.items()}


class UserOut(WireModel):
    id: str
    email: str
    full_name: str
    role: Role
    created_at: DateTime

    @classmethod
    def from_proto(cls, user: auth_pb2.User) -> "UserOut":
        return cls(
            id=user.id,
            email=user.email,
            full_name=user.full_name,
            role=ROLE_FROM_PROTO[user.role],
            created_at=from_timestamp(user.created_at),
        )


# --- clients and tasks ------------------------------------------------------------------------------

# What the services enforce on text, said in the OpenAPI document only: the services' 422s name the field.
STORED: dict[str, Any] = {"pattern": fields.NO_NUL}
EMAIL: dict[str, Any] = {"format": "email", **STORED}
PHONE: dict[str, Any] = {"pattern": fields.PHONE}

# A field that may be left out but not sent as null: the model's default, absent from the schema (WireModel refuses
# an explicit null with a 422 naming the field).
NotNull = SkipJsonSchema[None]

# The enums' values are the proto enums' value names without their prefix, lower case (tests/unit/test_openapi.py).


class ClientStatus(StrEnum):
    LEAD = "lead"
    ACTIVE = "active"
    INACTIVE = "inactive"
    ARCHIVED = "archived"  # only through the archive route


class SettableClientStatus(StrEnum):
    """What a client's status may be set to: `archived` only through the archive route."""

    LEAD = "lead"
    ACTIVE = "active"
    INACTIVE = "inactive"


class TaskStatus(StrEnum):
    TODO = "todo"
    IN_PROGRESS = "in_progress"
    DONE = "done"


class TaskPriority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ClientIn(WireModel):
    name: str = Field(min_length=1, max_length=fields.NAME_MAX, json_schema_extra=STORED)
    company: str | None = Field(None, max_length=fields.COMPANY_MAX, json_schema_extra=STORED)
    email: str | None = Field(None, max_length=fields.EMAIL_MAX, json_schema_extra=EMAIL)
    phone: str | None = Field(None, max_length=fields.PHONE_MAX, json_schema_extra=PHONE)
    status: SettableClientStatus = SettableClientStatus.ACTIVE
    notes: str | None = Field(None, max_length=fields.NOTES_MAX, json_schema_extra=STORED)


class ClientPatch(WireModel):
    """Only the fields sent change; null clears an optional field (the schema says which may be null)."""

    name: Annotated[str, Field(min_length=1, max_length=fields.NAME_MAX, json_schema_extra=STORED)] | NotNull = None
    company: str | None = Field(None, max_length=fields.COMPANY_MAX, json_schema_extra=STORED)
    email: str | None = Field(None, max_length=fields.EMAIL_MAX, json_schema_extra=EMAIL)
    phone: str | None = Field(None, max_length=fields.PHONE_MAX, json_schema_extra=PHONE)
    status: SettableClientStatus | NotNull = None
    notes: str | None = Field(None, max_length=fields.NOTES_MAX, json_schema_extra=STORED)
    reveal_reason_required: bool | NotNull = Field(
        None, description="Admin only (403 otherwise): every reveal of the client's credentials must name a reason."
    )


class ClientOut(WireModel):
    id: str
    name: str
    company: str | None
    email: str | None
    phone: str | None
    status: ClientStatus
    notes: str | None
    owner_user_id: str
    created_at: DateTime
    updated_at: DateTime
    archived_at: DateTime | None
    reveal_reason_required: bool = Field(
        False, description="Every reveal of the client's credentials must name a reason (428 without one)."
    )

    @classmethod
    def from_proto(cls, client: clients_pb2.Client) -> "ClientOut":
        """The client's JSON (`client_json`), checked against this model: a single client is checked on its way
        out; a page of them (the list, on every visit) is answered as `client_json` builds it."""
        return cls.model_validate(client_json(client))


CLIENT_STATUS_NAMES = {
    value.number: enum_name(clients_pb2.ClientStatus.DESCRIPTOR, value.number)
    for value in clients_pb2.ClientStatus.DESCRIPTOR.values
}


def client_json(client: clients_pb2.Client) -> dict[str, Any]:
    """A client as `ClientOut` answers it in JSON (its aliases, its order, its instants), straight from the proto:
    the one conversion of a client for the wire. Building and serializing 20 models was most of what the gateway
    spent on a page of clients (bench/README.md, `clients.py`)."""
    return {
        "id": client.id,
        "name": client.name,
        "company": client.company if client.HasField("company") else None,
        "email": client.email if client.HasField("email") else None,
        "phone": client.phone if client.HasField("phone") else None,
        "status": CLIENT_STATUS_NAMES[client.status],
        "notes": client.notes if client.HasField("notes") else None,
        "ownerUserId": client.owner_user_id,
        "createdAt": instant(client.created_at),
        "updatedAt": instant(client.updated_at),
        "archivedAt": instant(client.archived_at) if client.HasField("archived_at") else None,
        "revealReasonRequired": client.reveal_reason_required,
    }


def instant(stamp: Timestamp) -> str:
    """A proto timestamp as the `DateTime` of the wire models answers it."""
    return _rfc3339(from_timestamp(stamp))


class TaskIn(WireModel):
    title: str = Field(min_length=1, max_length=fields.TITLE_MAX, json_schema_extra=STORED)
    description: str | None = Field(None, max_length=fields.DESCRIPTION_MAX, json_schema_extra=STORED)
    status: TaskStatus = TaskStatus.TODO
    priority: TaskPriority = TaskPriority.MEDIUM
    due_date: date | None = None
    assignee_user_id: Id | None = None


class TaskPatch(WireModel):
    """Only the fields sent change; null clears an optional field (the schema says which may be null)."""

    title: Annotated[str, Field(min_length=1, max_length=fields.TITLE_MAX, json_schema_extra=STORED)] | NotNull = None
    description: str | None = Field(None, max_length=fields.DESCRIPTION_MAX, json_schema_extra=STORED)
    status: TaskStatus | NotNull = None
    priority: TaskPriority | NotNull = None
    due_date: date | None = None
    assignee_user_id: Id | None = None


class TaskOut(WireModel):
    id: str
    client_id: str
    title: str
    description: str | None
    status: TaskStatus
    priority: TaskPriority
    due_date: date | None
    assignee_user_id: str | None
    created_by_user_id: str
    created_at: DateTime
    updated_at: DateTime
    completed_at: DateTime | None

    @classmethod
    def from_proto(cls, task: clients_pb2.Task) -> "TaskOut":
        return cls(
            id=task.id,
            client_id=task.client_id,
            title=task.title,
            description=_optional(task, "description"),
            status=enum_name(clients_pb2.TaskStatus.DESCRIPTOR, task.status),
            priority=enum_name(clients_pb2.TaskPriority.DESCRIPTOR, task.priority),
            due_date=date.fromisoformat(task.due_date) if task.HasField("due_date") else None,
            assignee_user_id=_optional(task, "assignee_user_id"),
            created_by_user_id=task.created_by_user_id,
            created_at=from_timestamp(task.created_at),
            updated_at=from_timestamp(task.updated_at),
            completed_at=from_timestamp(task.completed_at) if task.HasField("completed_at") else None,
        )


T = TypeVar("T")


class Page(WireModel, Generic[T]):
    """A page of a list: `total` counts every match, `items` holds at most `pageSize` of them."""

    items: list[T]
    total: int
    page: int
    page_size: int

    @classmethod
    def of(cls, reply: Any, item: Callable[[Any], T]) -> Self:
        """A list RPC's reply (items, total, page, page_size), each item shaped by `item`."""
        return cls(items=[item(i) for i in reply.items], total=reply.total, page=reply.page, page_size=reply.page_size)


class WireJSON(JSONResponse):
    """A body built as the wire models answer it (`client_json`, `page_json`), serialized by pydantic's own encoder:
    the bytes FastAPI sends for the model, ~4x faster than `json.dumps` for a page of clients."""

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)


def page_json(reply: Any, item: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """A list RPC's reply as a `Page` answers it in JSON, each item's JSON made by `item` and not checked again."""
    return {
        "items": [item(i) for i in reply.items],
        "total": reply.total,
        "page": reply.page,
        "pageSize": reply.page_size,
    }


# Each page by a name of its own in the OpenAPI document (a generic one would be `Page_ClientOut_`).
class ClientPage(Page[ClientOut]):
    """A page of clients."""


class TaskPage(Page[TaskOut]):
    """A page of tasks."""


def number(enum: Any, value: StrEnum | None) -> Any:
    """A filter's enum value as its proto number (typed Any, as each enum has its own int type); none is the
    unspecified zero, which means any."""
    return 0 if value is None else enum_number(enum, value)


def _optional(message: Message, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


M = TypeVar("M", bound=Message)


def to_fields(body: WireModel, message: M) -> tuple[M, list[str]]:
    """Copies the fields the caller sent into a ClientFields/TaskFields/CredentialFields message; returns it
    and their names (the update mask). A null leaves the field unset, which the service reads as "clear it"."""
    sent = sorted(body.model_fields_set)
    for name in sent:
        value = getattr(body, name)
        if value is None:
            continue
        enum = message.DESCRIPTOR.fields_by_name[name].enum_type
        if enum is not None:
            value = enum_number(enum, value)
        elif isinstance(value, date | UUID):
            value = str(value)
        setattr(message, name, value)
    return message, sent


# --- credentials ---------------------------------------------------------------------------------


def _storable(value: str | None, *, allow_nul: bool = False) -> str | None:
    """Text that the services can carry and store: UTF-8 encodable, and no NUL outside the secret."""
    if value is None:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    if not allow_nul and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Label = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra=STORED), AfterValidator(_storable)]
Username = Annotated[str | None, Field(max_length=500, json_schema_extra=STORED), AfterValidator(_storable)]
Url = Annotated[str | None, Field(max_length=2048, json_schema_extra=STORED), AfterValidator(_storable)]
Secret = Annotated[str, Field(min_length=1, max_length=10_000), AfterValidator(lambda v: _storable(v, allow_nul=True))]
# Write-only, sealed apart from the secret (docs/credential-tools.md); the vault checks that a code can be computed.
TotpSecret = Annotated[
    str | None,
    Field(
        max_length=2048,
        description="A TOTP seed: base32, or an otpauth://totp/ URI. Write-only: the metadata says `hasTotp`.",
    ),
    AfterValidator(_storable),
]
Notes = Annotated[
    str | None, Field(max_length=10_000, description="Sealed like the secret."), AfterValidator(_storable)
]


class CredentialIn(WireModel):
    label: Label
    username: Username = None
    url: Url = None
    secret: Secret
    totp_secret: TotpSecret = None
    notes: Notes = None


class CredentialPatch(WireModel):
    """Any of the fields; `username` and `url` may be null (cleared), `label` and `secret` may not."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    label: Label | NotNull = None
    username: Username = None
    url: Url = None
    secret: Secret | NotNull = None
    totp_secret: TotpSecret = None  # null removes the seed
    notes: Notes = None  # null removes the notes

    @model_validator(mode="after")
    def _something_to_change(self) -> "CredentialPatch":
        if not self.model_fields_set:
            raise ValueError("name at least one of label, username, url, secret, totpSecret, notes")
        return self


class CreatedOut(WireModel):
    id: str


class CredentialOut(WireModel):
    id: str
    label: str
    username: str | None
    url: str | None
    updated_at: DateTime
    last_accessed_at: DateTime | None
    secret_changed_at: DateTime = Field(description="When the secret last changed; a label edit leaves it.")
    deleted_at: DateTime | None = Field(description="In the trash since (only in the trash's list); else null.")
    has_totp: bool = Field(False, description="A TOTP seed is kept: GET .../credentials/{credentialId}/totp.")

    @classmethod
    def from_proto(cls, credential: vault_pb2.Credential) -> "CredentialOut":
        return cls(
            id=credential.id,
            label=credential.label,
            username=credential.username if credential.HasField("username") else None,
            url=credential.url if credential.HasField("url") else None,
            updated_at=from_timestamp(credential.updated_at),
            last_accessed_at=(
                from_timestamp(credential.last_accessed_at) if credential.HasField("last_accessed_at") else None
            ),
            secret_changed_at=from_timestamp(credential.secret_changed_at),
            deleted_at=from_timestamp(credential.deleted_at) if credential.HasField("deleted_at") else None,
            has_totp=credential.has_totp,
        )


class VersionOut(WireModel):
    """An old version of a credential's secret (never the secret): when it became current, and who set it."""

    version: int
    created_at: DateTime
    created_by_user_id: str

    @classmethod
    def from_proto(cls, version: vault_pb2.CredentialVersion) -> "VersionOut":
        return cls(
            version=version.version,
            created_at=from_timestamp(version.created_at),
            created_by_user_id=version.created_by_user_id,
        )


# What a caller says for the audit trail (a reveal's or an access request's reason, a ticket): one line (the services
# refuse control characters, naming the field: clientvault/fields.py `said`), trimmed by them; blank is none.
ONE_LINE: dict[str, Any] = {"pattern": fields.NO_CONTROL}


class RevealIn(WireModel):
    """Why a secret is revealed, kept in the reveal's audit entry (`detail`: `reason`, `ticketRef`)."""

    reason: Annotated[
        str | None,
        Field(
            max_length=fields.REASON_MAX,
            json_schema_extra=ONE_LINE,
            description="Why the secret is revealed. Required (non-blank) for a client with revealReasonRequired.",
        ),
        AfterValidator(_storable),
    ] = None
    ticket_ref: Annotated[
        str | None,
        Field(max_length=fields.TICKET_REF_MAX, json_schema_extra=ONE_LINE, description="The ticket it is for."),
        AfterValidator(_storable),
    ] = None


# The same, where the reveal is a GET (a TOTP code): query parameters (the gateway's access log leaves out the query).
ReasonQuery = Annotated[
    str | None,
    Query(max_length=fields.REASON_MAX, json_schema_extra=ONE_LINE, description="Why (see RevealIn.reason)."),
]
TicketRefQuery = Annotated[
    str | None,
    Query(alias="ticketRef", max_length=fields.TICKET_REF_MAX, json_schema_extra=ONE_LINE, description="The ticket."),
]


class RevealedOut(WireModel):
    id: str
    label: str
    username: str | None
    url: str | None
    secret: str = Field(repr=False)
    notes: str | None = Field(None, repr=False, description="The credential's notes (a current secret's reveal).")


class ImportFormat(StrEnum):
    """What wrote an import's file (docs/credential-tools.md)."""

    BITWARDEN_JSON = "bitwarden-json"
    KEEPASS_XML = "keepass-xml"
    CSV = "csv"


class TotpOut(WireModel):
    """The current TOTP code of a credential's seed."""

    code: str
    period: int = Field(description="Seconds a code lasts.")
    expires_in: int = Field(description="Seconds this code has left.")
    digits: int


class ImportProblemOut(WireModel):
    row: int = Field(description="1-based: the item or entry in file order, or the CSV's data row after the header.")
    message: str


class ImportOut(WireModel):
    """What an import wrote (or, with `dryRun`, would write); the rows it skipped and why."""

    imported: int
    skipped: int
    problems: list[ImportProblemOut]
    dry_run: bool
    ids: list[str] = Field(description="The new credentials' ids in row order (none on a dry run).")

    @classmethod
    def from_proto(cls, reply: vault_pb2.ImportCredentialsResponse) -> "ImportOut":
        return cls(
            imported=reply.imported,
            skipped=reply.skipped,
            problems=[ImportProblemOut(row=p.row, message=p.message) for p in reply.problems],
            dry_run=reply.dry_run,
            ids=list(reply.ids),
        )


class ExportIn(WireModel):
    recipient: Annotated[
        str,
        Field(min_length=1, max_length=200, description="The age public key to encrypt to (age1…)."),
        AfterValidator(_storable),
    ]


class ShredIn(WireModel):
    confirm_name: Annotated[
        str,
        Field(min_length=1, max_length=500, description="The client's name, to confirm."),
        AfterValidator(_storable),
    ]


class ShredOut(WireModel):
    """What a crypto-shred destroyed."""

    shredded_at: DateTime
    credentials: int
    versions: int
    data_keys: int

    @classmethod
    def from_proto(cls, reply: vault_pb2.ShredClientResponse) -> "ShredOut":
        return cls(
            shredded_at=from_timestamp(reply.shredded_at),
            credentials=reply.credentials,
            versions=reply.versions,
            data_keys=reply.data_keys,
        )


# --- reports ------------------------------------------------------------------------------------------


class ExposedOut(WireModel):
    """A credential the user revealed whose secret nobody changed since their last reveal."""

    credential_id: str
    client_id: str
    client_name: str = Field(description="The client's name now (from the clients service).")
    label: str
    last_revealed_at: DateTime
    reveal_count: int
    secret_changed_at: DateTime

    @classmethod
    def from_proto(cls, item: vault_pb2.ExposedCredential, client_name: str) -> "ExposedOut":
        return cls(
            credential_id=item.credential_id,
            client_id=item.client_id,
            client_name=client_name,
            label=item.label,
            last_revealed_at=from_timestamp(item.last_revealed_at),
            reveal_count=item.reveal_count,
            secret_changed_at=from_timestamp(item.secret_changed_at),
        )


class ExposurePage(Page[ExposedOut]):
    """A page of the exposure report."""


# --- audit log ----------------------------------------------------------------------------------------


class AuditUserOut(WireModel):
    full_name: str
    email: str


class AuditCredentialOut(WireModel):
    label: str
    client_id: str


class AuditTargetUserOut(WireModel):
    id: str
    email: str


OPTIONAL_AUDIT_FIELDS = ("targetUser", "target_user", "detail")


class AuditEntryOut(WireModel):
    """One audited event; the actor and the subject (a credential, a user) as they were when it happened.
    `credentialId`, `credential` and `clientId` are null for an event that is not about a credential (`clientId`
    alone is set for one about a client); `userId` is null when no signed-in user acted (a failed sign-in:
    `user.email` is the email as typed; an operator's command). `targetUser` (the user acted on) and `detail`
    appear only on events that have them."""

    id: str
    action: AuditAction
    occurred_at: DateTime
    user_id: str | None
    user: AuditUserOut
    credential_id: str | None
    credential: AuditCredentialOut | None
    client_id: str | None
    ip: str
    user_agent: str
    # Only on events that have them: a credential event keeps the shape it always had.
    target_user: AuditTargetUserOut | None = None
    detail: dict[str, Any] | None = Field(
        None, description="What else the producer recorded: what changed, the filters of a read, why refused."
    )

    model_config = ConfigDict(json_schema_serialization_defaults_required=False)

    @model_serializer(mode="wrap")
    def _only_present_extras(self, serialize):  # type: ignore[no-untyped-def]  # unannotated: the model's schema
        answer = serialize(self)
        for name in OPTIONAL_AUDIT_FIELDS:
            if answer.get(name, False) is None:
                del answer[name]
        return answer

    @classmethod
    def from_proto(cls, event: events_pb2.AuditEvent) -> "AuditEntryOut":
        return cls(
            id=event.event_id,
            action=enum_name(events_pb2.AuditAction.DESCRIPTOR, event.action),
            occurred_at=from_timestamp(event.occurred_at),
            user_id=event.user_id or None,
            user=AuditUserOut(full_name=event.user_full_name, email=event.user_email),
            credential_id=event.credential_id or None,
            credential=AuditCredentialOut(label=event.credential_label, client_id=event.client_id)
            if event.credential_id
            else None,
            client_id=event.client_id or None,
            target_user=AuditTargetUserOut(id=event.target_user_id, email=event.target_user_email)
            if event.target_user_id or event.target_user_email
            else None,
            detail=json.loads(event.detail) if event.detail else None,
            ip=event.ip,
            user_agent=event.user_agent,
        )


class AuditEntryPage(Page[AuditEntryOut]):
    """A page of audit entries."""


class StatusOut(WireModel):
    """A probe's answer."""

    status: Literal["ok", "ready"]


class ServicesOut(WireModel):
    """Each service's gRPC health as the gateway sees it."""

    status: Literal["ok"]
    services: dict[str, Literal["serving", "unavailable"]]


# --- staff identity ------------------------------------------------------------------------------


class MfaMethod(StrEnum):
    TOTP = "totp"
    RECOVERY_CODE = "recoveryCode"


class MfaChallengeOut(WireModel):
    """A sign-in of a user with MFA: no tokens yet; send a code with the mfaToken to POST /auth/mfa."""

    mfa_required: Literal[True] = True
    mfa_token: str
    methods: list[MfaMethod]


class MfaIn(WireModel):
    mfa_token: str = Field(min_length=1, max_length=512)
    code: str = Field(min_length=1, max_length=64, description="A 6-digit TOTP code or a recovery code.")


Password = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(lambda v: _storable(v))]
NewPassword = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        description="12 to 1024 characters, not the email, not easy to guess (zxcvbn score at least 3).",
    ),
    AfterValidator(lambda v: _storable(v)),
]
Code = Annotated[str, Field(min_length=1, max_length=64)]
UserId = Annotated[str, Path(alias="userId", description="The user's id.")]
SessionId = Annotated[str, Path(alias="sessionId", description="The session's id.")]


class AccountOut(WireModel):
    """A user as an admin sees it."""

    id: str
    email: str
    full_name: str
    role: Role
    created_at: DateTime
    disabled: bool
    mfa_enabled: bool
    password_change_required: bool

    @classmethod
    def from_proto(cls, user: auth_pb2.User) -> Self:
        return cls(
            id=user.id,
            email=user.email,
            full_name=user.full_name,
            role=ROLE_FROM_PROTO[user.role],
            created_at=from_timestamp(user.created_at),
            disabled=user.disabled,
            mfa_enabled=user.mfa_enabled,
            password_change_required=user.password_change_required,
        )


class CreatedUserOut(AccountOut):
    """The new user; `temporaryPassword` (shown this once) when no password was given."""

    temporary_password: str | None


class UserIn(WireModel):
    email: str = Field(min_length=1, max_length=fields.EMAIL_MAX, json_schema_extra=EMAIL)
    full_name: str = Field(min_length=1, max_length=fields.NAME_MAX)
    role: Role
    password: NewPassword | NotNull = None  # left out: a temporary password is made


class UserPatch(WireModel):
    """Any of `fullName`, `role`, `disabled` (none may be null)."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    full_name: Annotated[str, Field(min_length=1, max_length=fields.NAME_MAX)] | NotNull = None
    role: Role | NotNull = None
    disabled: bool | NotNull = None

    @model_validator(mode="after")
    def _something_to_change(self) -> "UserPatch":
        if not self.model_fields_set:
            raise ValueError("name at least one of fullName, role, disabled")
        return self


class TemporaryPasswordOut(WireModel):
    temporary_password: str


class PasswordChangeIn(WireModel):
    current_password: Password
    new_password: NewPassword


class SessionOut(WireModel):
    id: str
    created_at: DateTime
    last_used_at: DateTime
    ip: str
    user_agent: str
    current: bool

    @classmethod
    def from_proto(cls, session: auth_pb2.Session) -> Self:
        return cls(
            id=session.id,
            created_at=from_timestamp(session.created_at),
            last_used_at=from_timestamp(session.last_used_at),
            ip=session.ip,
            user_agent=session.user_agent,
            current=session.current,
        )


class TotpEnrolmentOut(WireModel):
    secret: str = Field(description="Base32, for typing into an authenticator app.")
    otpauth_uri: str = Field(description="The same as an otpauth:// URI, for a QR code.")


class CodeIn(WireModel):
    code: Code


class RecoveryCodesOut(WireModel):
    recovery_codes: list[str] = Field(description="Ten one-time codes, shown this once: keep them safe.")


class MfaOffIn(WireModel):
    password: Password
    code: Code


class UserPage(Page[AccountOut]):
    """A page of users."""


class GeneratePasswordIn(WireModel):
    """Characters (`length`, `symbols`) or a passphrase (`words`), not both; all optional."""

    length: Annotated[int, Field(ge=8, le=128, description="Characters, 8 to 128 (default 20).")] | NotNull = None
    symbols: Annotated[bool, Field(description="Punctuation too (default true).")] | NotNull = None
    words: Annotated[int, Field(ge=3, le=12, description="A passphrase of this many words, 3 to 12.")] | NotNull = None

    @model_validator(mode="after")
    def _one_kind(self) -> "GeneratePasswordIn":
        if self.words is not None and (self.length is not None or self.symbols is not None):
            raise ValueError("words makes a passphrase: give it alone, without length or symbols")
        return self


class GeneratedPasswordOut(WireModel):
    password: str
    entropy_bits: float = Field(description="Of how it was drawn (alphabet or word list, and length).")

    @classmethod
    def from_proto(cls, message: vault_pb2.GeneratePasswordResponse) -> Self:
        return cls(password=message.password, entropy_bits=message.entropy_bits)


# --- client members (per-client access) ------------------------------------------------------------------


class MemberOut(WireModel):
    """A staff user assigned to a client: with CLIENTVAULT_CLIENT_SCOPING=on, a non-admin sees only such clients."""

    client_id: str
    user_id: str
    added_at: DateTime
    added_by_user_id: str

    @classmethod
    def from_proto(cls, member: clients_pb2.ClientMember) -> Self:
        return cls(
            client_id=member.client_id,
            user_id=member.user_id,
            added_at=from_timestamp(member.added_at),
            added_by_user_id=member.added_by_user_id,
        )


class MemberList(WireModel):
    """A client's members, first added first."""

    items: list[MemberOut]


# --- access requests, grants and break-glass (per-client access) ------------------------------------------------

RequestId = Annotated[str, Path(alias="requestId", description="The access request's id.")]
GrantId = Annotated[str, Path(alias="grantId", description="The grant's id (its approved request's id).")]
Reason = Annotated[
    str,
    Field(min_length=1, max_length=fields.REASON_MAX, json_schema_extra=ONE_LINE, description="Why, for the audit."),
]


class AccessRequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # a grant: in force until expiresAt, unless revoked
    DENIED = "denied"
    ACTIVE = "active"  # only as a filter: approved grants in force now


class AccessRequestIn(WireModel):
    reason: Reason
    ticket_ref: str | None = Field(
        None, max_length=fields.TICKET_REF_MAX, json_schema_extra=ONE_LINE, description="A ticket reference."
    )
    minutes: int = Field(
        ge=1,
        le=fields.GRANT_MINUTES_MAX,
        description="How long the grant lasts once approved, at most CLIENTVAULT_GRANT_MAX_MINUTES (default 480).",
    )


class BreakGlassIn(WireModel):
    reason: Reason


class AccessRequestOut(WireModel):
    """An access request; once approved (or made by a break-glass) the grant it is, with the same id."""

    id: str
    status: AccessRequestStatus
    client_id: str
    user_id: str
    reason: str
    ticket_ref: str | None
    minutes: int
    break_glass: bool
    created_at: DateTime
    decided_at: DateTime | None
    decided_by_user_id: str | None
    expires_at: DateTime | None = Field(description="When the grant ends by itself (approved only).")
    revoked_at: DateTime | None
    revoked_by_user_id: str | None
    active: bool = Field(description="An approved grant in force now.")

    @classmethod
    def from_proto(cls, message: clients_pb2.AccessRequest) -> Self:
        def when(name: str) -> datetime | None:
            stamp = _optional(message, name)
            return None if stamp is None else from_timestamp(stamp)

        return cls(
            id=message.id,
            status=enum_name(clients_pb2.AccessRequestStatus.DESCRIPTOR, message.status),
            client_id=message.client_id,
            user_id=message.user_id,
            reason=message.reason,
            ticket_ref=_optional(message, "ticket_ref"),
            minutes=message.minutes,
            break_glass=message.break_glass,
            created_at=from_timestamp(message.created_at),
            decided_at=when("decided_at"),
            decided_by_user_id=_optional(message, "decided_by_user_id"),
            expires_at=when("expires_at"),
            revoked_at=when("revoked_at"),
            revoked_by_user_id=_optional(message, "revoked_by_user_id"),
            active=message.active,
        )


class AccessRequestPage(Page[AccessRequestOut]):
    """A page of access requests (and grants)."""
