"""The five client routes, for every role, with search, paging and archive semantics."""

import uuid
from typing import Any

import pytest

from tests.system import Api, Session

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
async def sessions(api: Api) -> dict[str, Session]:
    return {role: await api.session(role) for role in ("admin", "manager", "read_only")}


async def create(api: Api, session: Session, **body: Any) -> dict[str, Any]:
    r = await api.raw.post("/clients", headers=session.headers, json={"name": f"Acme {uuid.uuid4()}", **body})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_create_returns_the_client_owned_by_the_caller(api: Api, sessions: dict[str, Session]) -> None:
    manager = sessions["manager"]
    me = (await api.raw.get("/users/me", headers=manager.headers)).json()

    client = await create(api, manager, company="Acme Ltd", email="Ops@Example.com", phone="+1 (555) 010-7788",
                          notes="VIP")  # fmt: skip

    assert set(client) == {"id", "name", "company", "email", "phone", "status", "notes", "ownerUserId",
                           "createdAt", "updatedAt", "archivedAt"}  # fmt: skip
    assert client["ownerUserId"] == me["id"]
    assert client["status"] == "active"
    assert client["archivedAt"] is None
    assert client["email"] == "Ops@example.com"  # the domain is normalised, the local part kept
    assert client["createdAt"].endswith("Z")
    fetched = await api.raw.get(f"/clients/{client['id']}", headers=sessions["read_only"].headers)
    assert fetched.json() == client


@pytest.mark.parametrize(
    ("role", "expected"),
    [("admin", 201), ("manager", 201), ("read_only", 403)],
)
async def test_create_is_for_admins_and_managers(
    api: Api, sessions: dict[str, Session], role: str, expected: int
) -> None:
    r = await api.raw.post("/clients", headers=sessions[role].headers, json={"name": "Role test"})

    assert r.status_code == expected
    if expected == 403:
        assert r.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/clients"),
        ("post", "/clients"),
        ("get", "/clients/{id}"),
        ("patch", "/clients/{id}"),
        ("post", "/clients/{id}/archive"),
    ],
)
async def test_every_route_needs_a_token(api: Api, sessions: dict[str, Session], method: str, path: str) -> None:
    client = await create(api, sessions["admin"])

    r = await api.raw.request(method.upper(), path.format(id=client["id"]), json={} if method != "get" else None)

    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("role", "patch", "archive"),
    [("admin", 200, 204), ("manager", 200, 403), ("read_only", 403, 403)],
)
async def test_patch_and_archive_roles(
    api: Api, sessions: dict[str, Session], role: str, patch: int, archive: int
) -> None:
    client = await create(api, sessions["admin"])

    patched = await api.raw.patch(f"/clients/{client['id']}", headers=sessions[role].headers, json={"notes": "x"})
    archived = await api.raw.post(f"/clients/{client['id']}/archive", headers=sessions[role].headers)

    assert (patched.status_code, archived.status_code) == (patch, archive)
    listed = await api.raw.get(f"/clients/{client['id']}", headers=sessions[role].headers)
    assert listed.status_code == 200  # everyone may read


async def test_patch_changes_only_the_fields_sent_and_null_clears(api: Api, sessions: dict[str, Session]) -> None:
    client = await create(api, sessions["manager"], company="Old Co", phone="123", notes="keep")

    r = await api.raw.patch(
        f"/clients/{client['id']}", headers=sessions["manager"].headers,
        json={"company": "New Co", "phone": None, "status": "lead"},
    )  # fmt: skip

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["company"], body["phone"], body["status"], body["notes"]) == ("New Co", None, "lead", "keep")
    assert body["name"] == client["name"]
    assert body["updatedAt"] > client["updatedAt"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": None}, "name"),
        ({"name": "   "}, "name"),
        ({"email": "not-an-email"}, "email"),
        ({"phone": "call me maybe"}, "phone"),
        ({"status": "archived"}, "status"),
        ({"status": "gone"}, "status"),
        ({"notes": "x" * 10_001}, "notes"),
        ({"name": "nul \x00 byte"}, "name"),
        ({"id": str(uuid.uuid4())}, "id"),
        ({"ownerUserId": str(uuid.uuid4())}, "ownerUserId"),
        ({"archivedAt": "2020-01-01T00:00:00Z"}, "archivedAt"),
        ({"createdAt": "2020-01-01T00:00:00Z"}, "createdAt"),
    ],
)
async def test_bad_patches_are_422_naming_the_field(
    api: Api, sessions: dict[str, Session], body: dict[str, Any], field: str
) -> None:
    client = await create(api, sessions["admin"])

    r = await api.raw.patch(f"/clients/{client['id']}", headers=sessions["admin"].headers, json=body)

    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert [e["field"] for e in r.json()["errors"]] == [field]
    unchanged = (await api.raw.get(f"/clients/{client['id']}", headers=sessions["admin"].headers)).json()
    assert unchanged == client


async def test_create_needs_a_name(api: Api, sessions: dict[str, Session]) -> None:
    r = await api.raw.post("/clients", headers=sessions["admin"].headers, json={"company": "No Name Ltd"})

    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "name", "message": "Field required"}]


@pytest.mark.parametrize("client_id", ["not-a-uuid", str(uuid.uuid4()), "1' OR '1'='1", "%00"])
async def test_unknown_or_malformed_ids_are_404(api: Api, sessions: dict[str, Session], client_id: str) -> None:
    headers = sessions["admin"].headers

    for r in (
        await api.raw.get(f"/clients/{client_id}", headers=headers),
        await api.raw.patch(f"/clients/{client_id}", headers=headers, json={"notes": "x"}),
        await api.raw.post(f"/clients/{client_id}/archive", headers=headers),
    ):
        assert r.status_code == 404, r.text
        assert r.json()["detail"] == "client not found"


async def test_archive_is_idempotent_keeps_the_first_time_and_freezes_the_client(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin = sessions["admin"].headers
    client = await create(api, sessions["admin"])

    first = await api.raw.post(f"/clients/{client['id']}/archive", headers=admin)
    archived = (await api.raw.get(f"/clients/{client['id']}", headers=admin)).json()
    again = await api.raw.post(f"/clients/{client['id']}/archive", headers=admin)

    assert (first.status_code, again.status_code) == (204, 204)
    assert archived["status"] == "archived"
    assert archived["archivedAt"] is not None
    assert (await api.raw.get(f"/clients/{client['id']}", headers=admin)).json()["archivedAt"] == archived["archivedAt"]
    patched = await api.raw.patch(f"/clients/{client['id']}", headers=admin, json={"notes": "late"})
    assert patched.status_code == 409
    assert patched.json() == {"type": "about:blank", "title": "Conflict", "status": 409, "detail": "client is archived"}
    listed = (await api.raw.get("/clients", headers=admin, params={"q": client["name"]})).json()
    assert listed["items"] == []
    assert listed["total"] == 0


async def test_search_is_a_case_insensitive_substring_of_name_or_company(
    api: Api, sessions: dict[str, Session]
) -> None:
    tag = uuid.uuid4().hex[:10]
    by_name = await create(api, sessions["admin"], name=f"Zeta {tag} Holdings")
    by_company = await create(api, sessions["admin"], name="Plain", company=f"Omega-{tag.upper()} GmbH")
    await create(api, sessions["admin"], name="Unrelated", company="Nothing")

    r = await api.raw.get("/clients", headers=sessions["read_only"].headers, params={"q": tag.upper()})

    assert r.status_code == 200
    body = r.json()
    assert [c["id"] for c in body["items"]] == [by_company["id"], by_name["id"]]  # newest first
    assert (body["total"], body["page"], body["pageSize"]) == (2, 1, 20)


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
async def test_search_takes_tricky_terms_literally(
    api: Api, sessions: dict[str, Session], term: str, matches: str, misses: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    hit = await create(api, sessions["admin"], name=f"{matches} {tag}")
    await create(api, sessions["admin"], name=f"{misses} {tag}")

    r = await api.raw.get("/clients", headers=sessions["admin"].headers, params={"q": term, "pageSize": 100})

    assert r.status_code == 200
    mine = [c["id"] for c in r.json()["items"] if tag in c["name"]]
    assert mine == [hit["id"]]


async def test_status_filter_and_paging(api: Api, sessions: dict[str, Session]) -> None:
    tag = uuid.uuid4().hex[:10]
    made = [await create(api, sessions["admin"], name=f"Page {tag} {i}", status="lead") for i in range(5)]
    await create(api, sessions["admin"], name=f"Page {tag} other", status="inactive")
    newest_first = [c["id"] for c in reversed(made)]
    params: dict[str, str | int] = {"q": tag, "status": "lead", "pageSize": 2}
    headers = sessions["admin"].headers

    pages = [
        (await api.raw.get("/clients", headers=headers, params={**params, "page": p})).json() for p in (1, 2, 3, 4)
    ]

    assert [c["id"] for page in pages for c in page["items"]] == newest_first
    assert [len(page["items"]) for page in pages] == [2, 2, 1, 0]  # page 4 is past the end: empty, total kept
    assert {page["total"] for page in pages} == {5}
    assert [page["page"] for page in pages] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "a\nb"}, "q"),
        ({"page": 0}, "page"),
        ({"page": "x"}, "page"),
        ({"pageSize": 0}, "pageSize"),
        ({"pageSize": 101}, "pageSize"),
        ({"status": "vip"}, "status"),
        ({"q": "x" * 201}, "q"),
    ],
)
async def test_bad_list_parameters_are_422(
    api: Api, sessions: dict[str, Session], params: dict[str, Any], field: str
) -> None:
    r = await api.raw.get("/clients", headers=sessions["admin"].headers, params=params)

    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_unfiltered_total_counts_live_clients_exactly(api: Api, sessions: dict[str, Session]) -> None:
    headers = sessions["admin"].headers
    before = (await api.raw.get("/clients", headers=headers)).json()["total"]
    made = [await create(api, sessions["admin"]) for _ in range(3)]
    await api.raw.post(f"/clients/{made[0]['id']}/archive", headers=headers)
    await api.raw.patch(f"/clients/{made[1]['id']}", headers=headers, json={"status": "inactive"})

    after = (await api.raw.get("/clients", headers=headers)).json()

    assert after["total"] == before + 2
    assert after["items"][0]["id"] == made[2]["id"]


async def test_the_clients_service_refuses_a_role_on_a_direct_call(api: Api, sessions: dict[str, Session]) -> None:
    import grpc

    from clientvault.v1 import clients_pb2, clients_pb2_grpc

    client = await create(api, sessions["admin"])
    reader = [("authorization", f"Bearer {sessions['read_only'].access_token}")]
    async with grpc.aio.insecure_channel(api.system.info_address("clients")) as channel:
        stub = clients_pb2_grpc.ClientsStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ArchiveClient(clients_pb2.ArchiveClientRequest(client_id=client["id"]), metadata=reader)
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await stub.GetClient(clients_pb2.GetClientRequest(client_id=client["id"]))

    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
    after = (await api.raw.get(f"/clients/{client['id']}", headers=sessions["admin"].headers)).json()
    assert after["archivedAt"] is None
