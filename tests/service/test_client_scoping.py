"""Per-client access, service by service (CLIENTVAULT_CLIENT_SCOPING=on): the clients service and the vault refuse a
non-member's direct gRPC calls on their own, as if the client did not exist, and count only what a caller may see.

Here a clients service and a vault are served with scoping on (beside the tier's, which keep it off). Memberships are
written as the clients service writes them; the vault learns of a change as it does in production, through the
revocation bucket's `access.<client>.<user>` entry applied to its deny list.
"""

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from clientvault import rpc
from clientvault.db import Database
from clientvault.revocation import DenyList
from clientvault.settings import VaultSettings
from clientvault.v1 import clients_pb2 as pb
from clientvault.v1 import clients_pb2_grpc, vault_pb2, vault_pb2_grpc
from services.auth.users import User
from tests.service.conftest import VAULT_KEK, Register, Service, Tokens, service, unannounced


@dataclass
class Scoped:
    clients: Service
    vault: Service
    denylist: DenyList  # the vault's: a membership change reaches it as an `access.` entry of the bucket

    async def member(self, client_id: str, user: User) -> None:
        """Makes `user` a member (as PutMember writes it) and announces it as the clients service does."""
        await self.clients.sql(
            "INSERT INTO clients.client_members (client_id, user_id, added_at, added_by_user_id) "
            "VALUES (%s, %s, now(), %s)",
            UUID(client_id),
            user.id,
            user.id,
        )
        self.announce(client_id, user)

    async def unmember(self, client_id: str, user: User) -> None:
        await self.clients.sql(
            "DELETE FROM clients.client_members WHERE client_id = %s AND user_id = %s", UUID(client_id), user.id
        )
        self.announce(client_id, user)

    def announce(self, client_id: str, user: User) -> None:
        self.denylist.apply(f"access.{client_id}.{user.id}", json.dumps({"at": time.time()}).encode())


@pytest.fixture(scope="module")
async def scoped(database_url: str, tokens: Tokens) -> AsyncIterator[Scoped]:
    from services.clients.server import ClientsServicer
    from services.vault.access import ClientAccess
    from services.vault.credentials import Credentials
    from services.vault.crypto import DataKeys
    from services.vault.keys import EnvKeys
    from services.vault.limits import RevealLimiter
    from services.vault.rotation import check_keys
    from services.vault.server import ClientsDirectory, VaultServicer

    async with rpc.channel("127.0.0.1:9") as no_auth:

        def clients_build(db: Database) -> Register:
            servicer = ClientsServicer(db, no_auth_stub(no_auth), 5, scoping=True, access_changed=unannounced)
            return lambda server: clients_pb2_grpc.add_ClientsServicer_to_server(servicer, server)

        async with service(database_url, tokens, "clients", clients_pb2_grpc.ClientsStub, clients_build) as clients:
            keys = EnvKeys({"v1": bytearray(VAULT_KEK)}, "v1")
            settings = VaultSettings(reveal_user_max=1_000_000, reveal_ip_max=1_000_000)
            denylist = DenyList()
            async with rpc.channel(clients.address) as to_clients:
                directory = ClientsDirectory(clients_pb2_grpc.ClientsStub(to_clients), 5)
                access = ClientAccess(directory.see, scoping=True, ttl_s=3600)  # only a change drops an answer
                denylist.on_access(access.changed)

                def vault_build(db: Database) -> Register:
                    credentials = Credentials(
                        db, DataKeys(keys, 0), lambda: None, RevealLimiter(db, settings), require_access=access.require
                    )
                    servicer = VaultServicer(db, credentials, directory)
                    return lambda server: vault_pb2_grpc.add_VaultServicer_to_server(servicer, server)

                async with service(database_url, tokens, "vault", vault_pb2_grpc.VaultStub, vault_build) as vault:
                    await check_keys(vault.db, keys)
                    yield Scoped(clients, vault, denylist)


def no_auth_stub(channel: grpc.aio.Channel) -> Any:
    from clientvault.v1 import auth_pb2_grpc

    return auth_pb2_grpc.AuthStub(channel)


async def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    return refused.value.code()


async def acme(scoped: Scoped, name: str | None = None) -> tuple[pb.Client, str]:
    """A client made by an admin, with one credential: (client, credential id)."""
    admin = scoped.clients.tokens.metadata("admin")
    client = await scoped.clients.stub.CreateClient(
        pb.CreateClientRequest(client=pb.ClientFields(name=name or f"Acme {uuid.uuid4()}")), metadata=admin
    )
    made = await scoped.vault.stub.CreateCredential(
        vault_pb2.CreateCredentialRequest(
            client_id=client.id, credential=vault_pb2.CredentialFields(label="Router", secret="hunter2-router")
        ),
        metadata=admin,
    )
    return client, made.id


async def test_a_manager_who_is_not_a_member_finds_nothing_of_the_client_by_direct_grpc(scoped: Scoped) -> None:
    client, credential_id = await acme(scoped)
    outsider = scoped.clients.tokens.user("manager")
    as_outsider = scoped.clients.tokens.metadata(outsider)
    c, v = scoped.clients.stub, scoped.vault.stub
    task = await c.CreateTask(
        pb.CreateTaskRequest(client_id=client.id, task=pb.TaskFields(title="Renew TLS")),
        metadata=scoped.clients.tokens.metadata("admin"),
    )
    patch = pb.UpdateClientRequest(client_id=client.id, client=pb.ClientFields(name="Mine now"))
    patch.update_mask.CopyFrom(FieldMask(paths=["name"]))

    codes = [
        await code_of(c.GetClient(pb.GetClientRequest(client_id=client.id), metadata=as_outsider)),
        await code_of(c.UpdateClient(patch, metadata=as_outsider)),
        await code_of(c.ListTasks(pb.ListTasksRequest(client_id=client.id), metadata=as_outsider)),
        await code_of(
            c.CreateTask(pb.CreateTaskRequest(client_id=client.id, task=pb.TaskFields(title="x")), metadata=as_outsider)
        ),
        await code_of(
            c.UpdateTask(
                pb.UpdateTaskRequest(
                    client_id=client.id,
                    task_id=task.id,
                    task=pb.TaskFields(title="y"),
                    update_mask=FieldMask(paths=["title"]),
                ),
                metadata=as_outsider,
            )
        ),
        await code_of(c.DeleteTask(pb.DeleteTaskRequest(client_id=client.id, task_id=task.id), metadata=as_outsider)),
        await code_of(c.ListMembers(pb.ListMembersRequest(client_id=client.id), metadata=as_outsider)),
        await code_of(
            v.RevealCredential(
                vault_pb2.RevealCredentialRequest(client_id=client.id, credential_id=credential_id),
                metadata=as_outsider,
            )
        ),
        await code_of(v.ListCredentials(vault_pb2.ListCredentialsRequest(client_id=client.id), metadata=as_outsider)),
        await code_of(
            v.ListCredentialVersions(
                vault_pb2.ListCredentialVersionsRequest(client_id=client.id, credential_id=credential_id),
                metadata=as_outsider,
            )
        ),
        await code_of(
            v.CreateCredential(
                vault_pb2.CreateCredentialRequest(
                    client_id=client.id, credential=vault_pb2.CredentialFields(label="Mine", secret="planted")
                ),
                metadata=as_outsider,
            )
        ),
        await code_of(
            v.UpdateCredential(
                vault_pb2.UpdateCredentialRequest(
                    client_id=client.id,
                    credential_id=credential_id,
                    credential=vault_pb2.CredentialFields(secret="overwritten"),
                    update_mask=FieldMask(paths=["secret"]),
                ),
                metadata=as_outsider,
            )
        ),
    ]
    names = await c.GetClients(pb.GetClientsRequest(ids=[client.id]), metadata=as_outsider)

    assert codes == [grpc.StatusCode.NOT_FOUND] * len(codes)
    assert list(names.clients) == []
    # nothing changed, and the refused reveal wrote no audit event
    assert (
        await c.GetClient(pb.GetClientRequest(client_id=client.id), metadata=scoped.clients.tokens.metadata("admin"))
    ).name == client.name
    rows = await scoped.vault.sql(
        "SELECT count(*) FROM vault.outbox WHERE client_id = %s AND action = 'credential_reveal'", UUID(client.id)
    )
    assert rows == [(0,)]


async def test_membership_opens_the_client_and_its_removal_closes_it_at_once(scoped: Scoped) -> None:
    client, credential_id = await acme(scoped)
    tech = scoped.clients.tokens.user("manager")
    reveal = vault_pb2.RevealCredentialRequest(client_id=client.id, credential_id=credential_id)
    metadata = scoped.clients.tokens.metadata(tech)
    before = await code_of(scoped.vault.stub.RevealCredential(reveal, metadata=metadata))  # cached: not visible

    await scoped.member(client.id, tech)
    revealed = await scoped.vault.stub.RevealCredential(reveal, metadata=metadata)
    fetched = await scoped.clients.stub.GetClient(pb.GetClientRequest(client_id=client.id), metadata=metadata)
    await scoped.unmember(client.id, tech)
    after = await code_of(scoped.vault.stub.RevealCredential(reveal, metadata=metadata))  # cached: visible, dropped

    assert before is grpc.StatusCode.NOT_FOUND
    assert (revealed.secret, fetched.id) == ("hunter2-router", client.id)
    assert after is grpc.StatusCode.NOT_FOUND


async def test_lists_and_search_totals_count_only_the_callers_clients(scoped: Scoped) -> None:
    word = f"zebra{uuid.uuid4().hex[:8]}"
    mine, _ = await acme(scoped, f"{word} mine")
    theirs, _ = await acme(scoped, f"{word} theirs")
    tech = scoped.clients.tokens.user("manager")
    await scoped.member(mine.id, tech)
    metadata = scoped.clients.tokens.metadata(tech)

    searched = await scoped.clients.stub.ListClients(pb.ListClientsRequest(q=word), metadata=metadata)
    listed = await scoped.clients.stub.ListClients(pb.ListClientsRequest(page_size=100), metadata=metadata)
    as_admin = await scoped.clients.stub.ListClients(
        pb.ListClientsRequest(q=word), metadata=scoped.clients.tokens.metadata("admin")
    )

    assert ([c.id for c in searched.items], searched.total) == ([mine.id], 1)
    assert ([c.id for c in listed.items], listed.total) == ([mine.id], 1)
    assert {c.id for c in as_admin.items} == {mine.id, theirs.id}
    assert as_admin.total == 2


async def test_a_new_clients_creator_is_its_member_and_sees_it(scoped: Scoped) -> None:
    manager = scoped.clients.tokens.user("manager")
    metadata = scoped.clients.tokens.metadata(manager)
    made = await scoped.clients.stub.CreateClient(
        pb.CreateClientRequest(client=pb.ClientFields(name=f"Own {uuid.uuid4()}")), metadata=metadata
    )

    members = await scoped.clients.stub.ListMembers(pb.ListMembersRequest(client_id=made.id), metadata=metadata)
    task = await scoped.clients.stub.CreateTask(
        pb.CreateTaskRequest(client_id=made.id, task=pb.TaskFields(title="Onboard")), metadata=metadata
    )

    assert [(m.user_id, m.added_by_user_id) for m in members.items] == [(str(manager.id), str(manager.id))]
    assert task.client_id == made.id


async def test_with_scoping_off_a_non_member_sees_every_client(clients: Service) -> None:
    """The tier's own clients service keeps the default (off): behaviour as before members existed."""
    admin = clients.tokens.metadata("admin")
    client = await clients.stub.CreateClient(
        pb.CreateClientRequest(client=pb.ClientFields(name=f"Open {uuid.uuid4()}")), metadata=admin
    )
    outsider = clients.tokens.metadata("manager")

    fetched = await clients.stub.GetClient(pb.GetClientRequest(client_id=client.id), metadata=outsider)
    tasks = await clients.stub.ListTasks(pb.ListTasksRequest(client_id=client.id), metadata=outsider)

    assert fetched.id == client.id
    assert tasks.total == 0


async def test_the_rotation_tasks_identity_files_a_task_in_a_client_it_is_no_member_of_and_reads_nothing(
    scoped: Scoped,
) -> None:
    """With scoping on, a leaver's rotation task still lands in the client (the identity is a member of none), while
    the policy table keeps that identity to CreateTask alone."""
    client, _ = await acme(scoped)
    as_identity = scoped.clients.tokens.metadata("rotation_tasks")
    c = scoped.clients.stub
    request = pb.CreateTaskRequest(
        client_id=client.id,
        task=pb.TaskFields(title="Rotate Router: revealed by Ana", priority=pb.TASK_PRIORITY_HIGH),
        origin_key=f"leaver:{uuid.uuid4()}:{uuid.uuid4()}:2026-12-04T10:00:00Z",
        assign_to_owner=True,
    )

    first = await c.CreateTask(request, metadata=as_identity)
    again = await c.CreateTask(request, metadata=as_identity)

    assert first.id == again.id
    assert first.assignee_user_id == client.owner_user_id
    codes = [
        await code_of(c.GetClient(pb.GetClientRequest(client_id=client.id), metadata=as_identity)),
        await code_of(c.ListTasks(pb.ListTasksRequest(client_id=client.id), metadata=as_identity)),
        await code_of(c.ListClients(pb.ListClientsRequest(), metadata=as_identity)),
    ]
    assert codes == [grpc.StatusCode.PERMISSION_DENIED] * len(codes)


# --- reveal reasons (issue 16 item 4) and a non-member's refused reveal -------------------------------------


async def require_reasons(scoped: Scoped, client_id: str) -> pb.Client:
    """Sets the client's reveal_reason_required as an admin does, announced as the clients service does."""
    request = pb.UpdateClientRequest(
        client_id=client_id,
        client=pb.ClientFields(reveal_reason_required=True),
        update_mask=FieldMask(paths=["reveal_reason_required"]),
    )
    updated: pb.Client = await scoped.clients.stub.UpdateClient(
        request, metadata=scoped.clients.tokens.metadata("admin")
    )
    scoped.denylist.apply(f"access.{client_id}", json.dumps({"at": time.time()}).encode())
    return updated


async def test_a_reason_required_client_refuses_a_direct_grpc_reveal_without_a_reason(scoped: Scoped) -> None:
    client, credential_id = await acme(scoped)
    admin = scoped.clients.tokens.metadata("admin")
    plain = vault_pb2.RevealCredentialRequest(client_id=client.id, credential_id=credential_id)
    before = await scoped.vault.stub.RevealCredential(plain, metadata=admin)  # kept: no reason required
    updated = await require_reasons(scoped, client.id)

    refusals = []
    for request in (plain, vault_pb2.RevealCredentialRequest(client_id=client.id, credential_id=credential_id,
                                                             reason="   ", ticket_ref="INC-1")):  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await scoped.vault.stub.RevealCredential(request, metadata=admin)
        refusals.append(refused.value)
    said = vault_pb2.RevealCredentialRequest(
        client_id=client.id, credential_id=credential_id, reason="  Router down at the client  ", ticket_ref="INC-7"
    )
    revealed = await scoped.vault.stub.RevealCredential(said, metadata=admin)

    assert (before.secret, updated.reveal_reason_required, updated.revision) == ("hunter2-router", True, 2)
    for refusal in refusals:
        assert refusal.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert ("precondition-required", "true") in list(refusal.trailing_metadata() or ())
        assert "reason" in (refusal.details() or "")
        assert "hunter" not in (refusal.details() or "")
    assert revealed.secret == "hunter2-router"
    events = await scoped.vault.sql(
        "SELECT action, detail FROM vault.outbox WHERE client_id = %s AND credential_id IS NOT NULL "
        "ORDER BY occurred_at",
        UUID(client.id),
    )
    # the refused reveals wrote nothing; the plain reveal's detail stays empty (encoded as before), the reason is kept
    assert [(action, json.loads(detail) if detail else None) for action, detail in events] == [
        ("credential_create", None),
        ("credential_reveal", None),
        ("credential_reveal", {"reason": "Router down at the client", "ticketRef": "INC-7"}),
    ]


async def test_a_reason_or_ticket_that_cannot_go_into_the_audit_trail_is_refused_naming_it(scoped: Scoped) -> None:
    client, credential_id = await acme(scoped)
    admin = scoped.clients.tokens.metadata("admin")

    fields = []
    for reason, ticket in (("x" * 501, ""), ("ok", "T" * 101), ("line\nbreak", ""), ("ok", "INC\t1")):
        request = vault_pb2.RevealCredentialRequest(
            client_id=client.id, credential_id=credential_id, reason=reason, ticket_ref=ticket
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await scoped.vault.stub.RevealCredential(request, metadata=admin)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        fields.append(dict(refused.value.trailing_metadata() or ())["invalid-field"])

    assert fields == ["reason", "ticket_ref", "reason", "ticket_ref"]


async def test_only_an_admin_sets_reveal_reason_required_even_by_direct_grpc(scoped: Scoped) -> None:
    manager = scoped.clients.tokens.user("manager")
    as_manager = scoped.clients.tokens.metadata(manager)
    own = await scoped.clients.stub.CreateClient(
        pb.CreateClientRequest(client=pb.ClientFields(name=f"Own {uuid.uuid4()}")), metadata=as_manager
    )  # the manager is its member: only the field is refused
    request = pb.UpdateClientRequest(
        client_id=own.id,
        client=pb.ClientFields(reveal_reason_required=True, notes="and a note"),
        update_mask=FieldMask(paths=["notes", "reveal_reason_required"]),
    )

    refused = await code_of(scoped.clients.stub.UpdateClient(request, metadata=as_manager))
    create = await code_of(
        scoped.clients.stub.CreateClient(
            pb.CreateClientRequest(client=pb.ClientFields(name="Strict", reveal_reason_required=True)),
            metadata=scoped.clients.tokens.metadata("admin"),
        )
    )
    after = await scoped.clients.stub.GetClient(pb.GetClientRequest(client_id=own.id), metadata=as_manager)

    assert refused is grpc.StatusCode.PERMISSION_DENIED
    assert create is grpc.StatusCode.INVALID_ARGUMENT  # set on an update only
    assert (after.reveal_reason_required, after.notes, after.revision) == (False, "", 1)


async def test_a_non_members_refused_reveal_is_recorded_and_answered_as_an_unknown_client(scoped: Scoped) -> None:
    client, credential_id = await acme(scoped)
    outsider = scoped.clients.tokens.user("manager")
    as_outsider = scoped.clients.tokens.metadata(outsider)

    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await scoped.vault.stub.RevealCredential(
            vault_pb2.RevealCredentialRequest(client_id=client.id, credential_id=credential_id), metadata=as_outsider
        )
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await scoped.vault.stub.RevealCredential(
            vault_pb2.RevealCredentialRequest(client_id=str(uuid.uuid4()), credential_id=credential_id),
            metadata=as_outsider,
        )

    assert (hidden.value.code(), hidden.value.details()) == (unknown.value.code(), unknown.value.details())
    assert hidden.value.code() is grpc.StatusCode.NOT_FOUND
    denied = await scoped.vault.sql(
        "SELECT user_id, credential_id, detail FROM vault.outbox WHERE client_id = %s AND action = 'reveal_denied'",
        UUID(client.id),
    )
    assert [(user, str(credential), json.loads(detail)) for user, credential, detail in denied] == [
        (outsider.id, credential_id, {"reason": "not a member of the client (or no such client)"})
    ]
