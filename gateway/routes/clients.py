"""Client companies: validate, call the clients service, shape the reply. No rules here."""

from typing import Annotated

from fastapi import APIRouter, Query, Response
from google.protobuf.field_mask_pb2 import FieldMask

from clientvault import fields
from clientvault.convert import enum_number
from clientvault.v1 import clients_pb2 as pb
from gateway.calls import Call, StubsDep, requires, roles
from gateway.errors import documented
from gateway.schemas import ClientIn, ClientOut, ClientPatch, ClientStatus, Page, to_fields

router = APIRouter(prefix="/clients", tags=["clients"])
PageNumber = Annotated[int, Query(ge=1, le=fields.PAGE_MAX, description="1-based page number.")]
# Said in the OpenAPI document; the service refuses control characters (and names the field).
SEARCH = {"pattern": fields.NO_CONTROL}
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=fields.PAGE_SIZE_MAX, description="Items per page.")]


@router.get(
    "",
    response_model=Page[ClientOut],
    summary="List live clients, newest first",
    description=roles("Clients/ListClients") + " `q` matches a case-insensitive substring of name or company "
    "(% and _ match themselves); archived clients are left out.",
    responses=documented(401, 422),
)
async def list_clients(
    stubs: StubsDep,
    call: Call = requires("Clients/ListClients"),
    q: Annotated[str, Query(max_length=fields.SEARCH_MAX, json_schema_extra=SEARCH, description="Search term.")] = "",
    status: ClientStatus | None = None,
    page: PageNumber = 1,
    page_size: PageSize = 20,
) -> Page[ClientOut]:
    request = pb.ListClientsRequest(q=q, page=page, page_size=page_size)
    if status is not None:
        request.status = enum_number(pb.ClientStatus.DESCRIPTOR, status)
    reply = await stubs.clients.ListClients(request, metadata=call.metadata, timeout=call.timeout)
    return Page[ClientOut].of(reply, ClientOut.from_proto)


@router.post(
    "",
    status_code=201,
    response_model=ClientOut,
    summary="Create a client",
    description=roles("Clients/CreateClient") + " The caller becomes its owner; status defaults to active.",
    responses=documented(401, 403, 422),
)
async def create_client(body: ClientIn, stubs: StubsDep, call: Call = requires("Clients/CreateClient")) -> ClientOut:
    client, _ = to_fields(body, pb.ClientFields())
    reply = await stubs.clients.CreateClient(
        pb.CreateClientRequest(client=client), metadata=call.metadata, timeout=call.timeout
    )
    return ClientOut.from_proto(reply)


@router.get(
    "/{client_id}",
    response_model=ClientOut,
    summary="A client, archived or not",
    description=roles("Clients/GetClient"),
    responses=documented(401, 404),
)
async def get_client(client_id: str, stubs: StubsDep, call: Call = requires("Clients/GetClient")) -> ClientOut:
    reply = await stubs.clients.GetClient(
        pb.GetClientRequest(client_id=client_id), metadata=call.metadata, timeout=call.timeout
    )
    return ClientOut.from_proto(reply)


@router.patch(
    "/{client_id}",
    response_model=ClientOut,
    summary="Change some fields of a client",
    description=roles("Clients/UpdateClient") + " An archived client cannot change (409).",
    responses=documented(401, 403, 404, 409, 422),
)
async def update_client(
    client_id: str, body: ClientPatch, stubs: StubsDep, call: Call = requires("Clients/UpdateClient")
) -> ClientOut:
    client, sent = to_fields(body, pb.ClientFields())
    request = pb.UpdateClientRequest(client_id=client_id, client=client, update_mask=FieldMask(paths=sent))
    return ClientOut.from_proto(await stubs.clients.UpdateClient(request, metadata=call.metadata, timeout=call.timeout))


@router.post(
    "/{client_id}/archive",
    status_code=204,
    summary="Archive a client",
    description=roles("Clients/ArchiveClient") + " Idempotent: archiving again keeps the first archivedAt.",
    responses=documented(401, 403, 404),
)
async def archive_client(client_id: str, stubs: StubsDep, call: Call = requires("Clients/ArchiveClient")) -> Response:
    await stubs.clients.ArchiveClient(
        pb.ArchiveClientRequest(client_id=client_id), metadata=call.metadata, timeout=call.timeout
    )
    return Response(status_code=204)
