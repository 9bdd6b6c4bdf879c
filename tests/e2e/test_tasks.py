"""The task routes: roles, defaults, completion time, assignees, cross-client ids, archived clients."""

import uuid
from typing import Any

import pytest

from tests.system import Api, Session, me, new_task

PROBLEM = "application/problem+json"


async def new_client(api: Api, sessions: dict[str, Session]) -> str:
    r = await api.raw.post("/clients", headers=sessions["admin"].headers, json={"name": f"Tasks {uuid.uuid4()}"})
    return str(r.json()["id"])


async def test_a_new_task_has_the_contract_shape_and_defaults(api: Api, sessions: dict[str, Session]) -> None:
    client_id = await new_client(api, sessions)
    reader = sessions["read_only"]

    task = await new_task(api, reader, client_id)

    assert set(task) == {"id", "clientId", "title", "description", "status", "priority", "dueDate",
                         "assigneeUserId", "createdByUserId", "createdAt", "updatedAt", "completedAt"}  # fmt: skip
    assert (task["clientId"], task["status"], task["priority"]) == (client_id, "todo", "medium")
    assert task["createdByUserId"] == await me(api, reader)
    assert task["completedAt"] is None
    assert task["dueDate"] is None


@pytest.mark.parametrize(
    ("role", "create", "patch", "delete"),
    [("admin", 201, 200, 204), ("manager", 201, 200, 204), ("read_only", 201, 200, 403)],
)
async def test_roles(api: Api, sessions: dict[str, Session], role: str, create: int, patch: int, delete: int) -> None:
    client_id = await new_client(api, sessions)
    headers = sessions[role].headers

    created = await api.raw.post(f"/clients/{client_id}/tasks", headers=headers, json={"title": "t"})
    task_id = created.json()["id"]
    patched = await api.raw.patch(f"/clients/{client_id}/tasks/{task_id}", headers=headers, json={"title": "u"})
    listed = await api.raw.get(f"/clients/{client_id}/tasks", headers=headers)
    deleted = await api.raw.delete(f"/clients/{client_id}/tasks/{task_id}", headers=headers)

    assert (created.status_code, patched.status_code, listed.status_code, deleted.status_code) == (
        create, patch, 200, delete
    )  # fmt: skip


async def test_every_task_route_needs_a_token(api: Api, sessions: dict[str, Session]) -> None:
    client_id = await new_client(api, sessions)
    task = await new_task(api, sessions["admin"], client_id)
    base = f"/clients/{client_id}/tasks"

    for method, path in (("GET", base), ("POST", base), ("PATCH", f"{base}/{task['id']}"),
                         ("DELETE", f"{base}/{task['id']}")):  # fmt: skip
        r = await api.raw.request(method, path, json={"title": "x"} if method in ("POST", "PATCH") else None)
        assert r.status_code == 401, (method, path)


async def test_completed_at_follows_the_done_status(api: Api, sessions: dict[str, Session]) -> None:
    client_id = await new_client(api, sessions)
    headers = sessions["manager"].headers
    task = await new_task(api, sessions["manager"], client_id)
    url = f"/clients/{client_id}/tasks/{task['id']}"

    done = (await api.raw.patch(url, headers=headers, json={"status": "done"})).json()
    renamed = (await api.raw.patch(url, headers=headers, json={"title": "Still done"})).json()
    reopened = (await api.raw.patch(url, headers=headers, json={"status": "in_progress"})).json()

    assert done["completedAt"] is not None
    assert renamed["completedAt"] == done["completedAt"]  # staying done keeps the time
    assert reopened["completedAt"] is None
    created_done = await new_task(api, sessions["manager"], client_id, status="done")
    assert created_done["completedAt"] is not None


async def test_fields_round_trip_and_null_clears(api: Api, sessions: dict[str, Session]) -> None:
    client_id = await new_client(api, sessions)
    assignee = await me(api, sessions["read_only"])
    task = await new_task(api, sessions["admin"], client_id, description="Wildcard cert", priority="high",
                          dueDate="2027-02-28", assigneeUserId=assignee)  # fmt: skip

    assert (task["description"], task["priority"], task["dueDate"], task["assigneeUserId"]) == (
        "Wildcard cert", "high", "2027-02-28", assignee
    )  # fmt: skip
    cleared = await api.raw.patch(
        f"/clients/{client_id}/tasks/{task['id']}", headers=sessions["admin"].headers,
        json={"dueDate": None, "assigneeUserId": None},
    )  # fmt: skip
    assert cleared.status_code == 200
    assert (cleared.json()["dueDate"], cleared.json()["assigneeUserId"], cleared.json()["priority"]) == (
        None,
        None,
        "high",
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"status": "blocked"}, "status"),
        ({"priority": "urgent"}, "priority"),
        ({"dueDate": "2027-13-01"}, "dueDate"),
        ({"assigneeUserId": "nobody"}, "assigneeUserId"),
        ({"assigneeUserId": str(uuid.uuid4())}, "assigneeUserId"),
        ({"clientId": str(uuid.uuid4())}, "clientId"),
        ({"createdByUserId": str(uuid.uuid4())}, "createdByUserId"),
        ({"completedAt": "2020-01-01T00:00:00Z"}, "completedAt"),
        ({"id": str(uuid.uuid4())}, "id"),
    ],
)
async def test_bad_task_input_is_422(api: Api, sessions: dict[str, Session], body: dict[str, Any], field: str) -> None:
    client_id = await new_client(api, sessions)
    headers = sessions["admin"].headers

    r = await api.raw.post(f"/clients/{client_id}/tasks", headers=headers, json={"title": "ok", **body})

    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert (await api.raw.get(f"/clients/{client_id}/tasks", headers=headers)).json()["total"] == 0


async def test_a_task_under_another_client_does_not_exist(api: Api, sessions: dict[str, Session]) -> None:
    headers = sessions["admin"].headers
    mine, other = await new_client(api, sessions), await new_client(api, sessions)
    task = await new_task(api, sessions["admin"], mine)

    for r in (
        await api.raw.patch(f"/clients/{other}/tasks/{task['id']}", headers=headers, json={"title": "hijack"}),
        await api.raw.delete(f"/clients/{other}/tasks/{task['id']}", headers=headers),
    ):
        assert r.status_code == 404
        assert r.json()["detail"] == "task not found"
    still = (await api.raw.get(f"/clients/{mine}/tasks", headers=headers)).json()["items"]
    assert [t["title"] for t in still] == ["Renew TLS"]


@pytest.mark.parametrize("bad_id", ["nope", str(uuid.uuid4()), "00000000-0000-0000-0000-000000000000"])
async def test_unknown_client_or_task_ids_are_404(api: Api, sessions: dict[str, Session], bad_id: str) -> None:
    headers = sessions["admin"].headers
    client_id = await new_client(api, sessions)

    assert (await api.raw.get(f"/clients/{bad_id}/tasks", headers=headers)).status_code == 404
    assert (await api.raw.post(f"/clients/{bad_id}/tasks", headers=headers, json={"title": "t"})).status_code == 404
    r = await api.raw.patch(f"/clients/{client_id}/tasks/{bad_id}", headers=headers, json={"title": "t"})
    assert r.status_code == 404


async def test_an_archived_client_takes_no_task_changes(api: Api, sessions: dict[str, Session]) -> None:
    headers = sessions["admin"].headers
    client_id = await new_client(api, sessions)
    task = await new_task(api, sessions["admin"], client_id)
    await api.raw.post(f"/clients/{client_id}/archive", headers=headers)

    created = await api.raw.post(f"/clients/{client_id}/tasks", headers=headers, json={"title": "late"})
    patched = await api.raw.patch(f"/clients/{client_id}/tasks/{task['id']}", headers=headers, json={"title": "x"})
    listed = await api.raw.get(f"/clients/{client_id}/tasks", headers=headers)

    assert created.status_code == patched.status_code == 409
    assert created.json()["detail"] == "client is archived"
    assert [t["id"] for t in listed.json()["items"]] == [task["id"]]


async def test_list_filters_by_status_and_pages_newest_first(api: Api, sessions: dict[str, Session]) -> None:
    client_id = await new_client(api, sessions)
    made = [await new_task(api, sessions["admin"], client_id, title=f"t{i}", status="todo") for i in range(3)]
    await new_task(api, sessions["admin"], client_id, title="finished", status="done")
    headers = sessions["admin"].headers

    todo = (
        await api.raw.get(f"/clients/{client_id}/tasks", headers=headers, params={"status": "todo", "pageSize": 2})
    ).json()
    last = (await api.raw.get(f"/clients/{client_id}/tasks", headers=headers,
                              params={"status": "todo", "pageSize": 2, "page": 2})).json()  # fmt: skip
    bad = await api.raw.get(f"/clients/{client_id}/tasks", headers=headers, params={"status": "blocked"})

    assert [t["id"] for t in todo["items"] + last["items"]] == [t["id"] for t in reversed(made)]
    assert (todo["total"], last["total"], todo["pageSize"]) == (3, 3, 2)
    assert bad.status_code == 422
