"""The five client routes, for every role, with search, paging and archive semantics."""

import uuid
from typing import Any

import pytest

from tests.system import Api, Session

PROBLEM = "application/problem+json"


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
                           "createdAt", "updatedAt", "archivedAt", "revealReasonRequired"}  # fmt: skip
    assert client["ownerUserId"] == me["id"]
    assert client["status"] == "active"
    assert client["archivedAt"] is None
    assert client["revealReasonRequired"] is False  # issue 16: off unless an admin sets it
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


async def test_a_search_finds_a_client_by_its_new_name_and_company_through_archive_and_unarchive(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin = sessions["admin"].headers
    old, new = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    client = await create(api, sessions["manager"], name=f"Before {old}", company=f"Firm {old}")

    async def search(term: str, status: str | None = None) -> tuple[list[str], int]:
        params = {"q": term, **({"status": status} if status else {})}
        body = (await api.raw.get("/clients", headers=admin, params=params)).json()
        return [c["id"] for c in body["items"]], body["total"]

    await api.raw.patch(f"/clients/{client['id']}", headers=admin, json={"name": f"After {new}"})
    renamed = await search(old), await search(f"after {new.upper()}")  # the company still says `old`
    await api.raw.patch(f"/clients/{client['id']}", headers=admin, json={"company": "Elsewhere"})
    moved = await search(old)
    await api.raw.post(f"/clients/{client['id']}/archive", headers=admin)
    archived = await search(new), await search(new, "archived")
    await api.raw.post(f"/clients/{client['id']}/unarchive", headers=admin)
    unarchived = await search(new), await search(new, "archived")

    mine = ([client["id"]], 1)
    assert renamed == (mine, mine)
    assert moved == ([], 0)
    assert archived == (([], 0), mine)
    assert unarchived == (mine, ([], 0))


async def test_the_first_page_is_the_newest_live_clients_as_get_answers_them_with_the_exact_total(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin = sessions["admin"].headers

    async def first_page(**params: Any) -> dict[str, Any]:
        r = await api.raw.get("/clients", headers=admin, params={"pageSize": 2, **params})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        return r.json()  # type: ignore[no-any-return]

    before, leads_before = (await first_page())["total"], (await first_page(status="lead"))["total"]
    full = await create(api, sessions["manager"], company="Ström AB", email="it@fileserver", phone="+46 8 123 45",
                        notes="line one\nline two", status="lead")  # fmt: skip
    bare = await create(api, sessions["manager"])
    archived = await create(api, sessions["manager"])
    await api.raw.post(f"/clients/{archived['id']}/archive", headers=admin)

    page, leads = await first_page(), await first_page(status="lead")

    expected = [(await api.raw.get(f"/clients/{c['id']}", headers=admin)).json() for c in (bare, full)]
    assert page["items"] == expected  # newest first, the archived one left out, each as GET answers it
    assert (page["total"], page["page"], page["pageSize"]) == (before + 2, 1, 2)
    assert leads["items"][0] == expected[1]
    assert leads["total"] == leads_before + 1


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
