"""The vault service's gRPC transport: proto in, domain call, proto out. Errors are mapped by the edge."""

import sys
import time
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import grpc
from pydantic import SecretStr

from clientvault import idempotency, policy, rpc
from clientvault.context import Caller, RequestContext
from clientvault.convert import from_timestamp, timestamp
from clientvault.db import Database
from clientvault.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from clientvault.events import EventSigner, TrustedKeys
from clientvault.idempotency import Replay
from clientvault.ids import canonical_id, parse_id
from clientvault.logging import get_logger
from clientvault.outbox import Relay
from clientvault.service import Service
from clientvault.settings import VaultSettings
from clientvault.v1 import auth_pb2, auth_pb2_grpc, clients_pb2, clients_pb2_grpc, vault_pb2_grpc
from clientvault.v1 import vault_pb2 as pb
from services.vault import exposure, generator, store
from services.vault.access import Access, ClientAccess
from services.vault.backlog import Backlog
from services.vault.break_glass import BreakGlassEnds
from services.vault.credentials import (
    FIELDS,
    NEW_REVISION,
    ClientState,
    Credential,
    CredentialDraft,
    Credentials,
    Revealed,
    Version,
    reason_of,
)
from services.vault.crypto import DataKeys
from services.vault.keys import KeyFailure, KeyProvider, TransitKeys, provider_for
from services.vault.leavers import Leavers
from services.vault.limits import RevealLimiter
from services.vault.rotation import check_keys
from services.vault.rotation_work import RotationTask, RotationWork

log = get_logger(__name__)

VAULT = pb.DESCRIPTOR.services_by_name["Vault"]
PAGE_SIZE_DEFAULT = 50
PRODUCER = "vault"  # of its audit events (clientvault/events.py PRODUCER_OF)
MIGRATIONS = Path(__file__).with_name("migrations")
NULLABLE = frozenset(
    {"username", "url", "totp_secret", "notes"}
)  # named in an update and unset: cleared  # the schema is at their head before it serves


def credential_to_proto(credential: Credential) -> pb.Credential:
    message = pb.Credential(
        id=str(credential.id),
        client_id=str(credential.client_id),
        label=credential.label,
        username=credential.username,
        url=credential.url,
        created_at=timestamp(credential.created_at),
        updated_at=timestamp(credential.updated_at),
        secret_changed_at=timestamp(credential.secret_changed_at),
        revision=credential.revision,
        has_totp=credential.has_totp,
    )
    if credential.last_accessed_at is not None:
        message.last_accessed_at.CopyFrom(timestamp(credential.last_accessed_at))
    if credential.deleted_at is not None:
        message.deleted_at.CopyFrom(timestamp(credential.deleted_at))
    return message


def _optional(fields: pb.CredentialFields, name: str) -> str | None:
    return getattr(fields, name) if fields.HasField(name) else None  # type: ignore[arg-type]


def version_to_proto(version: Version) -> pb.CredentialVersion:
    return pb.CredentialVersion(
        version=version.version,
        created_at=timestamp(version.created_at),
        created_by_user_id=str(version.created_by_user_id),
    )


def revealed_to_proto(found: Revealed) -> pb.RevealedCredential:
    return pb.RevealedCredential(
        id=str(found.id),
        label=found.label,
        username=found.username,
        url=found.url,
        secret=found.secret,
        notes=found.notes,
    )


class ClientsDirectory:
    """Asks the clients service about a client, for the caller (their token is forwarded)."""

    def __init__(self, stub: clients_pb2_grpc.ClientsStub, timeout_s: float) -> None:
        self._stub = stub
        self._timeout_s = timeout_s

    async def lookup(self, client_id: UUID) -> ClientState:
        """The client's state, asked as the caller of the RPC being served (the same token and deadline)."""
        return (await self.describe(client_id))[0]

    async def describe(self, client_id: UUID) -> tuple[ClientState, str]:
        """The client's state and name, asked as the caller of the RPC being served."""
        client = await self._get(client_id)
        if client is None:
            return ClientState.UNKNOWN, ""
        return ClientState.ARCHIVED if client.HasField("archived_at") else ClientState.ACTIVE, client.name

    async def see(self, client_id: UUID) -> Access | None:
        """What the client requires of a reveal and the grant the caller sees it through (services/vault/access.py),
        asked as the caller of the RPC being served; None when it is not found for them."""
        client = await self._get(client_id)
        if client is None:
            return None
        return Access(
            reveal_reason_required=client.reveal_reason_required,
            grant_id=canonical_id(client.access_grant_id) if client.HasField("access_grant_id") else None,
            expires_at=from_timestamp(client.access_expires_at) if client.HasField("access_expires_at") else None,
        )

    async def _get(self, client_id: UUID) -> clients_pb2.Client | None:
        try:
            client: clients_pb2.Client = await self._stub.GetClient(
                clients_pb2.GetClientRequest(client_id=str(client_id)),
                metadata=rpc.onward_metadata(),
                timeout=rpc.onward_timeout(self._timeout_s),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise Unavailable("the clients service is unavailable") from None
        return client


class RotationTaskSink:
    """Creates rotation tasks (rotation_work.py) through Clients/CreateTask as the rotation-tasks identity: it signs in
    to auth with the identity's password (Auth/SignIn, public) and keeps the access token until shortly before it
    expires. That token's role may call Clients/CreateTask and nothing else (clientvault/policy.py)."""

    def __init__(
        self,
        auth: auth_pb2_grpc.AuthStub,
        clients: clients_pb2_grpc.ClientsStub,
        email: str,
        password: SecretStr,
        timeout_s: float,
    ) -> None:
        self._auth = auth
        self._clients = clients
        self._email = email
        self._password = password
        self._timeout_s = timeout_s
        self._token = ""
        self._renew_at = 0.0

    async def _signed_in(self) -> str:
        if self._token and time.monotonic() < self._renew_at:
            return self._token
        try:
            reply = await self._auth.SignIn(
                auth_pb2.SignInRequest(email=self._email, password=self._password.get_secret_value()),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise Forbidden(
                    f"the rotation-tasks identity {self._email} cannot sign in: {error.details()}"
                ) from None
            raise Unavailable("the auth service is unavailable") from None
        if not reply.HasField("tokens"):
            raise Forbidden(f"the rotation-tasks identity {self._email} has MFA on: turn it off (mfa-reset)")
        self._token = reply.tokens.access_token
        self._renew_at = time.monotonic() + max(reply.tokens.expires_in - 60, 0)
        return self._token

    async def create(self, task: RotationTask) -> None:
        request = clients_pb2.CreateTaskRequest(
            client_id=str(task.client_id),
            task=clients_pb2.TaskFields(
                title=task.title, description=task.description, priority=clients_pb2.TASK_PRIORITY_HIGH
            ),
            origin_key=task.origin_key,
            assign_to_owner=True,
        )
        for attempt in (1, 2):  # a token revoked or expired early: sign in once more
            metadata = (("authorization", f"Bearer {await self._signed_in()}"),)
            try:
                await self._clients.CreateTask(request, metadata=metadata, timeout=self._timeout_s)
                return
            except grpc.aio.AioRpcError as error:
                code = error.code()
                if code == grpc.StatusCode.UNAUTHENTICATED and attempt == 1:
                    self._token = ""
                    continue
                if code == grpc.StatusCode.NOT_FOUND:
                    raise NotFound(error.details() or "client not found") from None
                if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT):
                    raise Conflict(error.details() or "the task was refused") from None
                if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    raise Forbidden(
                        f"the clients service refused the rotation-tasks identity: {error.details()}"
                    ) from None
                raise Unavailable("the clients service is unavailable") from None


def rotation_work_of(settings: VaultSettings, service: Service) -> list[RotationWork]:
    """The rotation work that is configured (the identity's password, and the key of the producer each kind trusts:
    auth's for leavers, the clients service's for break-glass ends); each missing piece is said once, and the vault
    runs without that kind."""
    trusted = {entry.partition(":")[0] for entry in settings.event_public_keys}
    kinds = (("leavers", "auth", Leavers), ("break_glass", "clients", BreakGlassEnds))
    password = settings.rotation_tasks_password
    sink = (
        None
        if password is None
        else RotationTaskSink(
            auth_pb2_grpc.AuthStub(service.channel("auth")),
            clients_pb2_grpc.ClientsStub(service.channel("clients")),
            settings.rotation_tasks_email,
            password,
            settings.rpc_timeout_s,
        )
    )
    keys = TrustedKeys.from_setting(settings.event_public_keys) if trusted else None
    work: list[RotationWork] = []
    for kind, producer, consumer in kinds:
        missing = [] if sink is not None else ["CLIENTVAULT_ROTATION_TASKS_PASSWORD"]
        if producer not in trusted:
            missing.append(f"CLIENTVAULT_EVENT_PUBLIC_KEYS ({producer}'s key)")
        if sink is None or keys is None or missing:
            log.warning(f"{kind}.off", missing=missing, effect=f"no rotation tasks are made by {kind}")
            continue
        work.append(consumer(service.db, settings.require_nats_url(), keys, sink))
    return work


def _encode_created(credential_id: UUID) -> bytes:
    return pb.CreateCredentialResponse(id=str(credential_id), revision=NEW_REVISION).SerializeToString()


class VaultServicer(vault_pb2_grpc.VaultServicer):
    def __init__(self, db: Database, credentials: Credentials, clients: ClientsDirectory) -> None:
        self._db = db
        self._credentials = credentials
        self._clients = clients

    async def ListCredentials(
        self, request: pb.ListCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCredentialsResponse:
        client_id = parse_id(request.client_id, "client")
        found = await self._credentials.list_credentials(rpc.current_caller(), client_id, self._clients.lookup)
        return pb.ListCredentialsResponse(items=[credential_to_proto(c) for c in found])

    async def CreateCredential(
        self, request: pb.CreateCredentialRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCredentialResponse:
        fields = request.credential
        draft = CredentialDraft(
            fields.label,
            _optional(fields, "username"),
            _optional(fields, "url"),
            fields.secret,
            _optional(fields, "totp_secret"),
            _optional(fields, "notes"),
        )
        caller = rpc.current_caller()
        once = idempotency.once(
            caller.user_id, request.idempotency_key, "Vault/CreateCredential", request, _encode_created
        )
        made = await self._credentials.create_credential(
            caller, rpc.current_request(), parse_id(request.client_id, "client"), draft, self._clients.lookup, once
        )
        if isinstance(made, Replay):
            return pb.CreateCredentialResponse.FromString(made.response)
        return pb.CreateCredentialResponse(id=str(made), revision=NEW_REVISION)

    async def GetCredential(self, request: pb.GetCredentialRequest, context: grpc.aio.ServicerContext) -> pb.Credential:
        client_id = parse_id(request.client_id, "client")
        credential_id = parse_id(request.credential_id, "credential")
        return credential_to_proto(
            await self._credentials.get_credential(rpc.current_caller(), client_id, credential_id)
        )

    async def GeneratePassword(
        self, request: pb.GeneratePasswordRequest, context: grpc.aio.ServicerContext
    ) -> pb.GeneratePasswordResponse:
        made = generator.generate(
            length=request.length if request.HasField("length") else None,
            symbols=request.symbols if request.HasField("symbols") else None,
            words=request.words if request.HasField("words") else None,
        )
        return pb.GeneratePasswordResponse(password=made.password, entropy_bits=made.entropy_bits)

    async def RevealCredential(
        self, request: pb.RevealCredentialRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevealedCredential:
        client_id = parse_id(request.client_id, "client")
        credential_id = parse_id(request.credential_id, "credential")
        found = await self._credentials.reveal_credential(
            rpc.current_caller(),
            rpc.current_request(),
            client_id,
            credential_id,
            why=reason_of(request.reason, request.ticket_ref),
        )
        return revealed_to_proto(found)

    async def reveal_denied(
        self,
        caller: Caller,
        request: pb.RevealCredentialRequest | pb.GetCredentialTotpRequest,
        meta: RequestContext,
    ) -> None:
        """The policy refused `caller` a reveal or a TOTP code (clientvault/rpc.py): the vault records it."""
        await self._credentials.record_denied(
            caller,
            meta,
            canonical_id(request.client_id),
            canonical_id(request.credential_id),
            f"role {caller.role} may not reveal",
        )

    async def UpdateCredential(
        self, request: pb.UpdateCredentialRequest, context: grpc.aio.ServicerContext
    ) -> pb.Credential:
        client_id = parse_id(request.client_id, "client")
        credential_id = parse_id(request.credential_id, "credential")
        paths = list(request.update_mask.paths)
        if not paths:
            raise Invalid("name at least one field to change")
        if unknown := sorted(set(paths) - FIELDS):
            raise Invalid(f"cannot change {', '.join(unknown)}")
        fields = request.credential
        changes = {path: _optional(fields, path) if path in NULLABLE else getattr(fields, path) for path in paths}
        updated = await self._credentials.update_credential(
            rpc.current_caller(),
            rpc.current_request(),
            client_id,
            credential_id,
            changes,
            self._clients.lookup,
            list(request.if_match_revisions),
        )
        return credential_to_proto(updated)

    async def DeleteCredential(
        self, request: pb.DeleteCredentialRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteCredentialResponse:
        client_id = parse_id(request.client_id, "client")
        credential_id = parse_id(request.credential_id, "credential")
        await self._credentials.delete_credential(
            rpc.current_caller(), rpc.current_request(), client_id, credential_id, self._clients.lookup
        )
        return pb.DeleteCredentialResponse()

    async def ListDeletedCredentials(
        self, request: pb.ListCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCredentialsResponse:
        client_id = parse_id(request.client_id, "client")
        found = await self._credentials.list_credentials(
            rpc.current_caller(), client_id, self._clients.lookup, trashed=True
        )
        return pb.ListCredentialsResponse(items=[credential_to_proto(c) for c in found])

    async def RestoreCredential(
        self, request: pb.RestoreCredentialRequest, context: grpc.aio.ServicerContext
    ) -> pb.Credential:
        client_id = parse_id(request.client_id, "client")
        credential_id = parse_id(request.credential_id, "credential")
        restored = await self._credentials.restore_credential(
            rpc.current_caller(), rpc.current_request(), client_id, credential_id, self._clients.lookup
        )
        return credential_to_proto(restored)

    async def ListCredentialVersions(
        self, request: pb.ListCredentialVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCredentialVersionsResponse:
        client_id = parse_id(request.client_id, "client")
        credential_id = parse_id(request.credential_id, "credential")
        found = await self._credentials.list_versions(rpc.current_caller(), client_id, credential_id)
        return pb.ListCredentialVersionsResponse(items=[version_to_proto(v) for v in found])

    async def RevealCredentialVersion(
        self, request: pb.RevealCredentialVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevealedCredential:
        client_id = parse_id(request.client_id, "client")
        credential_id = parse_id(request.credential_id, "credential")
        found = await self._credentials.reveal_credential(
            rpc.current_caller(),
            rpc.current_request(),
            client_id,
            credential_id,
            request.version,
            reason_of(request.reason, request.ticket_ref),
        )
        return revealed_to_proto(found)

    async def RestoreCredentialVersion(
        self, request: pb.RestoreCredentialVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Credential:
        client_id = parse_id(request.client_id, "client")
        credential_id = parse_id(request.credential_id, "credential")
        restored = await self._credentials.restore_version(
            rpc.current_caller(),
            rpc.current_request(),
            client_id,
            credential_id,
            request.version,
            self._clients.lookup,
        )
        return credential_to_proto(restored)

    async def GetExposureReport(
        self, request: pb.GetExposureReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetExposureReportResponse:
        since = from_timestamp(request.since) if request.HasField("since") else None
        found = await exposure.exposure_report(
            self._db,
            parse_id(request.user_id, "user"),
            since,
            page=request.page or 1,
            page_size=request.page_size or PAGE_SIZE_DEFAULT,
        )
        return pb.GetExposureReportResponse(
            items=[
                pb.ExposedCredential(
                    credential_id=str(item.credential_id),
                    client_id=str(item.client_id),
                    label=item.label,
                    last_revealed_at=timestamp(item.last_revealed_at),
                    reveal_count=item.reveal_count,
                    secret_changed_at=timestamp(item.secret_changed_at),
                )
                for item in found.items
            ],
            total=found.total,
            page=found.page,
            page_size=found.page_size,
        )

    async def GetCredentialTotp(
        self, request: pb.GetCredentialTotpRequest, context: grpc.aio.ServicerContext
    ) -> pb.CredentialTotp:
        client_id = parse_id(request.client_id, "client")
        credential_id = parse_id(request.credential_id, "credential")
        code = await self._credentials.totp_code(
            rpc.current_caller(),
            rpc.current_request(),
            client_id,
            credential_id,
            reason_of(request.reason, request.ticket_ref),
        )
        return pb.CredentialTotp(code=code.code, period=code.period, expires_in=code.expires_in, digits=code.digits)

    async def ImportCredentials(
        self, request: pb.ImportCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ImportCredentialsResponse:
        done = await self._credentials.import_credentials(
            rpc.current_caller(),
            rpc.current_request(),
            parse_id(request.client_id, "client"),
            request.format,
            request.content,
            self._clients.lookup,
            dry_run=request.dry_run,
        )
        return pb.ImportCredentialsResponse(
            imported=done.imported,
            skipped=len(done.problems),
            problems=[pb.ImportProblem(row=p.row, message=p.message) for p in done.problems],
            dry_run=done.dry_run,
            ids=[str(i) for i in done.ids],
        )

    async def ExportCredentials(
        self, request: pb.ExportCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExportCredentialsResponse:
        content, exported = await self._credentials.export_credentials(
            rpc.current_caller(),
            rpc.current_request(),
            parse_id(request.client_id, "client"),
            request.recipient,
            self._clients.lookup,
        )
        return pb.ExportCredentialsResponse(content=content, exported=exported)

    async def ShredClient(
        self, request: pb.ShredClientRequest, context: grpc.aio.ServicerContext
    ) -> pb.ShredClientResponse:
        shredded = await self._credentials.shred_client(
            rpc.current_caller(),
            rpc.current_request(),
            parse_id(request.client_id, "client"),
            request.confirm_name,
            self._clients.describe,
        )
        return pb.ShredClientResponse(
            shredded_at=timestamp(shredded.shredded_at),
            credentials=shredded.credentials,
            versions=shredded.versions,
            data_keys=shredded.data_keys,
        )


async def open_keys(settings: VaultSettings, db: Database) -> KeyProvider:
    """The key provider, checked against the database: a missing or wrong key stops the process here."""
    try:
        provider = provider_for(settings)
        if isinstance(provider, TransitKeys):
            await provider.ensure_key()
        active = await check_keys(db, provider)
    except KeyFailure as error:
        log.error("keys.unusable", reason=str(error))
        print(f"vault: cannot start: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    log.info("keys.ready", provider=provider.name, active=active)
    return provider


async def main(settings: VaultSettings) -> None:
    signer = EventSigner.from_setting(PRODUCER, settings.event_signing_key)
    async with Service("vault", settings, MIGRATIONS) as service:
        relay = Relay.of(service.db, store.outbox, signer, settings)
        service.on_close(relay.close)
        backlog = Backlog(service.db, settings.require_nats_url())
        service.on_close(backlog.close)
        provider = await open_keys(settings, service.db)
        service.on_close(provider.close)
        keys = DataKeys(provider, settings.dek_cache_ttl_s)
        service.on_close(keys.clear)
        limiter = RevealLimiter(service.db, settings)
        directory = ClientsDirectory(clients_pb2_grpc.ClientsStub(service.channel("clients")), settings.rpc_timeout_s)
        access = ClientAccess(directory.see, scoping=settings.client_scoping, ttl_s=settings.client_access_cache_ttl_s)
        service.deny_list().on_access(access.changed)
        credentials = Credentials(
            service.db,
            keys,
            relay.wake,
            limiter,
            versions_kept=settings.secret_versions,
            require_access=access.require,
        )
        servicer = VaultServicer(service.db, credentials, directory)
        jobs = []
        for work in rotation_work_of(settings, service):
            service.on_close(work.close)
            jobs.append(work.run())
        await service.serve(
            vault_pb2_grpc.add_VaultServicer_to_server,
            servicer,
            VAULT,
            *jobs,
            relay.run(),
            relay.purge_forever(),
            limiter.purge_forever(),
            backlog.watch_forever(),
            credentials.purge_trash_forever(timedelta(days=settings.trash_days), settings.trash_purge_interval_s),
            on_forbidden=dict.fromkeys(policy.REFUSED_BY_SERVICE, servicer.reveal_denied),
        )
