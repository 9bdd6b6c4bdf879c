"""The clients service on its own: its policy on direct calls, search, paging, totals and archiving."""

import uuid
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from clientvault.v1 import clients_pb2 as pb
from tests.service.conftest import Service


async def new_client(clients: Service, name: str | None = None, **fields: Any) -> pb.Client:
    request = pb.CreateClientRequest(client=pb.ClientFields(name=name or f"Acme {uuid.uuid4()}", **fields))
    made: pb.Client = await clients.stub.CreateClient(request, metadata=clients.tokens.metadata("admin"), timeout=5)
    return made


async def listed(clients: Service, **request: Any) -> pb.ListClientsResponse:
    found: pb.ListClientsResponse = await clients.stub.ListClients(
        pb.ListClientsRequest(**request), metadata=clients.tokens.metadata("read_only"), timeout=5
    )
    return found


async def update(clients: Service, client_id: str, **fields: Any) -> pb.Client:
    """Changes the named fields of the client as an admin."""
    request = pb.UpdateClientRequest(
        client_id=client_id, client=pb.ClientFields(**fields), update_mask=FieldMask(paths=list(fields))
    )
    changed: pb.Client = await clients.stub.UpdateClient(request, metadata=clients.tokens.metadata("admin"))
    return changed


async def searched(clients: Service, term: str, *, archived: bool = False) -> tuple[list[str], int]:
    """The ids a search answers (live clients, or the archived ones), and its total."""
    request, admin = pb.ListClientsRequest(q=term, page_size=100), clients.tokens.metadata("admin")
    page = await (clients.stub.ListArchivedClients if archived else clients.stub.ListClients)(request, metadata=admin)
    return sorted(c.id for c in page.items), page.total


async def test_read_only_cannot_archive_by_direct_grpc_and_nobody_reads_without_a_token(clients: Service) -> None:
    client = await new_client(clients)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await clients.stub.ArchiveClient(
            pb.ArchiveClientRequest(client_id=client.id), metadata=clients.tokens.metadata("read_only")
        )
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await clients.stub.GetClient(pb.GetClientRequest(client_id=client.id))

    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert await clients.sql("SELECT archived_at FROM clients.clients WHERE id = %s", uuid.UUID(client.id)) == [(None,)]


async def test_a_new_client_is_owned_by_the_caller(clients: Service) -> None:
    manager = clients.tokens.user("manager")
    request = pb.CreateClientRequest(client=pb.ClientFields(name="Owned", email="Ops@Example.com"))

    client = await clients.stub.CreateClient(request, metadata=clients.tokens.metadata(manager))

    assert client.owner_user_id == str(manager.id)
    assert client.status == pb.CLIENT_STATUS_ACTIVE
    assert client.email == "Ops@example.com"  # the domain is normalised, the local part kept
    assert not client.HasField("archived_at")


async def test_archive_is_idempotent_keeps_the_first_time_and_freezes_the_client(clients: Service) -> None:
    client, admin = await new_client(clients), clients.tokens.metadata("admin")
    archive = pb.ArchiveClientRequest(client_id=client.id)

    await clients.stub.ArchiveClient(archive, metadata=admin)
    first = await clients.stub.GetClient(pb.GetClientRequest(client_id=client.id), metadata=admin)
    await clients.stub.ArchiveClient(archive, metadata=admin)
    again = await clients.stub.GetClient(pb.GetClientRequest(client_id=client.id), metadata=admin)
    with pytest.raises(grpc.aio.AioRpcError) as frozen:
        await clients.stub.UpdateClient(
            pb.UpdateClientRequest(
                client_id=client.id, client=pb.ClientFields(notes="late"), update_mask=FieldMask(paths=["notes"])
            ),
            metadata=admin,
        )

    assert first.status == pb.CLIENT_STATUS_ARCHIVED
    assert first.HasField("archived_at")
    assert again.archived_at == first.archived_at
    assert (frozen.value.code(), frozen.value.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "client is archived")
    found = await listed(clients, q=client.name)
    assert (list(found.items), found.total) == ([], 0)


async def test_search_is_a_case_insensitive_substring_of_name_or_company(clients: Service) -> None:
    tag = uuid.uuid4().hex[:10]
    by_name = await new_client(clients, f"Zeta {tag} Holdings")
    by_company = await new_client(clients, "Plain", company=f"Omega-{tag.upper()} GmbH")
    await new_client(clients, "Unrelated", company="Nothing")

    found = await listed(clients, q=tag.upper())

    assert [c.id for c in found.items] == [by_company.id, by_name.id]  # newest first
    assert (found.total, found.page, found.page_size) == (2, 1, 20)


async def test_search_finds_a_client_by_what_it_is_now_through_rename_company_change_archive_and_unarchive(
    clients: Service,
) -> None:
    old, new, firm = (uuid.uuid4().hex[:10] for _ in range(3))
    client = await new_client(clients, f"Alpha {old}", company=f"Corp {old}")
    other = await new_client(clients, f"Other {new}")
    admin = clients.tokens.metadata("admin")

    await update(clients, client.id, name=f"Beta {new}")
    renamed = await searched(clients, new), await searched(clients, old)  # the company still says `old`
    await update(clients, client.id, company=f"Firm {firm}")
    moved = await searched(clients, old), await searched(clients, firm)
    await clients.stub.ArchiveClient(pb.ArchiveClientRequest(client_id=client.id), metadata=admin)
    archived = await searched(clients, new), await searched(clients, new, archived=True)
    await clients.stub.UnarchiveClient(pb.UnarchiveClientRequest(client_id=client.id), metadata=admin)
    unarchived = await searched(clients, new), await searched(clients, new, archived=True)

    both = (sorted([client.id, other.id]), 2)
    assert renamed == (both, ([client.id], 1))
    assert moved == (([], 0), ([client.id], 1))
    assert archived == (([other.id], 1), ([client.id], 1))
    assert unarchived == (both, ([], 0))


async def test_clients_written_deleted_or_changed_straight_in_sql_are_searched_as_they_are(clients: Service) -> None:
    """What an operator's bulk load (COPY, a multi-row INSERT) or a fix by hand does is what a search finds: the
    search table is written with every change of `clients`, in the same transaction, and never disagrees with it."""
    tag, mended = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    loaded = await clients.sql(
        "INSERT INTO clients.clients (id, name, company, status, owner_user_id, created_at, updated_at) "
        "SELECT gen_random_uuid(), %s || ' ' || n, 'Bulk', 'lead', gen_random_uuid(), now(), now() "
        "FROM generate_series(1, 3) AS n RETURNING id",
        f"Loaded {tag}",
    )
    gone, renamed = await new_client(clients, f"Gone {tag}"), await new_client(clients, f"Fixed {tag}")

    await clients.sql("DELETE FROM clients.client_members WHERE client_id = %s", uuid.UUID(gone.id))  # its creator
    await clients.sql("DELETE FROM clients.clients WHERE id = %s", uuid.UUID(gone.id))
    await clients.sql("UPDATE clients.clients SET name = %s WHERE id = %s", f"Mended {mended}", uuid.UUID(renamed.id))

    assert await searched(clients, tag) == (sorted(str(id_) for (id_,) in loaded), 3)
    assert await searched(clients, mended.upper()) == ([renamed.id], 1)
    disagreeing = await clients.sql(
        "SELECT count(*) FROM (SELECT id, created_at, status, lower(name) || E'\\n' || lower(coalesce(company, ''))"
        " AS search FROM clients.clients) AS c FULL JOIN clients.client_search AS s USING (id)"
        " WHERE (c.created_at, c.status, c.search) IS DISTINCT FROM (s.created_at, s.status, s.search)"
    )
    assert disagreeing == [(0,)]


async def test_a_replica_still_on_the_old_code_finds_clients_during_a_rolling_upgrade(clients: Service) -> None:
    """Migration 0009 moved searches to `client_search`; a replica not yet replaced still runs the search of
    migration 0002 (`clients.search LIKE …`): it must answer with the clients as they are now, not fail."""
    tag = uuid.uuid4().hex[:10]
    made = await new_client(clients, f"Rolling {tag}")
    await clients.sql("UPDATE clients.clients SET company = %s WHERE id = %s", f"Upgrade {tag}", uuid.UUID(made.id))

    old_search = "SELECT id FROM clients.clients WHERE archived_at IS NULL AND search LIKE lower(%s)"
    assert await clients.sql(old_search, f"%upgrade {tag}%") == [(uuid.UUID(made.id),)]


@pytest.mark.parametrize(
    ("term", "matches", "misses"),
    [
        ("50%", "Growth 50% Ltd", "Growth 500 Ltd"),
        ("a_b", "Acme a_b", "Acme axb"),
        ("back\\slash", "The back\\slash Co", "The backslash Co"),
        ("O'Brien", "O'Brien & Sons", "OBrien & Sons"),
        ('"quoted"', 'The "quoted" one', "The quoted one"),
        ("ÉCOLE", "école du Nord", "ecole du Nord"),
        ("日本", "株式会社日本テスト", "株式会社テスト"),
        ("'; DROP TABLE clients.clients; --", "x'; DROP TABLE clients.clients; --", "DROP TABLE"),
    ],
)
async def test_search_takes_tricky_terms_literally(clients: Service, term: str, matches: str, misses: str) -> None:
    tag = uuid.uuid4().hex[:8]
    hit = await new_client(clients, f"{matches} {tag}")
    await new_client(clients, f"{misses} {tag}")

    found = await listed(clients, q=term, page_size=100)

    assert [c.id for c in found.items if tag in c.name] == [hit.id]


async def test_status_filter_and_paging(clients: Service) -> None:
    tag = uuid.uuid4().hex[:10]
    made = [await new_client(clients, f"Page {tag} {i}", status=pb.CLIENT_STATUS_LEAD) for i in range(5)]
    await new_client(clients, f"Page {tag} other", status=pb.CLIENT_STATUS_INACTIVE)

    pages = [await listed(clients, q=tag, status=pb.CLIENT_STATUS_LEAD, page_size=2, page=p) for p in (1, 2, 3, 4)]

    assert [c.id for page in pages for c in page.items] == [c.id for c in reversed(made)]
    assert [len(page.items) for page in pages] == [2, 2, 1, 0]  # page 4 is past the end: empty, total kept
    assert {page.total for page in pages} == {5}
    assert [page.page for page in pages] == [1, 2, 3, 4]


async def test_unfiltered_total_counts_live_clients_exactly(clients: Service) -> None:
    admin = clients.tokens.metadata("admin")
    before = (await listed(clients)).total
    made = [await new_client(clients) for _ in range(3)]
    await clients.stub.ArchiveClient(pb.ArchiveClientRequest(client_id=made[0].id), metadata=admin)
    await clients.stub.UpdateClient(
        pb.UpdateClientRequest(
            client_id=made[1].id,
            client=pb.ClientFields(status=pb.CLIENT_STATUS_INACTIVE),
            update_mask=FieldMask(paths=["status"]),
        ),
        metadata=admin,
    )

    after = await listed(clients)

    assert after.total == before + 2
    assert after.items[0].id == made[2].id


async def test_get_clients_names_the_known_ones_archived_too_in_one_call(clients: Service) -> None:
    live, archived = await new_client(clients, "Live one"), await new_client(clients, "Archived one")
    await clients.stub.ArchiveClient(
        pb.ArchiveClientRequest(client_id=archived.id), metadata=clients.tokens.metadata("admin")
    )
    asked = [live.id, archived.id, str(uuid.uuid4()), "not-an-id", live.id.upper()]

    found = await clients.stub.GetClients(
        pb.GetClientsRequest(ids=asked), metadata=clients.tokens.metadata("read_only")
    )
    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await clients.stub.GetClients(
            pb.GetClientsRequest(ids=[str(uuid.uuid4()) for _ in range(101)]),
            metadata=clients.tokens.metadata("read_only"),
        )

    assert sorted((c.id, c.name) for c in found.clients) == sorted(
        [(live.id, "Live one"), (archived.id, "Archived one")]
    )
    assert too_many.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("it@acme.local", "it@acme.local"),
        ("ops@globex.test", "ops@globex.test"),
        ("admin@corp.internal", "admin@corp.internal"),
        ("noc@Fileserver.Home.Arpa", "noc@fileserver.home.arpa"),
        ("backup@nas", "backup@nas"),  # an on-premises host with no dot
    ],
)
async def test_contact_emails_on_internal_and_reserved_domains_are_kept(
    clients: Service, typed: str, stored: str
) -> None:
    client = await new_client(clients, email=typed)
    patched = await clients.stub.UpdateClient(
        pb.UpdateClientRequest(
            client_id=client.id, client=pb.ClientFields(email=typed), update_mask=FieldMask(paths=["email"])
        ),
        metadata=clients.tokens.metadata("admin"),
    )

    assert (client.email, patched.email) == (stored, stored)


@pytest.mark.parametrize("typed", ["not-an-email", "two@@at.local", "space in@acme.local", "dot.@acme.test"])
async def test_an_address_that_is_not_one_is_still_refused(clients: Service, typed: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await new_client(clients, email=typed)

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "email is not valid" in (refused.value.details() or "")
