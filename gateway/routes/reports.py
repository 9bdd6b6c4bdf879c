"""Reports: validate, call the vault, add what another service knows (client names), shape the reply."""

from typing import Annotated

from fastapi import APIRouter, Query

from clientvault.convert import timestamp
from clientvault.v1 import clients_pb2, vault_pb2
from gateway.calls import Call, operation
from gateway.routes.audit import Instant
from gateway.routes.clients import PageNumber, PageSize
from gateway.schemas import ExposedOut, ExposurePage, Id
from gateway.strict_json import StrictJsonRoute

router = APIRouter(prefix="/reports", tags=["reports"], route_class=StrictJsonRoute)


@operation(router.get, "/exposure", "Vault/GetExposureReport", errors=(422,))
async def get_exposure_report(
    call: Call,
    user_id: Annotated[Id, Query(alias="userId", description="Whose reveals.")],
    since: Annotated[
        Instant | None, Query(description="RFC 3339; last revealed at or after it. Default: ever.")
    ] = None,
    page: PageNumber = 1,
    page_size: PageSize = 50,
) -> ExposurePage:
    """Credentials a user revealed whose secret has not changed since.

    Every credential the user revealed (the current secret; an old version's reveal does not count) since `since`
    whose secret has not changed since their last reveal, most recently revealed first: what to rotate when they
    leave. A credential drops out once its secret changes. Credentials in the trash are listed too (deleting an
    entry changes no password); purged and shredded ones are gone. `clientName` is the client's name now. `total`
    is exact."""
    request = vault_pb2.GetExposureReportRequest(user_id=str(user_id), page=page, page_size=page_size)
    if since is not None:
        request.since.CopyFrom(timestamp(since))
    reply = await call.vault.GetExposureReport(request)
    names = await client_names(call, {item.client_id for item in reply.items})
    return ExposurePage(
        items=[ExposedOut.from_proto(item, names[item.client_id]) for item in reply.items],
        total=reply.total,
        page=reply.page,
        page_size=reply.page_size,
    )


async def client_names(call: Call, client_ids: set[str]) -> dict[str, str]:
    """Each client's name, asked of the clients service in one call (the vault does not own names); a client it
    does not know has the empty name."""
    if not client_ids:
        return {}
    reply = await call.clients.GetClients(clients_pb2.GetClientsRequest(ids=sorted(client_ids)))
    names = {client.id: client.name for client in reply.clients}
    return {client_id: names.get(client_id, "") for client_id in client_ids}
