"""Safe concurrent edits: ETag and If-Match on clients, tasks and credentials (412 when someone changed it first),
and Idempotency-Key on their creates (a retry creates nothing and audits nothing more), as a user hits them."""

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.audit_support import wait_for_entries
from tests.system import Api, Session, new_task
from tests.vault_support import create, new_client

PROBLEM = "application/problem+json"
RACERS = 6


async def client_with_task_and_credential(api: Api, admin: Session) -> dict[str, str]:
    client_id = await new_client(api, admin)
    task = await new_task(api, admin, client_id)
    credential_id = await create(api, admin, client_id, label="Router", secret="s3cret-one")
    base = f"/clients/{client_id}"
    return {
        "client": base,
        "task": f"{base}/tasks/{task['id']}",
        "credential": f"{base}/credentials/{credential_id}",
        "client_id": client_id,
        "credential_id": credential_id,
    }


def read_path(kind: str, paths: dict[str, str]) -> str:
    """Where the object's ETag is read: a credential's metadata (its own GET is the audited reveal)."""
    return paths[kind] + ("/metadata" if kind == "credential" else "")


CHANGES = {
    "client": lambda n: {"notes": f"edit {n}"},
    "task": lambda n: {"title": f"edit {n}"},
    "credential": lambda n: {"label": f"edit {n}"},
}
KINDS = ("client", "task", "credential")


async def etag_of(api: Api, session: Session, path: str) -> tuple[str, dict[str, Any]]:
    r = await api.raw.get(path, headers=session.headers)
    assert r.status_code == 200, r.text
    return r.headers["etag"], r.json()


@pytest.mark.parametrize("kind", KINDS)
async def test_an_edit_with_the_etag_read_succeeds_and_moves_it(
    api: Api, sessions: dict[str, Session], kind: str
) -> None:
    manager = sessions["manager"]
    paths = await client_with_task_and_credential(api, sessions["admin"])
    tag, _ = await etag_of(api, manager, read_path(kind, paths))

    r = await api.raw.patch(paths[kind], headers={**manager.headers, "If-Match": tag}, json=CHANGES[kind](1))

    assert r.status_code == 200, r.text
    assert r.headers["etag"] != tag
    assert r.headers["etag"] == (await etag_of(api, manager, read_path(kind, paths)))[0]


@pytest.mark.parametrize("kind", KINDS)
async def test_an_edit_with_a_stale_etag_is_412_and_changes_nothing(
    api: Api, sessions: dict[str, Session], kind: str
) -> None:
    ana, bo = sessions["manager"], sessions["admin"]
    paths = await client_with_task_and_credential(api, bo)
    stale, _ = await etag_of(api, ana, read_path(kind, paths))
    bos = await api.raw.patch(paths[kind], headers={**bo.headers, "If-Match": stale}, json=CHANGES[kind]("bo"))
    assert bos.status_code == 200

    r = await api.raw.patch(paths[kind], headers={**ana.headers, "If-Match": stale}, json=CHANGES[kind]("ana"))

    assert r.status_code == 412
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert (body["type"], body["title"], body["status"]) == ("about:blank", "Precondition Failed", 412)
    assert f"the {kind} was changed since it was read" in body["detail"]
    now_tag, now = await etag_of(api, ana, read_path(kind, paths))
    assert now_tag == bos.headers["etag"]
    assert "edit bo" in now.values()
    assert "edit ana" not in now.values()


@pytest.mark.parametrize("kind", KINDS)
async def test_concurrent_edits_with_the_same_etag_one_wins(api: Api, sessions: dict[str, Session], kind: str) -> None:
    """Several users PATCH at the same moment with the ETag they all read: exactly one 200, the others 412."""
    admin = sessions["admin"]
    paths = await client_with_task_and_credential(api, admin)
    tag, _ = await etag_of(api, admin, read_path(kind, paths))
    users = [sessions["manager"], admin] * (RACERS // 2)
    # A client of its own per racer (its own connection), all sent at once.
    clients = [httpx.AsyncClient(base_url=api.system.url, timeout=30) for _ in users]
    try:
        answers = await asyncio.gather(
            *(
                http.patch(paths[kind], headers={**user.headers, "If-Match": tag}, json=CHANGES[kind](n))
                for n, (http, user) in enumerate(zip(clients, users, strict=True))
            )
        )
    finally:
        await asyncio.gather(*(http.aclose() for http in clients))

    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [412] * (RACERS - 1), [r.text for r in answers]
    [winner] = [r for r in answers if r.status_code == 200]
    final_tag, final = await etag_of(api, admin, read_path(kind, paths))
    assert final_tag == winner.headers["etag"]
    assert final == {k: v for k, v in winner.json().items() if k in final}


async def test_a_refused_credential_edit_is_not_audited(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    paths = await client_with_task_and_credential(api, admin)
    tag, _ = await etag_of(api, admin, read_path("credential", paths))
    first = await api.raw.patch(paths["credential"], headers={**admin.headers, "If-Match": tag}, json={"secret": "two"})
    second = await api.raw.patch(
        paths["credential"], headers={**admin.headers, "If-Match": tag}, json={"secret": "three"}
    )
    assert (first.status_code, second.status_code) == (200, 412)

    async with await psycopg.AsyncConnection.connect(api.system.info()["database_url"], autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "SELECT action FROM vault.outbox WHERE credential_id = %s ORDER BY occurred_at",
                (uuid.UUID(paths["credential_id"]),),
            )
        ).fetchall()
    assert [row[0] for row in rows] == ["credential_create", "credential_update"]
    revealed = await api.raw.get(paths["credential"], headers=admin.headers)
    assert revealed.json()["secret"] == "two"


async def test_a_reveal_does_not_move_the_etag(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    paths = await client_with_task_and_credential(api, admin)
    tag, _ = await etag_of(api, admin, read_path("credential", paths))

    assert (await api.raw.get(paths["credential"], headers=admin.headers)).status_code == 200
    r = await api.raw.patch(paths["credential"], headers={**admin.headers, "If-Match": tag}, json={"url": "https://x"})

    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("if_match", "status"),
    [("*", 200), ('"999", "1"', 200), ('W/"1"', 412), ("1", 412), ('"0"', 412), ("garbage", 412), ('"1', 412)],
)
async def test_if_match_forms(api: Api, sessions: dict[str, Session], if_match: str, status: int) -> None:
    """`*` and a list holding the current tag match; a weak tag (never, under strong comparison), a bare number or
    anything else does not."""
    admin = sessions["admin"]
    client = await new_client(api, admin)

    r = await api.raw.patch(f"/clients/{client}", headers={**admin.headers, "If-Match": if_match}, json={"notes": "x"})

    assert r.status_code == status, r.text


@pytest.mark.parametrize("kind", KINDS)
async def test_without_if_match_an_edit_behaves_as_before(api: Api, sessions: dict[str, Session], kind: str) -> None:
    admin = sessions["admin"]
    paths = await client_with_task_and_credential(api, admin)
    for n in range(3):
        r = await api.raw.patch(paths[kind], headers=admin.headers, json=CHANGES[kind](n))
        assert r.status_code == 200, r.text
    assert (await etag_of(api, admin, read_path(kind, paths)))[0] == '"4"'


async def test_a_task_or_credential_under_another_client_is_404(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    paths = await client_with_task_and_credential(api, admin)
    other = await new_client(api, admin)

    for kind in ("task", "credential"):
        foreign = read_path(kind, paths).replace(paths["client"], f"/clients/{other}")
        r = await api.raw.get(foreign, headers=admin.headers)
        assert r.status_code == 404, (kind, r.text)
        assert r.json()["detail"] == f"{kind} not found"


async def test_credential_metadata_is_there_for_every_role_and_holds_no_secret(
    api: Api, sessions: dict[str, Session]
) -> None:
    paths = await client_with_task_and_credential(api, sessions["admin"])

    r = await api.raw.get(read_path("credential", paths), headers=sessions["read_only"].headers)

    assert r.status_code == 200
    assert r.headers["etag"] == '"1"'
    assert r.json()["label"] == "Router"
    assert "secret" not in r.json()
    assert "s3cret-one" not in r.text


# Idempotency-Key

Where = Callable[[dict[str, str]], str]
CREATES: dict[str, tuple[Where, Callable[[str], dict[str, str]]]] = {
    "client": (lambda paths: "/clients", lambda n: {"name": f"Idem {n}"}),
    "task": (lambda paths: f"{paths['client']}/tasks", lambda n: {"title": f"Idem {n}"}),
    "credential": (lambda paths: f"{paths['client']}/credentials", lambda n: {"label": f"Idem {n}", "secret": "pw"}),
}


async def count_of(api: Api, session: Session, kind: str, paths: dict[str, str], marker: str) -> int:
    if kind == "client":
        r = await api.raw.get("/clients", headers=session.headers, params={"q": marker})
        return int(r.json()["total"])
    r = await api.raw.get(CREATES[kind][0](paths), headers=session.headers)
    items = r.json()["items"] if kind == "task" else r.json()
    return sum(1 for item in items if marker in item.get("title", item.get("label", "")))


@pytest.mark.parametrize("kind", KINDS)
async def test_a_retried_create_creates_one_object(api: Api, sessions: dict[str, Session], kind: str) -> None:
    manager = sessions["manager"]
    paths = await client_with_task_and_credential(api, sessions["admin"])
    marker = str(uuid.uuid4())
    where, body = CREATES[kind][0](paths), CREATES[kind][1](marker)
    headers = {**manager.headers, "Idempotency-Key": str(uuid.uuid4())}

    answers = [await api.raw.post(where, headers=headers, json=body) for _ in range(3)]

    assert [r.status_code for r in answers] == [201, 201, 201], answers[0].text
    assert answers[1].json() == answers[0].json() == answers[2].json()
    assert answers[1].headers["etag"] == answers[0].headers["etag"] == '"1"'
    assert await count_of(api, manager, kind, paths, marker) == 1


async def test_concurrent_first_requests_with_one_key_create_one_object(api: Api, sessions: dict[str, Session]) -> None:
    """A client that times out and retries at once: the copies race each other, one object is made."""
    manager = sessions["manager"]
    paths = await client_with_task_and_credential(api, sessions["admin"])
    key, marker = str(uuid.uuid4()), str(uuid.uuid4())
    clients = [httpx.AsyncClient(base_url=api.system.url, timeout=30) for _ in range(RACERS)]
    try:
        answers = await asyncio.gather(
            *(
                http.post(
                    f"{paths['client']}/credentials",
                    headers={**manager.headers, "Idempotency-Key": key},
                    json={"label": f"Race {marker}", "secret": "pw"},
                )
                for http in clients
            )
        )
    finally:
        await asyncio.gather(*(http.aclose() for http in clients))

    assert [r.status_code for r in answers] == [201] * RACERS, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert await count_of(api, manager, "credential", paths, marker) == 1


async def test_a_retried_credential_create_is_audited_once(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    client_id = await new_client(api, admin)
    headers = {**admin.headers, "Idempotency-Key": f"retry-{uuid.uuid4()}"}
    body = {"label": "Once", "secret": "pw-once"}

    answers = [await api.raw.post(f"/clients/{client_id}/credentials", headers=headers, json=body) for _ in range(3)]

    assert {r.status_code for r in answers} == {201}
    async with await psycopg.AsyncConnection.connect(api.system.info()["database_url"], autocommit=True) as conn:
        rows = await (
            await conn.execute("SELECT action FROM vault.outbox WHERE client_id = %s", (uuid.UUID(client_id),))
        ).fetchall()
    assert [row[0] for row in rows] == ["credential_create"]
    page = await wait_for_entries(api, admin, 1, clientId=client_id, action="credential_create")
    await asyncio.sleep(1)  # a second event, if there were one, would have been relayed by now
    page = await wait_for_entries(api, admin, 2, timeout_s=0, clientId=client_id, action="credential_create")
    assert page["total"] == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_the_same_key_with_another_body_is_422(api: Api, sessions: dict[str, Session], kind: str) -> None:
    manager = sessions["manager"]
    paths = await client_with_task_and_credential(api, sessions["admin"])
    marker = str(uuid.uuid4())
    where, body = CREATES[kind][0](paths), CREATES[kind][1]
    headers = {**manager.headers, "Idempotency-Key": str(uuid.uuid4())}
    assert (await api.raw.post(where, headers=headers, json=body(marker))).status_code == 201

    r = await api.raw.post(where, headers=headers, json=body(f"{marker} changed"))

    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["errors"] == [
        {"field": "idempotencyKey", "message": "Idempotency-Key was already used for another request"}
    ]
    assert await count_of(api, manager, kind, paths, marker) == 1


async def test_the_same_key_on_another_client_is_another_request(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    paths = await client_with_task_and_credential(api, admin)
    other = await new_client(api, admin)
    headers = {**admin.headers, "Idempotency-Key": str(uuid.uuid4())}
    body = {"title": "Same body"}
    assert (await api.raw.post(f"{paths['client']}/tasks", headers=headers, json=body)).status_code == 201

    r = await api.raw.post(f"/clients/{other}/tasks", headers=headers, json=body)

    assert r.status_code == 422


async def test_another_users_equal_key_never_gets_the_first_users_answer(
    api: Api, sessions: dict[str, Session]
) -> None:
    """An attacker who learns (or guesses) a victim's key and sends it with the same body gets an object of their
    own, never the victim's response."""
    victim, attacker = sessions["manager"], await api.session("manager")
    client_id = await new_client(api, sessions["admin"])
    key, body = str(uuid.uuid4()), {"label": "Shared key", "secret": "victim-secret"}
    where = f"/clients/{client_id}/credentials"
    first = await api.raw.post(where, headers={**victim.headers, "Idempotency-Key": key}, json=body)

    stolen = await api.raw.post(where, headers={**attacker.headers, "Idempotency-Key": key}, json=body)
    other_body = await api.raw.post(
        where, headers={**attacker.headers, "Idempotency-Key": key}, json={"label": "x", "secret": "y"}
    )

    assert (first.status_code, stolen.status_code) == (201, 201)
    assert stolen.json()["id"] != first.json()["id"]
    assert other_body.status_code == 422  # the attacker's own key now, used for their own request
    r = await api.raw.post("/clients", headers={**attacker.headers, "Idempotency-Key": key}, json={"name": "A"})
    assert r.status_code == 201  # the clients service keeps keys of its own


async def test_a_replay_answers_even_after_the_client_was_archived(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    client_id = await new_client(api, admin)
    headers = {**admin.headers, "Idempotency-Key": str(uuid.uuid4())}
    first = await api.raw.post(f"/clients/{client_id}/tasks", headers=headers, json={"title": "Before archive"})
    assert (await api.raw.post(f"/clients/{client_id}/archive", headers=admin.headers)).status_code == 204

    again = await api.raw.post(f"/clients/{client_id}/tasks", headers=headers, json={"title": "Before archive"})

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()


async def test_a_failed_create_keeps_no_key(api: Api, sessions: dict[str, Session]) -> None:
    """A create that was refused (here, a blank title) may be sent again with its key, fixed: nothing was
    remembered."""
    admin = sessions["admin"]
    client_id = await new_client(api, admin)
    headers = {**admin.headers, "Idempotency-Key": str(uuid.uuid4())}
    refused = await api.raw.post(f"/clients/{client_id}/tasks", headers=headers, json={"title": "   "})
    assert refused.status_code == 422

    r = await api.raw.post(f"/clients/{client_id}/tasks", headers=headers, json={"title": "Fixed"})

    assert r.status_code == 201, r.text


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "ключ"])
async def test_a_malformed_key_is_422(api: Api, sessions: dict[str, Session], key: str) -> None:
    admin = sessions["admin"]

    headers = [(name.encode(), value.encode()) for name, value in admin.headers.items()]

    r = await api.raw.post("/clients", headers=[*headers, (b"Idempotency-Key", key.encode())], json={"name": "K"})

    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "idempotencyKey"  # as the service names it when it refuses a key
