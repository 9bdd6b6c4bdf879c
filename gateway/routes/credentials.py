"""A client's credentials: validate, call the vault, shape the reply. Reveals are never cached."""

import re
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from clientvault.v1 import vault_pb2 as pb
from gateway.calls import Call, operation
from gateway.conditions import IdempotencyKey, IfMatch, if_match, tagged, with_etag
from gateway.errors import problem
from gateway.schemas import (
    ClientId,
    CreatedOut,
    CredentialId,
    CredentialIn,
    CredentialOut,
    CredentialPatch,
    ExportIn,
    ImportFormat,
    ImportOut,
    ReasonQuery,
    RevealedOut,
    RevealIn,
    TicketRefQuery,
    TotpOut,
    VersionNumber,
    VersionOut,
    to_fields,
)
from gateway.strict_json import StrictJsonRoute

# 410 on every route: the client was crypto-shredded (POST /clients/{clientId}/shred), its credentials are gone.
router = APIRouter(prefix="/clients/{clientId}/credentials", tags=["credentials"], route_class=StrictJsonRoute)
# Import and export: paths of their own under the client (`…/credentials:import`, Google's custom-method style),
# so that no credential id can ever be taken for them.
bulk = APIRouter(prefix="/clients/{clientId}", tags=["credentials"], route_class=StrictJsonRoute)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
IMPORT_PATH = "/credentials:import"
IMPORT_FIELDS = frozenset({"file", "format"})
IMPORT_BODY = re.compile(r"/clients/[^/]+/credentials:import")  # the one path allowed a body over 1 MiB
MAX_IMPORT_BYTES = 10 * 1024 * 1024  # the file; the body may be a little more (the multipart framing)
BULK_TIMEOUT_S = 120.0  # an import or export of thousands of credentials takes longer than one call


@operation(router.get, "", "Vault/ListCredentials", errors=(403, 404, 410, 422))
async def list_credentials(
    client_id: ClientId,
    call: Call,
    deleted: Annotated[
        bool, Query(description="The trash instead (admin only: `Vault/ListDeletedCredentials`).")
    ] = False,
) -> list[CredentialOut]:
    """Metadata of a client's credentials (never the secret).

    With `deleted=true`, the client's trash (admin only, 403 otherwise: the vault checks the operation
    `Vault/ListDeletedCredentials`), each with `deletedAt`; they are purged `CLIENTVAULT_TRASH_DAYS` after."""
    request = pb.ListCredentialsRequest(client_id=client_id)
    reply = await (call.vault.ListDeletedCredentials if deleted else call.vault.ListCredentials)(request)
    return [CredentialOut.from_proto(item) for item in reply.items]


@operation(
    router.post,
    "",
    "Vault/CreateCredential",
    status_code=201,
    errors=(404, 409, 410, 413, 422),
    openapi_extra=with_etag(201),
)
async def create_credential(
    client_id: ClientId, body: CredentialIn, call: Call, response: Response, idempotency_key: IdempotencyKey = None
) -> CreatedOut:
    """Store a new credential, encrypted.

    Audited (`credential_create`). 409 when the client is archived. With an `Idempotency-Key`, a retry answers the
    first response again and creates nothing, with no second audit event (another body under the same key:
    422). The ETag is its revision."""
    fields = pb.CredentialFields(
        label=body.label,
        username=body.username,
        url=body.url,
        secret=body.secret,
        totp_secret=body.totp_secret,
        notes=body.notes,
    )
    request = pb.CreateCredentialRequest(client_id=client_id, credential=fields, idempotency_key=idempotency_key or "")
    reply = await call.vault.CreateCredential(request)
    tagged(response, reply.revision)
    return CreatedOut(id=reply.id)


@operation(
    router.get, "/{credentialId}", "Vault/RevealCredential", response_model=RevealedOut, errors=(404, 410, 428, 429)
)
async def reveal_credential(client_id: ClientId, credential_id: CredentialId, call: Call) -> JSONResponse:
    """Reveal a credential's secret.

    Audited (`credential_reveal`); answered only once the audit event is committed. Sets `lastAccessedAt`.
    `Cache-Control: no-store`. Limited per user and per client IP (429 with `Retry-After`). A client with
    `revealReasonRequired` answers 428: reveal with `POST .../credentials/{credentialId}/reveal` and a reason."""
    found = await call.vault.RevealCredential(
        pb.RevealCredentialRequest(client_id=client_id, credential_id=credential_id)
    )
    return revealed(found)


@operation(
    router.post,
    "/{credentialId}/reveal",
    "Vault/RevealCredential",
    operation_id="revealCredentialWithReason",
    response_model=RevealedOut,
    errors=(404, 410, 422, 428, 429),
)
async def reveal_credential_with_reason(
    client_id: ClientId, credential_id: CredentialId, call: Call, body: RevealIn | None = None
) -> JSONResponse:
    """Reveal a credential's secret, saying why.

    As `GET .../credentials/{credentialId}` (the same audit event, limits and `Cache-Control: no-store`), with an
    optional body `{reason, ticketRef}` kept in the audit entry's `detail` (`/audit-logs`). A client with
    `revealReasonRequired` answers 428 unless `reason` is given (not blank). 422 for a reason over 500 characters,
    a ticketRef over 100, or either with control characters."""
    why = body or RevealIn()
    request = pb.RevealCredentialRequest(
        client_id=client_id, credential_id=credential_id, reason=why.reason or "", ticket_ref=why.ticket_ref or ""
    )
    return revealed(await call.vault.RevealCredential(request))


def revealed(found: pb.RevealedCredential) -> JSONResponse:
    """A revealed secret, never cached. The hot path: answered as is, without validating our own output again
    (RevealedOut documents it)."""
    body = {
        "id": found.id,
        "label": found.label,
        "username": found.username if found.HasField("username") else None,
        "url": found.url if found.HasField("url") else None,
        "secret": found.secret,
        "notes": found.notes if found.HasField("notes") else None,
    }
    return JSONResponse(body, headers=NO_STORE)


@operation(
    router.get, "/{credentialId}/metadata", "Vault/GetCredential", errors=(404, 410), openapi_extra=with_etag(200)
)
async def get_credential(
    client_id: ClientId, credential_id: CredentialId, call: Call, response: Response
) -> CredentialOut:
    """A credential's metadata (never the secret).

    Not audited, as the list is not. With an `ETag` (its revision; a reveal does not move it): send it back as
    `If-Match` on PATCH. (`GET .../credentials/{credentialId}` is the audited reveal.)"""
    found = await call.vault.GetCredential(pb.GetCredentialRequest(client_id=client_id, credential_id=credential_id))
    tagged(response, found.revision)
    return CredentialOut.from_proto(found)


@operation(
    router.patch,
    "/{credentialId}",
    "Vault/UpdateCredential",
    errors=(404, 410, 412, 413, 422),
    openapi_extra=with_etag(200),
)
async def update_credential(
    client_id: ClientId,
    credential_id: CredentialId,
    body: CredentialPatch,
    call: Call,
    response: Response,
    if_match_header: IfMatch = None,
) -> CredentialOut:
    """Change a credential's label, username, url, secret, TOTP seed or notes.

    Audited (`credential_update`). `totpSecret` or `notes` set to null removes them. With `If-Match`, only if the
    credential still has that ETag (412 otherwise: nothing changes and nothing is audited); the answer carries the
    new ETag."""
    credential, sent = to_fields(body, pb.CredentialFields())
    request = pb.UpdateCredentialRequest(
        client_id=client_id,
        credential_id=credential_id,
        credential=credential,
        if_match_revisions=if_match(if_match_header),
    )
    request.update_mask.paths.extend(sent)
    updated = await call.vault.UpdateCredential(request)
    tagged(response, updated.revision)
    return CredentialOut.from_proto(updated)


@operation(router.delete, "/{credentialId}", "Vault/DeleteCredential", status_code=204, errors=(404, 410))
async def delete_credential(client_id: ClientId, credential_id: CredentialId, call: Call) -> Response:
    """Move a credential to the trash.

    It no longer lists or reveals; an admin may restore it until it is purged `CLIENTVAULT_TRASH_DAYS` later
    (with its old versions; `credential_purge`, written by the vault). Audited (`credential_delete`)."""
    await call.vault.DeleteCredential(pb.DeleteCredentialRequest(client_id=client_id, credential_id=credential_id))
    return Response(status_code=204)


@operation(router.post, "/{credentialId}/restore", "Vault/RestoreCredential", errors=(404, 409, 410))
async def restore_credential(client_id: ClientId, credential_id: CredentialId, call: Call) -> CredentialOut:
    """Bring a credential back from the trash.

    As it was, with its secret and old versions. Audited (`credential_restore`). 404 when it is not in the
    trash; 409 when the client is archived."""
    request = pb.RestoreCredentialRequest(client_id=client_id, credential_id=credential_id)
    return CredentialOut.from_proto(await call.vault.RestoreCredential(request))


@operation(router.get, "/{credentialId}/versions", "Vault/ListCredentialVersions", errors=(404, 410))
async def list_credential_versions(client_id: ClientId, credential_id: CredentialId, call: Call) -> list[VersionOut]:
    """The old versions of a credential's secret, newest first (never a secret).

    An update of the secret keeps the one it replaces; the newest `CLIENTVAULT_SECRET_VERSIONS` are kept."""
    request = pb.ListCredentialVersionsRequest(client_id=client_id, credential_id=credential_id)
    return [VersionOut.from_proto(item) for item in (await call.vault.ListCredentialVersions(request)).items]


@operation(
    router.post,
    "/{credentialId}/versions/{version}/reveal",
    "Vault/RevealCredentialVersion",
    response_model=RevealedOut,
    errors=(404, 410, 422, 428, 429),
)
async def reveal_credential_version(
    client_id: ClientId, credential_id: CredentialId, version: VersionNumber, call: Call, body: RevealIn | None = None
) -> JSONResponse:
    """Reveal an old version of a credential's secret.

    Audited (`credential_version_reveal`; the entry's `detail` names the version, e.g. `{"version": 3}`, and the
    optional body's `reason` and `ticketRef`). `Cache-Control: no-store`. Counts against the reveal limits (429 with
    `Retry-After`). A client with `revealReasonRequired` answers 428 unless `reason` is given."""
    why = body or RevealIn()
    request = pb.RevealCredentialVersionRequest(
        client_id=client_id,
        credential_id=credential_id,
        version=version,
        reason=why.reason or "",
        ticket_ref=why.ticket_ref or "",
    )
    return revealed(await call.vault.RevealCredentialVersion(request))


@operation(
    router.post,
    "/{credentialId}/versions/{version}/restore",
    "Vault/RestoreCredentialVersion",
    errors=(404, 409, 410, 422),
)
async def restore_credential_version(
    client_id: ClientId, credential_id: CredentialId, version: VersionNumber, call: Call
) -> CredentialOut:
    """Make an old version the current secret again.

    The current secret becomes an old version in turn; `secretChangedAt` moves. Audited as an update
    (`credential_update`, its `detail` naming the version: `{"restored_version": 3}`). 409 when the client is
    archived."""
    request = pb.RestoreCredentialVersionRequest(client_id=client_id, credential_id=credential_id, version=version)
    return CredentialOut.from_proto(await call.vault.RestoreCredentialVersion(request))


@operation(
    router.get,
    "/{credentialId}/totp",
    "Vault/GetCredentialTotp",
    response_model=TotpOut,
    errors=(404, 410, 422, 428),
)
async def get_credential_totp(
    client_id: ClientId,
    credential_id: CredentialId,
    call: Call,
    reason: ReasonQuery = None,
    ticket_ref: TicketRefQuery = None,
) -> JSONResponse:
    """The current TOTP code of a credential's seed.

    RFC 6238 from the seed given as `totpSecret` (never answered itself). Audited (`credential_totp`, with `reason`
    and `ticketRef` in its `detail` when given); answered only once the audit event is committed.
    `Cache-Control: no-store`. 404 when the credential has no seed. Who may reveal may read codes (and needs MFA
    where a reveal does); a client with `revealReasonRequired` answers 428 unless `reason` is given."""
    found = await call.vault.GetCredentialTotp(
        pb.GetCredentialTotpRequest(
            client_id=client_id, credential_id=credential_id, reason=reason or "", ticket_ref=ticket_ref or ""
        )
    )
    body = TotpOut(code=found.code, period=found.period, expires_in=found.expires_in, digits=found.digits)
    return JSONResponse(body.model_dump(mode="json", by_alias=True), headers=NO_STORE)


@operation(
    bulk.post, IMPORT_PATH, "Vault/ImportCredentials", errors=(404, 409, 410, 413, 422), response_model=ImportOut
)
async def import_credentials(
    request: Request,
    client_id: ClientId,
    call: Call,
    file: Annotated[UploadFile, File(description="The export file, at most 10 MiB.")],
    format: Annotated[ImportFormat, Form(description="What wrote the file.")],
    dry_run: Annotated[bool, Query(alias="dryRun", description="Only check the file and report.")] = False,
) -> JSONResponse:
    """Import another tool's export file (multipart/form-data).

    Bitwarden's unencrypted JSON export, KeePass 2's XML export, or a CSV with a header row
    (docs/credential-tools.md). Every row is checked first; the good ones are written in one transaction, each
    audited as `credential_create` (its `detail` names the source and the row), or none is. A row that cannot be
    imported is skipped and reported by number (`problems`), never with its values. With `dryRun=true`
    nothing is written. 413 over 10 MiB; 409 when the client is archived."""
    if unknown := sorted(set((await request.form()).keys()) - IMPORT_FIELDS):
        return problem(
            422, "the request is not valid", errors=[{"field": name, "message": "unknown field"} for name in unknown]
        )
    content = await file.read(MAX_IMPORT_BYTES + 1)
    if len(content) > MAX_IMPORT_BYTES:
        return problem(413, "the file is over 10 MiB: split it")
    call.timeout = max(call.timeout, BULK_TIMEOUT_S)
    message = pb.ImportCredentialsRequest(client_id=client_id, format=format.value, content=content, dry_run=dry_run)
    reply = await call.vault.ImportCredentials(message)
    return JSONResponse(ImportOut.from_proto(reply).model_dump(mode="json", by_alias=True), headers=NO_STORE)


@operation(
    bulk.post,
    "/credentials:export",
    "Vault/ExportCredentials",
    errors=(404, 410, 422),
    response_class=Response,
    openapi_extra={
        "responses": {
            "200": {
                "description": "The age-encrypted file.",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
async def export_credentials(client_id: ClientId, body: ExportIn, call: Call) -> Response:
    """Export a client's credentials, encrypted with age.

    Every live credential, decrypted into Bitwarden's unencrypted JSON export shape (secrets, notes, TOTP seeds)
    and encrypted to `recipient`, an age public key: `age -d -i key.txt` opens it. One `credential_export` audit
    event per credential (its `detail` names the recipient), committed before anything is decrypted. The body is
    the binary age file (`application/octet-stream`); `X-Exported-Count` says how many credentials it holds."""
    call.timeout = max(call.timeout, BULK_TIMEOUT_S)
    reply = await call.vault.ExportCredentials(
        pb.ExportCredentialsRequest(client_id=client_id, recipient=body.recipient)
    )
    headers = {
        **NO_STORE,
        "Content-Disposition": 'attachment; filename="credentials.json.age"',
        "X-Exported-Count": str(reply.exported),
    }
    return Response(reply.content, media_type="application/octet-stream", headers=headers)
