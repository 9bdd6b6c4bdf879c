"""The audit log: validate the filters, call the audit service, shape the reply. No rules here."""

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, AwareDatetime, BeforeValidator

from clientvault.convert import timestamp
from clientvault.v1 import audit_pb2 as pb
from clientvault.v1 import events_pb2
from gateway.calls import Call, operation
from gateway.routes.clients import PageNumber, PageSize
from gateway.schemas import AuditAction, AuditEntryOut, AuditEntryPage, Id, number
from gateway.strict_json import StrictJsonRoute

router = APIRouter(prefix="/audit-logs", tags=["audit"], route_class=StrictJsonRoute)


RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: object) -> object:
    """RFC 3339 text only, as documented: pydantic would also read a number as Unix time."""
    if isinstance(value, str) and RFC3339.fullmatch(value):
        return value
    raise ValueError("must be an RFC 3339 date-time with an offset, such as 2026-01-31T09:30:00Z")


def _in_utc(value: datetime) -> datetime:
    """The instant in UTC, which must exist: 9999-12-31T23:00:00-05:00 is after the last one."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be between 0001-01-01 and 9999-12-31 in UTC") from None


Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_in_utc)]


@operation(router.get, "", "Audit/ListEvents", errors=(422,))
async def list_audit_logs(
    call: Call,
    credential_id: Annotated[Id | None, Query(alias="credentialId")] = None,
    user_id: Annotated[Id | None, Query(alias="userId", description="The actor; the same as `actorUserId`.")] = None,
    actor_user_id: Annotated[Id | None, Query(alias="actorUserId", description="The user who acted.")] = None,
    target_user_id: Annotated[Id | None, Query(alias="targetUserId", description="The user acted on.")] = None,
    client_id: Annotated[Id | None, Query(alias="clientId")] = None,
    action: AuditAction | None = None,
    start: Annotated[Instant | None, Query(alias="from", description="RFC 3339, inclusive.")] = None,
    end: Annotated[Instant | None, Query(alias="to", description="RFC 3339, inclusive.")] = None,
    page: PageNumber = 1,
    page_size: PageSize = 50,
) -> AuditEntryPage:
    """Audited events, newest first: credential events, reveals refused, sign-ins and other security events,
    user changes, and reads of this log (this call is recorded too).

    Filters combine; `from`/`to` bound `occurredAt` (inclusive). Each entry shows the actor and its subject as
    they were when it happened. `total` is exact."""
    if user_id is not None and actor_user_id is not None and user_id != actor_user_id:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "actorUserId"), "msg": "userId and actorUserId differ"}]
        )
    request = pb.ListEventsRequest(
        credential_id=str(credential_id or ""),
        user_id=str(actor_user_id or user_id or ""),
        target_user_id=str(target_user_id or ""),
        client_id=str(client_id or ""),
        action=number(events_pb2.AuditAction.DESCRIPTOR, action),
        page=page,
        page_size=page_size,
    )
    if start is not None:
        request.from_time.CopyFrom(timestamp(start))
    if end is not None:
        request.to_time.CopyFrom(timestamp(end))
    return AuditEntryPage.of(await call.audit.ListEvents(request), AuditEntryOut.from_proto)
