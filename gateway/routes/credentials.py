"""A client's credentials: validate, call the vault, shape the reply. Reveals are never cached."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from clientvault.v1 import vault_pb2 as pb
from gateway.calls import Call, StubsDep, requires, roles
from gateway.errors import documented
from gateway.schemas import CreatedOut, CredentialIn, CredentialOut, CredentialPatch, RevealedOut, to_fields

router = APIRouter(prefix="/clients/{client_id}/credentials", tags=["credentials"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.get(
    "",
    response_model=list[CredentialOut],
    summary="Metadata of a client's credentials (never the secret)",
    description=roles("Vault/ListCredentials"),
    responses=documented(401, 404),
)
async def list_credentials(
    client_id: str, stubs: StubsDep, call: Call = requires("Vault/ListCredentials")
) -> list[CredentialOut]:
    reply = await stubs.vault.ListCredentials(
        pb.ListCredentialsRequest(client_id=client_id), metadata=call.metadata, timeout=call.timeout
    )
    return [CredentialOut.from_proto(item) for item in reply.items]


@router.post(
    "",
    status_code=201,
    response_model=CreatedOut,
    summary="Store a new credential, encrypted",
    description=roles("Vault/CreateCredential") + " Audited (`credential_create`). 409 when the client is archived.",
    responses=documented(401, 404, 409, 413, 422),
)
async def create_credential(
    client_id: str, body: CredentialIn, stubs: StubsDep, call: Call = requires("Vault/CreateCredential")
) -> CreatedOut:
    fields = pb.CredentialFields(label=body.label, username=body.username, url=body.url, secret=body.secret)
    reply = await stubs.vault.CreateCredential(
        pb.CreateCredentialRequest(client_id=client_id, credential=fields), metadata=call.metadata, timeout=call.timeout
    )
    return CreatedOut(id=reply.id)


@router.get(
    "/{credential_id}",
    response_model=RevealedOut,
    summary="Reveal a credential's secret",
    description=roles("Vault/RevealCredential") + " Audited (`credential_reveal`); answered only once the audit "
    "event is committed. Sets `lastAccessedAt`. `Cache-Control: no-store`. Limited per user and per client "
    "IP (429 with `Retry-After`).",
    responses=documented(401, 403, 404, 429),
)
async def reveal_credential(
    client_id: str, credential_id: str, stubs: StubsDep, call: Call = requires("Vault/RevealCredential")
) -> JSONResponse:
    found = await stubs.vault.RevealCredential(
        pb.RevealCredentialRequest(client_id=client_id, credential_id=credential_id),
        metadata=call.metadata,
        timeout=call.timeout,
    )
    body = {
        "id": found.id,
        "label": found.label,
        "username": found.username if found.HasField("username") else None,
        "url": found.url if found.HasField("url") else None,
        "secret": found.secret,
    }
    # The hot path: answered as is, without validating our own output again (RevealedOut documents it).
    return JSONResponse(body, headers=NO_STORE)


@router.patch(
    "/{credential_id}",
    response_model=CredentialOut,
    summary="Change a credential's label, username, url or secret",
    description=roles("Vault/UpdateCredential") + " Audited (`credential_update`).",
    responses=documented(401, 404, 413, 422),
)
async def update_credential(
    client_id: str,
    credential_id: str,
    body: CredentialPatch,
    stubs: StubsDep,
    call: Call = requires("Vault/UpdateCredential"),
) -> CredentialOut:
    credential, sent = to_fields(body, pb.CredentialFields())
    request = pb.UpdateCredentialRequest(client_id=client_id, credential_id=credential_id, credential=credential)
    request.update_mask.paths.extend(sent)
    reply = await stubs.vault.UpdateCredential(request, metadata=call.metadata, timeout=call.timeout)
    return CredentialOut.from_proto(reply)


@router.delete(
    "/{credential_id}",
    status_code=204,
    summary="Delete a credential",
    description=roles("Vault/DeleteCredential") + " Audited (`credential_delete`).",
    responses=documented(401, 403, 404),
)
async def delete_credential(
    client_id: str, credential_id: str, stubs: StubsDep, call: Call = requires("Vault/DeleteCredential")
) -> Response:
    await stubs.vault.DeleteCredential(
        pb.DeleteCredentialRequest(client_id=client_id, credential_id=credential_id),
        metadata=call.metadata,
        timeout=call.timeout,
    )
    return Response(status_code=204)
