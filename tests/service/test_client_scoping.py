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
from tests.service.conftest import VAULT_KEK, Register, Service, Tokens, service


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

    denylist = DenyList()

    async def access_changed(client_id: UUID, user_id: UUID | None = None) -> None:
        """Grants announce their changes as in production: the entry reaches the vault's deny list."""
        key = f"access.{client_id}" if user_id is None else f"access.{client_id}.{user_id}"
        denylist.apply(key, json.dumps({"at": time.time()}).encode())

    async with rpc.channel("127.0.0.1:9") as no_auth:

        def clients_build(db: Database) -> Register:
            servicer = ClientsServicer(
                db, no_auth_stub(no_auth), 5, scoping=True, access_changed=access_changed, grant_max_minutes=60
            )
            return lambda server: clients_pb2_grpc.add_ClientsServicer_to_server(servicer, server)

        async with service(database_url, tokens, "clients", clients_pb2_grpc.ClientsStub, clients_build) as clients:
            keys = EnvKeys({"v1": bytearray(VAULT_KEK)}, "v1")
            settings = VaultSettings(reveal_user_max=1_000_000, reveal_ip_max=1_000_000)
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


async def test_a_members_search_follows_a_rename_and_archiving_and_counts_only_their_clients(scoped: Scoped) -> None:
    old, new = (f"yak{uuid.uuid4().hex[:8]}" for _ in range(2))
    mine, _ = await acme(scoped, f"{old} mine")
    await acme(scoped, f"{new} theirs")  # another's client that matches too: neither listed nor counted
    tech, admin = scoped.clients.tokens.user("manager"), scoped.clients.tokens.metadata("admin")
    await scoped.member(mine.id, tech)
    metadata = scoped.clients.tokens.metadata(tech)

    async def search(term: str) -> tuple[list[str], int]:
        page = await scoped.clients.stub.ListClients(pb.ListClientsRequest(q=term), metadata=metadata)
        return [c.id for c in page.items], page.total

    await scoped.clients.stub.UpdateClient(
        pb.UpdateClientRequest(
            client_id=mine.id, client=pb.ClientFields(name=f"{new} mine"), update_mask=FieldMask(paths=["name"])
        ),
        metadata=admin,
    )
    renamed = await search(new), await search(old)
    await scoped.clients.stub.ArchiveClient(pb.ArchiveClientRequest(client_id=mine.id), metadata=admin)
    archived = await search(new)

    assert renamed == (([mine.id], 1), ([], 0))
    assert archived == ([], 0)


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


# --- access requests and grants (services/clients/grants.py), by direct gRPC ------------------------------------


async def granted(scoped: Scoped, client_id: str, tech: User, minutes: int = 30) -> pb.AccessRequest:
    """The technician asks, an admin approves: the grant."""
    c = scoped.clients.stub
    asked = await c.RequestAccess(
        pb.RequestAccessRequest(client_id=client_id, reason="INC-1 router down", ticket_ref="INC-1", minutes=minutes),
        metadata=scoped.clients.tokens.metadata(tech),
    )
    return await c.ApproveAccessRequest(  # type: ignore[no-any-return]
        pb.DecideAccessRequest(request_id=asked.id), metadata=scoped.clients.tokens.metadata("admin")
    )


async def test_a_grant_gives_what_membership_gives_until_it_expires_then_nothing_without_anyone_acting(
    scoped: Scoped,
) -> None:
    from services.clients import grants
    from services.clients.members import Changes

    word = f"okapi{uuid.uuid4().hex[:8]}"
    client, credential_id = await acme(scoped, f"{word} Ltd")
    tech = scoped.clients.tokens.user("manager")
    metadata = scoped.clients.tokens.metadata(tech)
    c, v = scoped.clients.stub, scoped.vault.stub
    reveal = vault_pb2.RevealCredentialRequest(client_id=client.id, credential_id=credential_id)
    before = await code_of(v.RevealCredential(reveal, metadata=metadata))

    grant = await granted(scoped, client.id, tech)
    fetched = await c.GetClient(pb.GetClientRequest(client_id=client.id), metadata=metadata)
    revealed = await v.RevealCredential(reveal, metadata=metadata)
    searched = await c.ListClients(pb.ListClientsRequest(q=word), metadata=metadata)

    assert before is grpc.StatusCode.NOT_FOUND
    assert (grant.status, grant.active) == (pb.ACCESS_REQUEST_STATUS_APPROVED, True)
    assert (fetched.access_grant_id, fetched.access_expires_at) == (grant.id, grant.expires_at)
    assert revealed.secret == "hunter2-router"
    assert ([i.id for i in searched.items], searched.total) == ([client.id], 1)

    # The grant's time runs out (as an operator would move its clock: expires_at into the past).
    await scoped.clients.sql(
        "UPDATE clients.access_requests SET expires_at = now() - interval '1 second' WHERE id = %s", UUID(grant.id)
    )
    codes = [
        await code_of(c.GetClient(pb.GetClientRequest(client_id=client.id), metadata=metadata)),
        await code_of(c.ListTasks(pb.ListTasksRequest(client_id=client.id), metadata=metadata)),
    ]
    after_search = await c.ListClients(pb.ListClientsRequest(q=word), metadata=metadata)
    announced: list[tuple[UUID, UUID | None]] = []

    async def access_changed(client_id: UUID, user_id: UUID | None = None) -> None:
        announced.append((client_id, user_id))
        scoped.denylist.apply(f"access.{client_id}.{user_id}", json.dumps({"at": time.time()}).encode())

    changes = Changes(access_changed, lambda: None)
    first, second = (
        await grants.end_expired(scoped.clients.db, changes),
        await grants.end_expired(scoped.clients.db, changes),
    )
    after_reveal = await code_of(v.RevealCredential(reveal, metadata=metadata))
    ended = await scoped.clients.sql(
        "SELECT detail, user_id FROM clients.outbox WHERE client_id = %s AND action = 'access_grant_ended'",
        UUID(client.id),
    )

    assert codes == [grpc.StatusCode.NOT_FOUND] * 2
    assert (list(after_search.items), after_search.total) == ([], 0)
    assert first >= 1
    assert second == 0
    assert (UUID(client.id), tech.id) in announced
    assert after_reveal is grpc.StatusCode.NOT_FOUND
    assert len(ended) == 1
    detail = json.loads(ended[0][0])
    assert (detail["ended"], detail["grantId"], detail["reason"], detail["ticketRef"]) == (
        "expired",
        grant.id,
        "INC-1 router down",
        "INC-1",
    )
    assert ended[0][1] is None  # nobody acted


async def test_nobody_decides_their_own_request_and_a_decided_one_stays_decided(scoped: Scoped) -> None:
    client, _ = await acme(scoped)
    tech = scoped.clients.tokens.user("manager")
    c = scoped.clients.stub
    asked = await c.RequestAccess(
        pb.RequestAccessRequest(client_id=client.id, reason="help", minutes=10),
        metadata=scoped.clients.tokens.metadata(tech),
    )
    promoted = scoped.clients.tokens.user("admin", tech.id)  # the same person, an admin now
    decide = pb.DecideAccessRequest(request_id=asked.id)

    with pytest.raises(grpc.aio.AioRpcError) as own:
        await c.ApproveAccessRequest(decide, metadata=scoped.clients.tokens.metadata(promoted))
    by_manager = await code_of(c.DenyAccessRequest(decide, metadata=scoped.clients.tokens.metadata("manager")))
    denied = await c.DenyAccessRequest(decide, metadata=scoped.clients.tokens.metadata("admin"))
    approve_denied = await code_of(c.ApproveAccessRequest(decide, metadata=scoped.clients.tokens.metadata("admin")))
    still_hidden = await code_of(
        c.GetClient(pb.GetClientRequest(client_id=client.id), metadata=scoped.clients.tokens.metadata(tech))
    )

    assert own.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "their own access request" in (own.value.details() or "")
    assert by_manager is grpc.StatusCode.PERMISSION_DENIED
    assert denied.status == pb.ACCESS_REQUEST_STATUS_DENIED
    assert approve_denied is grpc.StatusCode.FAILED_PRECONDITION
    assert still_hidden is grpc.StatusCode.NOT_FOUND


async def test_a_revoked_grant_closes_the_client_at_once(scoped: Scoped) -> None:
    client, _credential_id = await acme(scoped)
    tech = scoped.clients.tokens.user("read_only")
    metadata = scoped.clients.tokens.metadata(tech)
    grant = await granted(scoped, client.id, tech)
    opened = await scoped.clients.stub.ListTasks(pb.ListTasksRequest(client_id=client.id), metadata=metadata)
    admin = scoped.clients.tokens.metadata("admin")

    await scoped.clients.stub.RevokeGrant(pb.RevokeGrantRequest(grant_id=grant.id), metadata=admin)
    closed = await code_of(scoped.clients.stub.ListTasks(pb.ListTasksRequest(client_id=client.id), metadata=metadata))
    again = await code_of(scoped.clients.stub.RevokeGrant(pb.RevokeGrantRequest(grant_id=grant.id), metadata=admin))
    listed = await scoped.clients.stub.ListAccessRequests(pb.ListAccessRequestsRequest(), metadata=metadata)

    assert opened.total == 0
    assert closed is grpc.StatusCode.NOT_FOUND
    assert again is grpc.StatusCode.FAILED_PRECONDITION
    assert [(i.id, i.active, i.HasField("revoked_at")) for i in listed.items] == [(grant.id, False, True)]


async def test_requests_are_refused_with_a_reason_for_members_the_too_long_and_twice(scoped: Scoped) -> None:
    tech = scoped.clients.tokens.user("manager")
    metadata = scoped.clients.tokens.metadata(tech)
    own = await scoped.clients.stub.CreateClient(
        pb.CreateClientRequest(client=pb.ClientFields(name=f"Own {uuid.uuid4()}")), metadata=metadata
    )
    other, _ = await acme(scoped)
    c = scoped.clients.stub

    def ask(client_id: str, minutes: int = 10) -> Any:
        return c.RequestAccess(
            pb.RequestAccessRequest(client_id=client_id, reason="why", minutes=minutes), metadata=metadata
        )

    member = await code_of(ask(own.id))
    too_long = await code_of(ask(other.id, 61))  # this service's CLIENTVAULT_GRANT_MAX_MINUTES is 60
    await ask(other.id)
    twice = await code_of(ask(other.id))
    by_admin = await code_of(
        c.RequestAccess(
            pb.RequestAccessRequest(client_id=other.id, reason="why", minutes=5),
            metadata=scoped.clients.tokens.metadata("admin"),
        )
    )
    unknown = await code_of(ask(str(uuid.uuid4())))

    assert member is grpc.StatusCode.FAILED_PRECONDITION
    assert too_long is grpc.StatusCode.INVALID_ARGUMENT
    assert twice is grpc.StatusCode.FAILED_PRECONDITION
    assert by_admin is grpc.StatusCode.PERMISSION_DENIED
    assert unknown is grpc.StatusCode.NOT_FOUND


async def test_others_see_only_their_own_requests_and_an_admin_sees_all(scoped: Scoped) -> None:
    client, _ = await acme(scoped)
    ana, ben = scoped.clients.tokens.user("manager"), scoped.clients.tokens.user("read_only")
    c = scoped.clients.stub
    for who in (ana, ben):
        await c.RequestAccess(
            pb.RequestAccessRequest(client_id=client.id, reason="why", minutes=5),
            metadata=scoped.clients.tokens.metadata(who),
        )

    anas = await c.ListAccessRequests(pb.ListAccessRequestsRequest(), metadata=scoped.clients.tokens.metadata(ana))
    pending = await c.ListAccessRequests(
        pb.ListAccessRequestsRequest(status=pb.ACCESS_REQUEST_STATUS_PENDING, page_size=100),
        metadata=scoped.clients.tokens.metadata("admin"),
    )

    assert [(i.user_id, i.client_id) for i in anas.items] == [(str(ana.id), client.id)]
    assert {str(ana.id), str(ben.id)} <= {i.user_id for i in pending.items if i.client_id == client.id}


async def test_break_glass_is_refused_while_the_installation_leaves_it_off(scoped: Scoped) -> None:
    client, _ = await acme(scoped)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await scoped.clients.stub.BreakGlass(
            pb.BreakGlassRequest(client_id=client.id, reason="outage"),
            metadata=scoped.clients.tokens.metadata("manager"),
        )

    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "CLIENTVAULT_BREAK_GLASS" in (refused.value.details() or "")
    rows = await scoped.clients.sql(
        "SELECT count(*) FROM clients.access_requests WHERE client_id = %s", UUID(client.id)
    )
    assert rows == [(0,)]
