"""Client companies: validate, call the clients service, shape the reply. No rules here."""

from typing import Annotated

from fastapi import APIRouter, Query, Response
from google.protobuf.field_mask_pb2 import FieldMask

from clientvault import fields, policy
from clientvault.errors import Forbidden
from clientvault.v1 import clients_pb2 as pb
from clientvault.v1 import vault_pb2
from gateway.calls import Call, operation
from gateway.conditions import IdempotencyKey, IfMatch, if_match, tagged, with_etag
from gateway.schemas import (
    ClientId,
    ClientIn,
    ClientOut,
    ClientPage,
    ClientPatch,
    ClientStatus,
    MemberList,
    MemberOut,
    ShredIn,
    ShredOut,
    UserId,
    WireJSON,
    client_json,
    number,
    page_json,
    to_fields,
)
from gateway.strict_json import StrictJsonRoute

router = APIRouter(prefix="/clients", tags=["clients"], route_class=StrictJsonRoute)
PageNumber = Annotated[int, Query(ge=1, le=fields.PAGE_MAX, description="1-based page number.")]
# Said in the OpenAPI document; the service refuses control characters (and names the field).
SEARCH = {"pattern": fields.NO_CONTROL}
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=fields.PAGE_SIZE_MAX, description="Items per page.")]
Search = Annotated[str, Query(max_length=fields.SEARCH_MAX, json_schema_extra=SEARCH, description="Search term.")]


@operation(router.get, "", "Clients/ListClients", response_model=ClientPage, errors=(422,))
async def list_clients(
    call: Call, q: Search = "", status: ClientStatus | None = None, page: PageNumber = 1, page_size: PageSize = 20
) -> WireJSON:
    """List live clients, newest first.

    `q` matches a case-insensitive substring of name or company (% and _ match themselves); archived
    clients are left out, unless `status=archived`: then only archived clients (admin only, 403 otherwise: the
    clients service checks the operation `Clients/ListArchivedClients`). With CLIENTVAULT_CLIENT_SCOPING=on a
    non-admin lists only the clients they are a member of, and `total` counts only those."""
    if status is ClientStatus.ARCHIVED:
        archived = pb.ListClientsRequest(q=q, page=page, page_size=page_size)
        return WireJSON(page_json(await call.clients.ListArchivedClients(archived), client_json))
    status_number = number(pb.ClientStatus.DESCRIPTOR, status)
    request = pb.ListClientsRequest(q=q, status=status_number, page=page, page_size=page_size)
    return WireJSON(page_json(await call.clients.ListClients(request), client_json))


@operation(router.post, "", "Clients/CreateClient", status_code=201, errors=(422,), openapi_extra=with_etag(201))
async def create_client(
    body: ClientIn, call: Call, response: Response, idempotency_key: IdempotencyKey = None
) -> ClientOut:
    """Create a client.

    The caller becomes its owner; status defaults to active. With an `Idempotency-Key`, a retry answers the
    first response again and creates nothing (another body under the same key: 422). The ETag is its revision."""
    client, _ = to_fields(body, pb.ClientFields())
    request = pb.CreateClientRequest(client=client, idempotency_key=idempotency_key or "")
    return _tagged(response, await call.clients.CreateClient(request))


@operation(router.get, "/{clientId}", "Clients/GetClient", errors=(404,), openapi_extra=with_etag(200))
async def get_client(client_id: ClientId, call: Call, response: Response) -> ClientOut:
    """A client, archived or not.

    With an `ETag`: send it back as `If-Match` on PATCH to change the client only if nobody changed it since."""
    return _tagged(response, await call.clients.GetClient(pb.GetClientRequest(client_id=client_id)))


@operation(
    router.patch, "/{clientId}", "Clients/UpdateClient", errors=(404, 409, 412, 422), openapi_extra=with_etag(200)
)
async def update_client(
    client_id: ClientId, body: ClientPatch, call: Call, response: Response, if_match_header: IfMatch = None
) -> ClientOut:
    """Change some fields of a client.

    An archived client cannot change (409). With `If-Match`, only if the client still has that ETag (412
    otherwise, and nothing changes); the answer carries the new ETag. Only an admin changes
    `revealReasonRequired` (403 otherwise, and nothing changes)."""
    client, sent = to_fields(body, pb.ClientFields())
    assert call.caller is not None  # not a public operation
    if refused := policy.field_refusal("Clients/UpdateClient", sent, call.caller.role):
        raise Forbidden(refused)  # the clients service refuses it too (a direct call)
    request = pb.UpdateClientRequest(
        client_id=client_id,
        client=client,
        update_mask=FieldMask(paths=sent),
        if_match_revisions=if_match(if_match_header),
    )
    return _tagged(response, await call.clients.UpdateClient(request))


def _tagged(response: Response, client: pb.Client) -> ClientOut:
    tagged(response, client.revision)
    return ClientOut.from_proto(client)


@operation(router.post, "/{clientId}/archive", "Clients/ArchiveClient", status_code=204, errors=(404,))
async def archive_client(client_id: ClientId, call: Call) -> Response:
    """Archive a client.

    Idempotent: archiving again keeps the first archivedAt."""
    await call.clients.ArchiveClient(pb.ArchiveClientRequest(client_id=client_id))
    return Response(status_code=204)


@operation(router.post, "/{clientId}/unarchive", "Clients/UnarchiveClient", errors=(404,))
async def unarchive_client(client_id: ClientId, call: Call) -> ClientOut:
    """Make an archived client live again.

    Its status becomes active; its tasks and credentials can change again. Idempotent: a live client is
    answered as it is. A shredded client's credentials stay gone."""
    return ClientOut.from_proto(await call.clients.UnarchiveClient(pb.UnarchiveClientRequest(client_id=client_id)))


@operation(router.get, "/{clientId}/members", "Clients/ListMembers", errors=(404,))
async def list_members(client_id: ClientId, call: Call) -> MemberList:
    """List the staff assigned to a client.

    For an admin, or (with CLIENTVAULT_CLIENT_SCOPING=on) a member of the client; anyone else gets 404."""
    reply = await call.clients.ListMembers(pb.ListMembersRequest(client_id=client_id))
    return MemberList(items=[MemberOut.from_proto(member) for member in reply.items])


@operation(router.put, "/{clientId}/members/{userId}", "Clients/PutMember", errors=(404, 422))
async def put_member(client_id: ClientId, user_id: UserId, call: Call) -> MemberOut:
    """Assign a staff user to a client.

    Idempotent: assigning again keeps when they were first added. 422 when the user does not exist. With
    CLIENTVAULT_CLIENT_SCOPING=on, a member sees the client, its tasks and credentials."""
    reply = await call.clients.PutMember(pb.PutMemberRequest(client_id=client_id, user_id=user_id))
    return MemberOut.from_proto(reply)


@operation(router.delete, "/{clientId}/members/{userId}", "Clients/RemoveMember", status_code=204, errors=(404,))
async def remove_member(client_id: ClientId, user_id: UserId, call: Call) -> Response:
    """Unassign a staff user from a client.

    With CLIENTVAULT_CLIENT_SCOPING=on they no longer see it (the vault forgets its cached answer at once).
    404 when they were not a member."""
    await call.clients.RemoveMember(pb.RemoveMemberRequest(client_id=client_id, user_id=user_id))
    return Response(status_code=204)


@operation(router.post, "/{clientId}/shred", "Vault/ShredClient", errors=(404, 409, 410, 422))
async def shred_client(client_id: ClientId, body: ShredIn, call: Call) -> ShredOut:
    """Crypto-shred an archived client's secrets.

    Destroys the client's data keys and every sealed secret and old version of it (the trash's too) in one
    transaction, and writes one `client_shredded` audit entry (its `detail` counts what was destroyed).
    From then on the client's credentials answer 410. 409 when the client is not archived or `confirmName` is
    not its name; 410 when it was shredded already. What backups still hold: docs/lifecycle.md."""
    request = vault_pb2.ShredClientRequest(client_id=client_id, confirm_name=body.confirm_name)
    return ShredOut.from_proto(await call.vault.ShredClient(request))
