"""The clients service's gRPC transport: proto in, domain call, proto out. Errors are mapped by the edge."""

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import grpc
from google.protobuf.message import Message

from clientvault import idempotency, rpc
from clientvault.convert import enum_name, enum_number, timestamp
from clientvault.db import Database
from clientvault.errors import Invalid, Unavailable
from clientvault.events import EventSigner
from clientvault.idempotency import Replay
from clientvault.ids import canonical_id, parse_id
from clientvault.outbox import Relay
from clientvault.revocation import Revoker
from clientvault.service import Service
from clientvault.settings import ClientsSettings
from clientvault.v1 import auth_pb2, auth_pb2_grpc, clients_pb2_grpc
from clientvault.v1 import clients_pb2 as pb
from services.clients import clients, grants, members, store, tasks
from services.clients.clients import Client, Scope
from services.clients.grants import AccessRequest
from services.clients.members import AccessChanged, Member
from services.clients.rules import Page
from services.clients.tasks import Task

CLIENTS = pb.DESCRIPTOR.services_by_name["Clients"]
PRODUCER = "clients"  # of its audit events (clientvault/events.py PRODUCER_OF)
MIGRATIONS = Path(__file__).with_name("migrations")  # the schema is at their head before it serves
CLIENT_STATUS, TASK_STATUS = pb.ClientStatus.DESCRIPTOR, pb.TaskStatus.DESCRIPTOR
TASK_PRIORITY = pb.TaskPriority.DESCRIPTOR
REQUEST_STATUS = pb.AccessRequestStatus.DESCRIPTOR


def client_to_proto(client: Client) -> pb.Client:
    message = pb.Client(
        id=str(client.id),
        name=client.name,
        company=client.company,
        email=client.email,
        phone=client.phone,
        status=enum_number(CLIENT_STATUS, client.status),
        notes=client.notes,
        owner_user_id=str(client.owner_user_id),
        created_at=timestamp(client.created_at),
        updated_at=timestamp(client.updated_at),
        revision=client.revision,
        reveal_reason_required=client.reveal_reason_required,
    )
    if client.archived_at is not None:
        message.archived_at.CopyFrom(timestamp(client.archived_at))
    if client.access_grant_id is not None and client.access_expires_at is not None:
        message.access_grant_id = str(client.access_grant_id)
        message.access_expires_at.CopyFrom(timestamp(client.access_expires_at))
    return message


def access_request_to_proto(request: AccessRequest, now: datetime) -> pb.AccessRequest:
    message = pb.AccessRequest(
        id=str(request.id),
        status=enum_number(REQUEST_STATUS, request.status),
        client_id=str(request.client_id),
        user_id=str(request.user_id),
        reason=request.reason,
        ticket_ref=request.ticket_ref,
        minutes=request.minutes,
        break_glass=request.break_glass,
        created_at=timestamp(request.created_at),
        decided_by_user_id=_text(request.decided_by_user_id),
        revoked_by_user_id=_text(request.revoked_by_user_id),
        active=request.active(now),
    )
    for name in ("decided_at", "expires_at", "revoked_at"):
        if (value := getattr(request, name)) is not None:
            getattr(message, name).CopyFrom(timestamp(value))
    return message


def _text(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def member_to_proto(member: Member) -> pb.ClientMember:
    return pb.ClientMember(
        client_id=str(member.client_id),
        user_id=str(member.user_id),
        added_at=timestamp(member.added_at),
        added_by_user_id=str(member.added_by_user_id),
    )


def page_to_proto(page: Page[Client]) -> pb.ListClientsResponse:
    return pb.ListClientsResponse(
        items=[client_to_proto(c) for c in page.items], total=page.total, page=page.page, page_size=page.page_size
    )


def task_to_proto(task: Task) -> pb.Task:
    message = pb.Task(
        id=str(task.id),
        client_id=str(task.client_id),
        title=task.title,
        description=task.description,
        status=enum_number(TASK_STATUS, task.status),
        priority=enum_number(TASK_PRIORITY, task.priority),
        due_date=task.due_date.isoformat() if task.due_date else None,
        assignee_user_id=str(task.assignee_user_id) if task.assignee_user_id else None,
        created_by_user_id=str(task.created_by_user_id),
        created_at=timestamp(task.created_at),
        updated_at=timestamp(task.updated_at),
        revision=task.revision,
    )
    if task.completed_at is not None:
        message.completed_at.CopyFrom(timestamp(task.completed_at))
    return message


def fields_of(message: Message, names: list[str]) -> dict[str, Any]:
    """The named fields of a ClientFields/TaskFields message: unset optional -> None, enums -> names,
    an unspecified enum -> None (the rules then say what is missing)."""
    values: dict[str, Any] = {}
    descriptor = message.DESCRIPTOR
    for name in names:
        field = descriptor.fields_by_name.get(name)
        if field is None:
            raise Invalid(f"unknown field {name}", name)
        if field.has_presence and not message.HasField(name):
            values[name] = None
        elif field.enum_type is not None:
            values[name] = enum_name(field.enum_type, getattr(message, name))
        else:
            values[name] = getattr(message, name)
    return values


def given(message: Message) -> list[str]:
    """For a create: every field the caller set (an unspecified enum or unset optional is left out)."""
    return [field.name for field, _ in message.ListFields()]


def _encode_client(client: Client) -> bytes:
    return client_to_proto(client).SerializeToString()


def _encode_task(task: Task) -> bytes:
    return task_to_proto(task).SerializeToString()


class ClientsServicer(clients_pb2_grpc.ClientsServicer):
    def __init__(
        self,
        db: Database,
        auth: auth_pb2_grpc.AuthStub,
        timeout_s: float,
        *,
        scoping: bool = False,
        access_changed: AccessChanged,
        outbox_written: Callable[[], None] = lambda: None,
        grant_max_minutes: int = 480,
        break_glass: bool = False,
    ) -> None:
        self._db = db
        self._auth = auth
        self._timeout_s = timeout_s
        self._scoping = scoping
        self._grant_max_minutes = grant_max_minutes
        self._break_glass = break_glass
        self._outbox_written = outbox_written
        self._changes = members.Changes(access_changed, outbox_written)

    def _scope(self) -> Scope:
        """What the caller of the RPC being served may see (CLIENTVAULT_CLIENT_SCOPING)."""
        return clients.scope_of(rpc.current_caller(), self._scoping)

    async def _user_exists(self, user_id: UUID) -> bool:
        try:
            reply = await self._auth.GetUsers(
                auth_pb2.GetUsersRequest(ids=[str(user_id)]),
                metadata=rpc.onward_metadata(),
                timeout=rpc.onward_timeout(self._timeout_s),
            )
        except grpc.aio.AioRpcError as error:
            raise Unavailable("the auth service is unavailable") from error
        return any(user.id == str(user_id) for user in reply.users)

    async def ListClients(self, request: pb.ListClientsRequest, context: Any) -> pb.ListClientsResponse:
        status = enum_name(CLIENT_STATUS, request.status)
        page = await clients.list_clients(
            self._db,
            term=request.q,
            status=status,
            page=request.page or 1,
            page_size=request.page_size or 20,
            scope=self._scope(),
        )
        return page_to_proto(page)

    async def ListArchivedClients(self, request: pb.ListClientsRequest, context: Any) -> pb.ListClientsResponse:
        page = await clients.list_clients(
            self._db,
            term=request.q,
            status=None,
            page=request.page or 1,
            page_size=request.page_size or 20,
            archived=True,
            scope=self._scope(),
        )
        return page_to_proto(page)

    async def UnarchiveClient(self, request: pb.UnarchiveClientRequest, context: Any) -> pb.Client:
        client_id = parse_id(request.client_id, "client")
        unarchived = await clients.unarchive_client(
            self._db, rpc.current_caller(), rpc.current_request(), client_id, self._outbox_written
        )
        return client_to_proto(unarchived)

    async def ListMembers(self, request: pb.ListMembersRequest, context: Any) -> pb.ListMembersResponse:
        found = await members.list_members(self._db, parse_id(request.client_id, "client"), self._scope())
        return pb.ListMembersResponse(items=[member_to_proto(member) for member in found])

    async def PutMember(self, request: pb.PutMemberRequest, context: Any) -> pb.ClientMember:
        client_id = parse_id(request.client_id, "client")
        user_id = canonical_id(request.user_id)
        if user_id is None:
            raise Invalid("userId is not a user", "user_id")
        member, _ = await members.put_member(
            self._db, rpc.current_caller(), rpc.current_request(), client_id, user_id, self._user_exists, self._changes
        )
        return member_to_proto(member)

    async def RemoveMember(self, request: pb.RemoveMemberRequest, context: Any) -> pb.RemoveMemberResponse:
        client_id, user_id = parse_id(request.client_id, "client"), parse_id(request.user_id, "user")
        await members.remove_member(
            self._db, rpc.current_caller(), rpc.current_request(), client_id, user_id, self._changes
        )
        return pb.RemoveMemberResponse()

    async def CreateClient(self, request: pb.CreateClientRequest, context: Any) -> pb.Client:
        values = fields_of(request.client, given(request.client))
        caller = rpc.current_caller()
        once = idempotency.once(
            caller.user_id, request.idempotency_key, "Clients/CreateClient", request, _encode_client
        )
        made = await clients.create_client(self._db, caller, values, once)
        return pb.Client.FromString(made.response) if isinstance(made, Replay) else client_to_proto(made)

    async def GetClient(self, request: pb.GetClientRequest, context: Any) -> pb.Client:
        return client_to_proto(await clients.get_client(self._db, parse_id(request.client_id, "client"), self._scope()))

    async def GetClients(self, request: pb.GetClientsRequest, context: Any) -> pb.GetClientsResponse:
        ids = [client_id for text in request.ids if (client_id := canonical_id(text)) is not None]
        found = await clients.get_clients(self._db, ids, self._scope()) if ids else []
        return pb.GetClientsResponse(clients=[client_to_proto(client) for client in found])

    async def UpdateClient(self, request: pb.UpdateClientRequest, context: Any) -> pb.Client:
        client_id = parse_id(request.client_id, "client")
        changes = fields_of(request.client, list(request.update_mask.paths))
        if_revision = list(request.if_match_revisions)
        updated = await clients.update_client(
            self._db,
            rpc.current_caller(),
            client_id,
            changes,
            lambda changed: self._changes.access_changed(changed, None),
            rpc.current_request(),
            self._outbox_written,
            if_revision,
            self._scope(),
        )
        return client_to_proto(updated)

    async def ArchiveClient(self, request: pb.ArchiveClientRequest, context: Any) -> pb.ArchiveClientResponse:
        client_id = parse_id(request.client_id, "client")
        await clients.archive_client(
            self._db, rpc.current_caller(), rpc.current_request(), client_id, self._outbox_written
        )
        return pb.ArchiveClientResponse()

    async def RequestAccess(self, request: pb.RequestAccessRequest, context: Any) -> pb.AccessRequest:
        made = await grants.request_access(
            self._db,
            rpc.current_caller(),
            rpc.current_request(),
            parse_id(request.client_id, "client"),
            reason=request.reason,
            ticket_ref=request.ticket_ref if request.HasField("ticket_ref") else None,
            minutes=request.minutes,
            max_minutes=self._grant_max_minutes,
            changes=self._changes,
        )
        return access_request_to_proto(made, datetime.now(UTC))

    async def ListAccessRequests(
        self, request: pb.ListAccessRequestsRequest, context: Any
    ) -> pb.ListAccessRequestsResponse:
        page = await grants.list_access_requests(
            self._db,
            rpc.current_caller(),
            status=enum_name(REQUEST_STATUS, request.status),
            page=request.page or 1,
            page_size=request.page_size or 20,
        )
        now = datetime.now(UTC)
        return pb.ListAccessRequestsResponse(
            items=[access_request_to_proto(item, now) for item in page.items],
            total=page.total,
            page=page.page,
            page_size=page.page_size,
        )

    async def ApproveAccessRequest(self, request: pb.DecideAccessRequest, context: Any) -> pb.AccessRequest:
        approved = await grants.approve(
            self._db,
            rpc.current_caller(),
            rpc.current_request(),
            parse_id(request.request_id, "access request"),
            max_minutes=self._grant_max_minutes,
            changes=self._changes,
        )
        return access_request_to_proto(approved, datetime.now(UTC))

    async def DenyAccessRequest(self, request: pb.DecideAccessRequest, context: Any) -> pb.AccessRequest:
        request_id = parse_id(request.request_id, "access request")
        denied = await grants.deny(self._db, rpc.current_caller(), rpc.current_request(), request_id, self._changes)
        return access_request_to_proto(denied, datetime.now(UTC))

    async def RevokeGrant(self, request: pb.RevokeGrantRequest, context: Any) -> pb.RevokeGrantResponse:
        grant_id = parse_id(request.grant_id, "grant")
        await grants.revoke(self._db, rpc.current_caller(), rpc.current_request(), grant_id, self._changes)
        return pb.RevokeGrantResponse()

    async def BreakGlass(self, request: pb.BreakGlassRequest, context: Any) -> pb.AccessRequest:
        granted = await grants.break_glass(
            self._db,
            rpc.current_caller(),
            rpc.current_request(),
            parse_id(request.client_id, "client"),
            reason=request.reason,
            enabled=self._break_glass,
            changes=self._changes,
        )
        return access_request_to_proto(granted, datetime.now(UTC))

    async def ListTasks(self, request: pb.ListTasksRequest, context: Any) -> pb.ListTasksResponse:
        page = await tasks.list_tasks(
            self._db,
            parse_id(request.client_id, "client"),
            status=enum_name(TASK_STATUS, request.status),
            page=request.page or 1,
            page_size=request.page_size or 20,
            scope=self._scope(),
        )
        return pb.ListTasksResponse(
            items=[task_to_proto(t) for t in page.items], total=page.total, page=page.page, page_size=page.page_size
        )

    async def CreateTask(self, request: pb.CreateTaskRequest, context: Any) -> pb.Task:
        client_id = parse_id(request.client_id, "client")
        values = fields_of(request.task, given(request.task))
        caller = rpc.current_caller()
        once = idempotency.once(caller.user_id, request.idempotency_key, "Clients/CreateTask", request, _encode_task)
        made = await tasks.create_task(
            self._db,
            caller,
            client_id,
            values,
            self._user_exists,
            once,
            self._scope(),
            origin_key=request.origin_key,
            assign_to_owner=request.assign_to_owner,
        )
        return pb.Task.FromString(made.response) if isinstance(made, Replay) else task_to_proto(made)

    async def GetTask(self, request: pb.GetTaskRequest, context: Any) -> pb.Task:
        client_id, task_id = parse_id(request.client_id, "client"), parse_id(request.task_id, "task")
        return task_to_proto(await tasks.get_task(self._db, client_id, task_id, self._scope()))

    async def UpdateTask(self, request: pb.UpdateTaskRequest, context: Any) -> pb.Task:
        client_id, task_id = parse_id(request.client_id, "client"), parse_id(request.task_id, "task")
        changes = fields_of(request.task, list(request.update_mask.paths))
        if_revision = list(request.if_match_revisions)
        task = await tasks.update_task(
            self._db, client_id, task_id, changes, self._user_exists, if_revision, self._scope()
        )
        return task_to_proto(task)

    async def DeleteTask(self, request: pb.DeleteTaskRequest, context: Any) -> pb.DeleteTaskResponse:
        client_id, task_id = parse_id(request.client_id, "client"), parse_id(request.task_id, "task")
        await tasks.delete_task(self._db, client_id, task_id, self._scope())
        return pb.DeleteTaskResponse()


async def main(settings: ClientsSettings) -> None:
    signer = EventSigner.from_setting(PRODUCER, settings.event_signing_key)
    async with Service("clients", settings, MIGRATIONS) as service:
        revoker = Revoker(settings.require_nats_url())  # announces access changes (services/clients/members.py)
        service.on_close(revoker.close)
        relay = Relay.of(service.db, store.outbox, signer, settings)  # its audit events (services/clients/audit.py)
        service.on_close(relay.close)
        servicer = ClientsServicer(
            service.db,
            auth_pb2_grpc.AuthStub(service.channel("auth")),
            settings.rpc_timeout_s,
            scoping=settings.client_scoping,
            access_changed=revoker.access_changed,
            outbox_written=relay.wake,
            grant_max_minutes=settings.grant_max_minutes,
            break_glass=settings.break_glass,
        )
        # Records the end of expired grants (their events, and the vault's cache told): services/clients/grants.py
        sweep = grants.end_expired_forever(
            service.db, members.Changes(revoker.access_changed, relay.wake), settings.grant_sweep_interval_s
        )
        await service.serve(
            clients_pb2_grpc.add_ClientsServicer_to_server,
            servicer,
            CLIENTS,
            relay.run(),
            relay.purge_forever(),
            sweep,
        )
