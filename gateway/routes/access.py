"""Time-boxed access: access requests, their approval, grants and break-glass. Validate, call the clients service,
shape the reply; the rules (who may ask, approve, break the glass) are the clients service's (services/clients/
grants.py)."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from clientvault import fields
from clientvault.v1 import clients_pb2 as pb
from gateway.calls import Call, operation
from gateway.schemas import (
    AccessRequestIn,
    AccessRequestOut,
    AccessRequestPage,
    AccessRequestStatus,
    BreakGlassIn,
    ClientId,
    GrantId,
    RequestId,
    number,
)
from gateway.strict_json import StrictJsonRoute

router = APIRouter(tags=["access"], route_class=StrictJsonRoute)
PageNumber = Annotated[int, Query(ge=1, le=fields.PAGE_MAX, description="1-based page number.")]
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=fields.PAGE_SIZE_MAX, description="Items per page.")]


@operation(
    router.post, "/clients/{clientId}/access-requests", "Clients/RequestAccess", status_code=201, errors=(404, 409, 422)
)
async def request_access(client_id: ClientId, body: AccessRequestIn, call: Call) -> AccessRequestOut:
    """Ask for time-boxed access to a client.

    For someone who is not a member of the client: an admin approves it (a grant valid for `minutes`, ending by
    itself) or denies it. An admin sees every client and has nothing to ask (403). 409 for a member, someone
    holding an active grant for it or with a pending request for it already, or an archived client; 422 when
    `minutes` is over CLIENTVAULT_GRANT_MAX_MINUTES. Audited as `access_requested`."""
    request = pb.RequestAccessRequest(
        client_id=client_id, reason=body.reason, ticket_ref=body.ticket_ref, minutes=body.minutes
    )
    return AccessRequestOut.from_proto(await call.clients.RequestAccess(request))


@operation(router.get, "/access-requests", "Clients/ListAccessRequests", errors=(422,))
async def list_access_requests(
    call: Call, status: AccessRequestStatus | None = None, page: PageNumber = 1, page_size: PageSize = 20
) -> AccessRequestPage:
    """List access requests and grants, newest first.

    An admin lists everyone's; anyone else their own. `status=active` lists the grants in force now (approved, not
    revoked, before `expiresAt`)."""
    request = pb.ListAccessRequestsRequest(
        status=number(pb.AccessRequestStatus.DESCRIPTOR, status), page=page, page_size=page_size
    )
    return AccessRequestPage.of(await call.clients.ListAccessRequests(request), AccessRequestOut.from_proto)


@operation(router.post, "/access-requests/{requestId}/approve", "Clients/ApproveAccessRequest", errors=(404, 409, 422))
async def approve_access_request(request_id: RequestId, call: Call) -> AccessRequestOut:
    """Approve an access request: it becomes a grant.

    The grant gives what membership gives until `expiresAt` (its minutes from now), then ends by itself. 403 for
    one's own request (another admin approves it); 409 when it is not pending. Audited as `access_approved`."""
    reply = await call.clients.ApproveAccessRequest(pb.DecideAccessRequest(request_id=request_id))
    return AccessRequestOut.from_proto(reply)


@operation(router.post, "/access-requests/{requestId}/deny", "Clients/DenyAccessRequest", errors=(404, 409))
async def deny_access_request(request_id: RequestId, call: Call) -> AccessRequestOut:
    """Deny an access request.

    403 for one's own request; 409 when it is not pending. Audited as `access_denied`."""
    reply = await call.clients.DenyAccessRequest(pb.DecideAccessRequest(request_id=request_id))
    return AccessRequestOut.from_proto(reply)


@operation(router.delete, "/grants/{grantId}", "Clients/RevokeGrant", status_code=204, errors=(404, 409))
async def revoke_grant(grant_id: GrantId, call: Call) -> Response:
    """End a grant early.

    Access ends at once (the vault forgets its cached answer). 404 for an id that is no grant; 409 when it has
    ended already. Audited as `access_grant_ended` with `{"ended": "revoked"}`."""
    await call.clients.RevokeGrant(pb.RevokeGrantRequest(grant_id=grant_id))
    return Response(status_code=204)


@operation(
    router.post, "/clients/{clientId}/break-glass", "Clients/BreakGlass", status_code=201, errors=(404, 409, 422)
)
async def break_glass(client_id: ClientId, body: BreakGlassIn, call: Call) -> AccessRequestOut:
    """Take access to a client at once, for 60 minutes.

    Only when the installation turns it on (CLIENTVAULT_BREAK_GLASS=on; 403 with that reason otherwise). Audited as
    `break_glass` with the reason (published on `audit.clients.break_glass` for integrations to alert admins); when
    it ends, each credential revealed under it becomes a rotation task in the client. 409 for an archived client."""
    reply = await call.clients.BreakGlass(pb.BreakGlassRequest(client_id=client_id, reason=body.reason))
    return AccessRequestOut.from_proto(reply)
