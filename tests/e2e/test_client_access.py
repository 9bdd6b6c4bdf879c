"""Per-client access and archive both ways, through the gateway, as a technician, an admin and an attacker try it.

A system of its own runs with CLIENTVAULT_CLIENT_SCOPING=on (as the production overlay does): a manager who is not a
member of a client finds nothing of it, not through any route, not in a search or a total, not by a direct gRPC call
to the vault with their own token; an admin adds them and they work on it; removing them closes it again at once.
The run's shared system keeps scoping off: there everything behaves as before members existed.
"""

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from clientvault import ed25519
from clientvault.convert import timestamp
from clientvault.events import EventSigner
from clientvault.v1 import clients_pb2, clients_pb2_grpc, events_pb2, vault_pb2, vault_pb2_grpc
from tests.audit_support import signed, vault_signer, wait_for_entries
from tests.system import Api, Session, System, me, new_task, running
from tests.vault_support import create

PROBLEM = "application/problem+json"
# Break-glass on, and the end of expired grants looked for every second (15 s by default).
SCOPED_ENV = {
    "CLIENTVAULT_TRUSTED_PROXIES": "127.0.0.1/32",
    "CLIENTVAULT_CLIENT_SCOPING": "on",
    "CLIENTVAULT_BREAK_GLASS": "on",
    "CLIENTVAULT_GRANT_SWEEP_INTERVAL_S": "1",
}
NOT_FOUND = {"type": "about:blank", "title": "Not Found", "status": 404}


@pytest.fixture(scope="module")
def scoped_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running(Path(tmp_path_factory.mktemp("scoped")) / "data", SCOPED_ENV) as started:
        yield started


@pytest.fixture(scope="module")
async def scoped(scoped_system: System) -> AsyncIterator[Api]:
    async with Api(scoped_system) as client:
        yield client


async def new_client(api: Api, session: Session, name: str | None = None, **body: Any) -> dict[str, Any]:
    r = await api.raw.post("/clients", headers=session.headers, json={"name": name or f"Acme {uuid.uuid4()}", **body})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def a_client_with_everything(api: Api, admin: Session, name: str | None = None) -> dict[str, str]:
    """A client made by an admin, with a task and a credential (whose secret changed once: it has a version)."""
    client = await new_client(api, admin, name)
    task = await new_task(api, admin, client["id"])
    credential_id = await create(api, admin, client["id"], label="Router", secret="hunter2-router")
    changed = await api.raw.patch(
        f"/clients/{client['id']}/credentials/{credential_id}", headers=admin.headers, json={"secret": "hunter3"}
    )
    assert changed.status_code == 200, changed.text
    return {"client": client["id"], "task": task["id"], "credential": credential_id, "name": client["name"]}


def every_route_of(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every client, task and credential route a manager's role allows, on this client."""
    c, t, k = ids["client"], ids["task"], ids["credential"]
    return [
        ("GET", f"/clients/{c}", None),
        ("PATCH", f"/clients/{c}", {"notes": "mine now"}),
        ("GET", f"/clients/{c}/members", None),
        ("GET", f"/clients/{c}/tasks", None),
        ("POST", f"/clients/{c}/tasks", {"title": "Planted"}),
        ("PATCH", f"/clients/{c}/tasks/{t}", {"title": "Renamed"}),
        ("DELETE", f"/clients/{c}/tasks/{t}", None),
        ("GET", f"/clients/{c}/credentials", None),
        ("POST", f"/clients/{c}/credentials", {"label": "Planted", "secret": "planted"}),
        ("GET", f"/clients/{c}/credentials/{k}", None),
        ("PATCH", f"/clients/{c}/credentials/{k}", {"secret": "overwritten"}),
        ("GET", f"/clients/{c}/credentials/{k}/versions", None),
        ("POST", f"/clients/{c}/credentials/{k}/versions/1/reveal", None),
        ("POST", f"/clients/{c}/credentials/{k}/versions/1/restore", None),
    ]


async def test_a_manager_who_is_not_a_member_gets_404_on_every_route_of_the_client(scoped: Api) -> None:
    admin, outsider = await scoped.session("admin"), await scoped.session("manager")
    ids = await a_client_with_everything(scoped, admin)

    answers = []
    for method, path, body in every_route_of(ids):
        r = await scoped.raw.request(method, path, headers=outsider.headers, json=body)
        answers.append((method, path, r.status_code, r.headers["content-type"]))

    assert [(m, p) for m, p, status, kind in answers if (status, kind) != (404, PROBLEM)] == []
    # nothing changed: the secret, the task and the client are as the admin left them
    revealed = await scoped.raw.get(f"/clients/{ids['client']}/credentials/{ids['credential']}", headers=admin.headers)
    assert revealed.json()["secret"] == "hunter3"
    tasks = await scoped.raw.get(f"/clients/{ids['client']}/tasks", headers=admin.headers)
    assert [task["title"] for task in tasks.json()["items"]] == ["Renew TLS"]
    assert (await scoped.raw.get(f"/clients/{ids['client']}", headers=admin.headers)).json()["notes"] is None


async def test_a_guessed_client_and_a_hidden_one_answer_alike(scoped: Api) -> None:
    admin, outsider = await scoped.session("admin"), await scoped.session("manager")
    ids = await a_client_with_everything(scoped, admin)

    hidden = await scoped.raw.get(f"/clients/{ids['client']}", headers=outsider.headers)
    unknown = await scoped.raw.get(f"/clients/{uuid.uuid4()}", headers=outsider.headers)

    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json() == unknown.json() == {**NOT_FOUND, "detail": "client not found"}


async def test_search_and_totals_leave_out_what_a_manager_may_not_see(scoped: Api) -> None:
    admin, tech = await scoped.session("admin"), await scoped.session("manager")
    word = f"quokka{uuid.uuid4().hex[:8]}"
    hidden = await new_client(scoped, admin, f"{word} Hidden Ltd")
    visible = await new_client(scoped, admin, f"{word} Visible Ltd")
    put = await scoped.raw.put(f"/clients/{visible['id']}/members/{await me(scoped, tech)}", headers=admin.headers)
    assert put.status_code == 200, put.text

    searched = (await scoped.raw.get("/clients", params={"q": word}, headers=tech.headers)).json()
    everything = (await scoped.raw.get("/clients", params={"pageSize": 100}, headers=tech.headers)).json()
    as_admin = (await scoped.raw.get("/clients", params={"q": word}, headers=admin.headers)).json()

    assert ([c["id"] for c in searched["items"]], searched["total"]) == ([visible["id"]], 1)
    assert ([c["id"] for c in everything["items"]], everything["total"]) == ([visible["id"]], 1)
    assert ({c["id"] for c in as_admin["items"]}, as_admin["total"]) == ({hidden["id"], visible["id"]}, 2)


async def test_a_member_works_on_the_client_until_removed_then_404_again(scoped: Api) -> None:
    admin, tech = await scoped.session("admin"), await scoped.session("manager")
    ids = await a_client_with_everything(scoped, admin)
    tech_id = await me(scoped, tech)
    reveal = f"/clients/{ids['client']}/credentials/{ids['credential']}"
    before = await scoped.raw.get(reveal, headers=tech.headers)

    added = await scoped.raw.put(f"/clients/{ids['client']}/members/{tech_id}", headers=admin.headers)
    again = await scoped.raw.put(f"/clients/{ids['client']}/members/{tech_id}", headers=admin.headers)
    revealed = await scoped.raw.get(reveal, headers=tech.headers)
    task = await scoped.raw.post(f"/clients/{ids['client']}/tasks", headers=tech.headers, json={"title": "Rotate"})
    members = (await scoped.raw.get(f"/clients/{ids['client']}/members", headers=tech.headers)).json()["items"]
    removed = await scoped.raw.delete(f"/clients/{ids['client']}/members/{tech_id}", headers=admin.headers)
    after = await scoped.raw.get(reveal, headers=tech.headers)
    removed_again = await scoped.raw.delete(f"/clients/{ids['client']}/members/{tech_id}", headers=admin.headers)

    assert before.status_code == 404
    assert added.status_code == 200, added.text
    assert added.json()["userId"] == tech_id
    assert again.json() == added.json()  # idempotent: first added stays
    assert (revealed.status_code, revealed.json()["secret"]) == (200, "hunter3")
    assert task.status_code == 201, task.text
    assert {m["userId"] for m in members} == {tech_id, await me(scoped, admin)}  # the creator is a member
    assert removed.status_code == 204
    assert (after.status_code, after.json()["detail"]) == (404, "client not found")  # no wait: the cache was told
    assert removed_again.status_code == 404


async def test_a_direct_grpc_reveal_with_a_non_members_token_is_refused_by_the_vault(
    scoped: Api, scoped_system: System
) -> None:
    admin, outsider = await scoped.session("admin"), await scoped.session("manager")
    ids = await a_client_with_everything(scoped, admin)

    async with grpc.aio.insecure_channel(scoped_system.info_address("vault")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await vault_pb2_grpc.VaultStub(channel).RevealCredential(
                vault_pb2.RevealCredentialRequest(client_id=ids["client"], credential_id=ids["credential"]),
                metadata=(("authorization", f"Bearer {outsider.access_token}"),),
                timeout=5,
            )

    assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    assert "hunter" not in (refused.value.details() or "")


async def test_a_manager_sees_the_clients_they_create(scoped: Api) -> None:
    tech = await scoped.session("manager")
    client = await new_client(scoped, tech)

    fetched = await scoped.raw.get(f"/clients/{client['id']}", headers=tech.headers)
    credential = await scoped.raw.post(
        f"/clients/{client['id']}/credentials", headers=tech.headers, json={"label": "Wi-Fi", "secret": "pw"}
    )

    assert fetched.status_code == 200
    assert credential.status_code == 201, credential.text


async def test_only_an_admin_changes_members_and_a_read_only_non_member_cannot_list_them(scoped: Api) -> None:
    admin_s, manager_s, viewer_s = [await scoped.session(role) for role in ("admin", "manager", "read_only")]
    client = await new_client(scoped, manager_s)  # the manager created it: a member

    by_manager = await scoped.raw.put(f"/clients/{client['id']}/members/{await me(scoped, viewer_s)}",
                                      headers=manager_s.headers)  # fmt: skip
    listed_by_viewer = await scoped.raw.get(f"/clients/{client['id']}/members", headers=viewer_s.headers)
    not_a_user = await scoped.raw.put(f"/clients/{client['id']}/members/{uuid.uuid4()}", headers=admin_s.headers)

    assert by_manager.status_code == 403
    assert listed_by_viewer.status_code == 404
    assert (not_a_user.status_code, not_a_user.json()["errors"][0]["field"]) == (422, "userId")


async def test_member_changes_and_unarchive_are_signed_entries_of_the_audit_chain(
    scoped: Api, scoped_system: System
) -> None:
    admin, tech = await scoped.session("admin"), await scoped.session("manager")
    admin_id, tech_id = await me(scoped, admin), await me(scoped, tech)
    client = await new_client(scoped, admin)
    members = f"/clients/{client['id']}/members/{tech_id}"
    assert (await scoped.raw.put(members, headers=admin.headers)).status_code == 200
    assert (await scoped.raw.put(members, headers=admin.headers)).status_code == 200  # again: no second event
    assert (await scoped.raw.delete(members, headers=admin.headers)).status_code == 204
    assert (await scoped.raw.post(f"/clients/{client['id']}/archive", headers=admin.headers)).status_code == 204
    assert (await scoped.raw.post(f"/clients/{client['id']}/archive", headers=admin.headers)).status_code == 204
    assert (await scoped.raw.post(f"/clients/{client['id']}/unarchive", headers=admin.headers)).status_code == 200
    assert (await scoped.raw.post(f"/clients/{client['id']}/unarchive", headers=admin.headers)).status_code == 200

    page = await wait_for_entries(scoped, admin, 4, clientId=client["id"])
    entries = sorted(page["items"], key=lambda entry: entry["occurredAt"])
    verified = scoped_system.cli("audit", "verify")

    assert [e["action"] for e in entries] == [
        "client_member_added",
        "client_member_removed",
        "client_archived",  # once: archiving again writes nothing
        "client_unarchived",
    ]
    assert {e["userId"] for e in entries} == {admin_id}
    assert [(e.get("targetUser") or {}).get("id") for e in entries] == [tech_id, tech_id, None, None]
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_non_members_refused_reveal_is_in_the_audit_log_and_answers_as_an_unknown_client(
    scoped: Api,
) -> None:
    admin, outsider = await scoped.session("admin"), await scoped.session("manager")
    ids = await a_client_with_everything(scoped, admin)

    hidden = await scoped.raw.get(f"/clients/{ids['client']}/credentials/{ids['credential']}", headers=outsider.headers)
    said = await scoped.raw.post(
        f"/clients/{ids['client']}/credentials/{ids['credential']}/reveal",
        headers=outsider.headers,
        json={"reason": "just looking"},
    )
    code = await scoped.raw.get(
        f"/clients/{ids['client']}/credentials/{ids['credential']}/totp", headers=outsider.headers
    )
    unknown = await scoped.raw.get(f"/clients/{uuid.uuid4()}/credentials/{ids['credential']}", headers=outsider.headers)
    page = await wait_for_entries(scoped, admin, 3, clientId=ids["client"], action="reveal_denied")

    assert hidden.status_code == said.status_code == code.status_code == unknown.status_code == 404
    assert hidden.json() == said.json() == code.json() == unknown.json() == {**NOT_FOUND, "detail": "client not found"}
    assert [(e["userId"], e["credentialId"], e["detail"]) for e in page["items"]] == [
        (await me(scoped, outsider), ids["credential"], {"reason": "not a member of the client (or no such client)"})
    ] * 3


# --- access requests, grants and break-glass (scoping on) -------------------------------------------------------

MILLISECOND = timedelta(milliseconds=1)
GRANT_WAIT_S = 100  # a 1-minute grant, then the sweep's second and the vault's cache drop


async def ask(api: Api, tech: Session, client_id: str, **body: Any) -> Any:
    r = await api.raw.post(
        f"/clients/{client_id}/access-requests",
        headers=tech.headers,
        json={"reason": "INC-4711 firewall down", "ticketRef": "INC-4711", "minutes": 30, **body},
    )
    return r


async def decide(api: Api, admin: Session, request_id: str, verdict: str) -> Any:
    return await api.raw.post(f"/access-requests/{request_id}/{verdict}", headers=admin.headers)


async def test_an_approved_request_opens_the_client_until_the_grant_ends_by_itself(
    scoped: Api, scoped_system: System
) -> None:
    """A real 1-minute grant: the technician reveals under it, then, with nobody acting, everything is 404 again."""
    admin, tech = await scoped.session("admin"), await scoped.session("manager")
    tech_id = await me(scoped, tech)
    word = f"ibex{uuid.uuid4().hex[:8]}"
    ids = await a_client_with_everything(scoped, admin, f"{word} Ltd")
    client, reveal = ids["client"], f"/clients/{ids['client']}/credentials/{ids['credential']}"

    def hidden() -> list[tuple[str, dict[str, Any] | None]]:
        return [(path, None) for path in (f"/clients/{client}", f"/clients/{client}/tasks", reveal)]

    before = [(await scoped.raw.get(path, headers=tech.headers)).status_code for path, _ in hidden()]
    asked = await ask(scoped, tech, client, minutes=1)
    approved = await decide(scoped, admin, asked.json()["id"], "approve")
    opened = [(await scoped.raw.get(path, headers=tech.headers)).status_code for path, _ in hidden()]
    revealed = await scoped.raw.get(reveal, headers=tech.headers)
    searched = (await scoped.raw.get("/clients", params={"q": word}, headers=tech.headers)).json()
    active = (await scoped.raw.get("/access-requests", params={"status": "active"}, headers=tech.headers)).json()

    assert before == [404, 404, 404]
    assert asked.status_code == 201, asked.text
    body = asked.json()
    assert (body["status"], body["clientId"], body["userId"], body["minutes"]) == ("pending", client, tech_id, 1)
    assert (body["reason"], body["ticketRef"], body["expiresAt"], body["active"]) == (
        "INC-4711 firewall down",
        "INC-4711",
        None,
        False,
    )
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["active"]) == ("approved", True)
    assert opened == [200, 200, 200]
    assert revealed.json()["secret"] == "hunter3"
    assert ([c["id"] for c in searched["items"]], searched["total"]) == ([client], 1)
    assert [g["id"] for g in active["items"]] == [body["id"]]

    # Nobody acts from here on: the grant ends at its expiresAt.
    deadline = time.monotonic() + GRANT_WAIT_S
    statuses = opened
    while time.monotonic() < deadline and statuses != [404, 404, 404]:
        await asyncio.sleep(1)
        statuses = [(await scoped.raw.get(path, headers=tech.headers)).status_code for path, _ in hidden()]
    ended_at = datetime.now(UTC)
    after_search = (await scoped.raw.get("/clients", params={"q": word}, headers=tech.headers)).json()

    assert statuses == [404, 404, 404]
    assert ended_at >= datetime.fromisoformat(approved.json()["expiresAt"])
    assert (after_search["items"], after_search["total"]) == ([], 0)
    page = await wait_for_entries(scoped, admin, 4, clientId=client, action="access_grant_ended")
    assert [e["detail"]["ended"] for e in page["items"]] == ["expired"]
    verified = scoped_system.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_nobody_approves_their_own_request_even_once_promoted_and_a_denial_stays(scoped: Api) -> None:
    admin, tech = await scoped.session("admin"), await scoped.session("manager")
    tech_id = await me(scoped, tech)
    ids = await a_client_with_everything(scoped, admin)
    asked = (await ask(scoped, tech, ids["client"])).json()
    by_requester_as_manager = await decide(scoped, tech, asked["id"], "approve")
    by_admin_requesting = await ask(scoped, admin, ids["client"])
    promoted = await scoped.raw.patch(f"/users/{tech_id}", headers=admin.headers, json={"role": "admin"})
    assert promoted.status_code == 200, promoted.text
    await asyncio.sleep(1.1)  # a role change revokes the tokens issued up to its second: sign in after it
    as_admin_now = await scoped.sign_in(tech.account)

    own = await decide(scoped, as_admin_now, asked["id"], "approve")
    own_deny = await decide(scoped, as_admin_now, asked["id"], "deny")
    denied = await decide(scoped, admin, asked["id"], "deny")
    approve_denied = await decide(scoped, admin, asked["id"], "approve")

    assert by_requester_as_manager.status_code == 403
    assert by_admin_requesting.status_code == 403
    assert (own.status_code, own.headers["content-type"]) == (403, PROBLEM)
    assert own.json()["detail"] == "nobody approves or denies their own access request: another admin must"
    assert own_deny.status_code == 403
    assert (denied.status_code, denied.json()["status"], denied.json()["decidedByUserId"]) == (
        200,
        "denied",
        await me(scoped, admin),
    )
    assert (approve_denied.status_code, approve_denied.json()["detail"]) == (
        409,
        "the access request is denied already",
    )


async def test_a_denied_request_opens_nothing_and_a_revoked_grant_closes_at_once(scoped: Api) -> None:
    admin, tech = await scoped.session("admin"), await scoped.session("manager")
    ids = await a_client_with_everything(scoped, admin)
    reveal = f"/clients/{ids['client']}/credentials/{ids['credential']}"
    first = (await ask(scoped, tech, ids["client"])).json()
    assert (await decide(scoped, admin, first["id"], "deny")).status_code == 200
    after_denial = await scoped.raw.get(reveal, headers=tech.headers)
    second = (await ask(scoped, tech, ids["client"])).json()  # a denied request is no longer pending
    assert (await decide(scoped, admin, second["id"], "approve")).status_code == 200
    during = await scoped.raw.get(reveal, headers=tech.headers)
    twice = await ask(scoped, tech, ids["client"])

    revoked = await scoped.raw.delete(f"/grants/{second['id']}", headers=admin.headers)
    after = await scoped.raw.get(reveal, headers=tech.headers)
    again = await scoped.raw.delete(f"/grants/{second['id']}", headers=admin.headers)
    by_tech = await scoped.raw.delete(f"/grants/{second['id']}", headers=tech.headers)
    a_request = await scoped.raw.delete(f"/grants/{first['id']}", headers=admin.headers)
    too_long = await ask(scoped, tech, ids["client"], minutes=481)

    assert after_denial.status_code == 404
    assert during.status_code == 200
    assert (twice.status_code, twice.json()["detail"]) == (409, "you hold an active grant for this client already")
    assert revoked.status_code == 204
    assert (after.status_code, after.json()["detail"]) == (404, "client not found")  # no wait: the vault was told
    assert again.status_code == 409
    assert by_tech.status_code == 403
    assert a_request.status_code == 404  # a denied request is no grant
    assert too_long.status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "INC-1 down\n2026-12-04 admin approved"}, "reason"),  # a forged second line in the log
        ({"reason": "\x1b[2Jall clear"}, "reason"),  # an escape sequence for whoever reads it in a terminal
        ({"reason": "INC-1 down", "ticketRef": "INC-1\r\nINC-2"}, "ticketRef"),
    ],
)
async def test_an_access_requests_words_are_one_line_like_a_reveals(
    scoped: Api, scoped_system: System, body: dict[str, Any], field: str
) -> None:
    """The reason and ticket go into signed audit events, read as lines: the rule a reveal's reason follows, at the
    gateway and in the clients service on a direct call alike."""
    admin, tech = await scoped.session("admin"), await scoped.session("manager")
    client = await new_client(scoped, admin)

    r = await scoped.raw.post(
        f"/clients/{client['id']}/access-requests", headers=tech.headers, json={"minutes": 30, **body}
    )
    async with grpc.aio.insecure_channel(scoped_system.info_address("clients")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as direct:
            await clients_pb2_grpc.ClientsStub(channel).RequestAccess(
                clients_pb2.RequestAccessRequest(
                    client_id=client["id"], reason=body["reason"], ticket_ref=body.get("ticketRef"), minutes=30
                ),
                metadata=(("authorization", f"Bearer {tech.access_token}"),),
                timeout=5,
            )
    listed = await scoped.raw.get("/access-requests", headers=admin.headers, params={"status": "pending"})

    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert direct.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert client["id"] not in [item["clientId"] for item in listed.json()["items"]]


async def test_break_glass_opens_at_once_and_its_end_leaves_one_rotation_task_per_revealed_credential(
    scoped: Api, scoped_system: System
) -> None:
    admin, tech, viewer = [await scoped.session(role) for role in ("admin", "manager", "read_only")]
    tech_id = await me(scoped, tech)
    ids = await a_client_with_everything(scoped, admin)
    client = ids["client"]
    router, unseen = ids["credential"], await create(scoped, admin, client, label="Unseen", secret="u-1")
    nas = await create(scoped, admin, client, label="NAS", secret="n-1")
    before = await scoped.raw.get(f"/clients/{client}/credentials/{router}", headers=tech.headers)

    by_viewer = await scoped.raw.post(f"/clients/{client}/break-glass", headers=viewer.headers, json={"reason": "x"})
    broken = await scoped.raw.post(
        f"/clients/{client}/break-glass", headers=tech.headers, json={"reason": "P1 outage, on-call alone"}
    )
    for credential_id in (router, router, nas):
        r = await scoped.raw.get(f"/clients/{client}/credentials/{credential_id}", headers=tech.headers)
        assert r.status_code == 200, r.text
    ended = await scoped.raw.delete(f"/grants/{broken.json()['id']}", headers=admin.headers)
    tasks = await wait_for_rotation_tasks(scoped, admin, client, 2)

    assert before.status_code == 404
    assert by_viewer.status_code == 403
    assert broken.status_code == 201, broken.text
    grant = broken.json()
    assert (grant["breakGlass"], grant["minutes"], grant["status"], grant["active"]) == (True, 60, "approved", True)
    assert ended.status_code == 204
    assert sorted(t["title"].split(":")[0] for t in tasks) == ["Rotate NAS", "Rotate Router"]
    assert all("revealed under break-glass by" in t["title"] for t in tasks)
    assert {(t["priority"], t["assigneeUserId"]) for t in tasks} == {("high", await me(scoped, admin))}
    assert unseen not in str(tasks)

    entries = (await wait_for_entries(scoped, admin, 1, clientId=client, action="break_glass"))["items"]
    assert [(e["userId"], (e.get("targetUser") or {}).get("id")) for e in entries] == [(tech_id, tech_id)]
    detail = dict(entries[0]["detail"])
    for key, answered in (("expiresAt", grant["expiresAt"]), ("startedAt", grant["decidedAt"])):  # µs vs ms
        assert abs(datetime.fromisoformat(detail.pop(key)) - datetime.fromisoformat(answered)) < MILLISECOND
    assert detail == {
        "breakGlass": True,
        "grantId": grant["id"],
        "minutes": 60,
        "reason": "P1 outage, on-call alone",
        "requestId": grant["id"],
    }
    ends = (await wait_for_entries(scoped, admin, 1, clientId=client, action="access_grant_ended"))["items"]
    assert [e["detail"]["ended"] for e in ends] == ["revoked"]
    verified = scoped_system.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def wait_for_rotation_tasks(
    api: Api, admin: Session, client_id: str, count: int, timeout_s: float = 30
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = await api.raw.get(f"/clients/{client_id}/tasks", headers=admin.headers, params={"pageSize": 100})
        tasks = [t for t in r.json()["items"] if t["title"].startswith("Rotate ")]
        if len(tasks) >= count or time.monotonic() > deadline:
            return tasks
        await asyncio.sleep(0.2)


async def broken_revealed_and_ended(api: Api, admin: Session, tech: Session) -> tuple[dict[str, str], str]:
    """A new client whose one credential the technician reveals under a break-glass that an admin then ends: the
    client's ids and the grant's id, once the rotation task of that end is there."""
    ids = await a_client_with_everything(api, admin)
    broken = await api.raw.post(f"/clients/{ids['client']}/break-glass", headers=tech.headers, json={"reason": "P1"})
    revealed = await api.raw.get(f"/clients/{ids['client']}/credentials/{ids['credential']}", headers=tech.headers)
    ended = await api.raw.delete(f"/grants/{broken.json()['id']}", headers=admin.headers)
    assert (broken.status_code, revealed.status_code, ended.status_code) == (201, 200, 204)
    assert len(await wait_for_rotation_tasks(api, admin, ids["client"], 1)) == 1
    return ids, str(broken.json()["id"])


@pytest.mark.skipif(bool(os.environ.get("NATS_URL")), reason="publishes as the embedded NATS server's operator")
async def test_a_break_glass_end_delivered_again_adds_no_task(scoped: Api, scoped_system: System) -> None:
    admin, tech = await scoped.session("admin"), await scoped.session("manager")
    ids, grant_id = await broken_revealed_and_ended(scoped, admin, tech)
    first = await wait_for_rotation_tasks(scoped, admin, ids["client"], 1)

    nats_url = scoped_system.info()["nats_url"]
    original = await published_end(nats_url, grant_id)
    await republish(nats_url, GRANT_ENDED, original, original)
    # A later break-glass end on the same consumer: once its task is there, the copies before it were handled.
    await broken_revealed_and_ended(scoped, admin, tech)

    again = await wait_for_rotation_tasks(scoped, admin, ids["client"], 2)
    assert [t["id"] for t in again] == [t["id"] for t in first]


GRANT_ENDED = "audit.clients.access_grant_ended"


def a_break_glass_end(client_id: str, user_id: str) -> events_pb2.AuditEvent:
    """An access_grant_ended event saying a break-glass of the user on the client ended (as the clients service
    writes one, unsigned), for a grant that never was."""
    started = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    detail = {"breakGlass": True, "ended": "revoked", "grantId": str(uuid.uuid4()), "startedAt": started}
    return events_pb2.AuditEvent(
        event_id=str(uuid.uuid4()),
        action=events_pb2.AUDIT_ACTION_ACCESS_GRANT_ENDED,
        occurred_at=timestamp(datetime.now(UTC)),
        user_full_name="clients service (grant expiry)",
        client_id=client_id,
        target_user_id=user_id,
        detail=json.dumps(detail, sort_keys=True, separators=(",", ":")),
    )


@pytest.mark.skipif(bool(os.environ.get("NATS_URL")), reason="publishes as the embedded NATS server's operator")
async def test_a_forged_break_glass_end_makes_no_task(scoped: Api, scoped_system: System) -> None:
    """Someone who can publish on the stream (another process's NATS user, the operator's) cannot make rotation
    tasks appear: unsigned, signed by the vault's key, or by an unknown key named "clients", the vault refuses it."""
    admin, tech = await scoped.session("admin"), await scoped.session("manager")
    ids = await a_client_with_everything(scoped, admin)
    tech_id = await me(scoped, tech)
    assert (await scoped.raw.put(f"/clients/{ids['client']}/members/{tech_id}", headers=admin.headers)).is_success
    revealed = await scoped.raw.get(f"/clients/{ids['client']}/credentials/{ids['credential']}", headers=tech.headers)
    assert revealed.status_code == 200  # an exposure a genuine end would turn into a task
    stranger = EventSigner("clients", ed25519.private_key(ed25519.generate(), "attacker"))
    forged = [
        a_break_glass_end(ids["client"], tech_id),  # unsigned
        signed(a_break_glass_end(ids["client"], tech_id), vault_signer(scoped_system)),  # not the clients' key
        signed(a_break_glass_end(ids["client"], tech_id), stranger),  # "clients" by name, a key nobody trusts
    ]

    await republish(scoped_system.info()["nats_url"], GRANT_ENDED, *(event.SerializeToString() for event in forged))
    await broken_revealed_and_ended(scoped, admin, tech)  # a genuine end behind them: they were handled by then

    assert await wait_for_rotation_tasks(scoped, admin, ids["client"], 1, timeout_s=0) == []


async def published_end(nats_url: str, grant_id: str) -> bytes:
    """The bytes the clients service published when the grant ended (as anyone reading the stream can copy them)."""
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe(
            GRANT_ENDED,
            stream="AUDIT",
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for msg in await sub.fetch(500, timeout=5):
                if json.loads(events_pb2.AuditEvent.FromString(msg.data).detail).get("grantId") == grant_id:
                    return bytes(msg.data)
        raise AssertionError(f"no access_grant_ended event of {grant_id} in the stream")
    finally:
        await nc.close()


async def republish(nats_url: str, subject: str, *payloads: bytes) -> None:
    """As the operator, each payload again under a message id of its own (past the stream's duplicate window)."""
    nc = await nats.connect(nats_url)
    try:
        for data in payloads:
            await nc.jetstream().publish(subject, data, headers={"Nats-Msg-Id": str(uuid.uuid4())})
    finally:
        await nc.close()


# --- the shared system: scoping off -------------------------------------------------------------------------


async def test_with_scoping_off_a_non_member_sees_and_lists_every_client(
    api: Api, sessions: dict[str, Session]
) -> None:
    client = await new_client(api, sessions["admin"])

    fetched = await api.raw.get(f"/clients/{client['id']}", headers=sessions["read_only"].headers)
    members = await api.raw.get(f"/clients/{client['id']}/members", headers=sessions["manager"].headers)

    assert fetched.status_code == 200
    assert [m["userId"] for m in members.json()["items"]] == [client["ownerUserId"]]


async def test_archived_clients_are_listed_for_admins_and_unarchived(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    word = f"wombat{uuid.uuid4().hex[:8]}"
    client = await new_client(api, admin, f"{word} Archived")
    live = await new_client(api, admin, f"{word} Live")
    assert (await api.raw.post(f"/clients/{client['id']}/archive", headers=admin.headers)).status_code == 204

    archived = (await api.raw.get("/clients", params={"status": "archived", "q": word}, headers=admin.headers)).json()
    by_manager = await api.raw.get("/clients", params={"status": "archived"}, headers=sessions["manager"].headers)
    unarchived = await api.raw.post(f"/clients/{client['id']}/unarchive", headers=admin.headers)
    again = await api.raw.post(f"/clients/{client['id']}/unarchive", headers=admin.headers)
    after = (await api.raw.get("/clients", params={"status": "archived", "q": word}, headers=admin.headers)).json()
    live_now = (await api.raw.get("/clients", params={"q": word}, headers=admin.headers)).json()
    task = await api.raw.post(f"/clients/{client['id']}/tasks", headers=admin.headers, json={"title": "Back"})

    assert ([c["id"] for c in archived["items"]], archived["total"]) == ([client["id"]], 1)
    assert archived["items"][0]["status"] == "archived"
    assert by_manager.status_code == 403
    assert by_manager.headers["content-type"] == PROBLEM
    assert unarchived.status_code == 200, unarchived.text
    assert (unarchived.json()["status"], unarchived.json()["archivedAt"]) == ("active", None)
    assert again.json() == unarchived.json()
    assert after["total"] == 0
    assert {c["id"] for c in live_now["items"]} == {client["id"], live["id"]}
    assert task.status_code == 201


async def test_unarchive_is_admin_only_and_404_for_an_unknown_client(api: Api, sessions: dict[str, Session]) -> None:
    client = await new_client(api, sessions["admin"])

    by_manager = await api.raw.post(f"/clients/{client['id']}/unarchive", headers=sessions["manager"].headers)
    unknown = await api.raw.post(f"/clients/{uuid.uuid4()}/unarchive", headers=sessions["admin"].headers)

    assert by_manager.status_code == 403
    assert unknown.status_code == 404


@pytest.mark.parametrize("email", ["it@acme.local", "ops@globex.test", "admin@corp.internal"])
async def test_contact_emails_on_internal_and_reserved_domains_are_kept(
    api: Api, sessions: dict[str, Session], email: str
) -> None:
    created = await api.raw.post(
        "/clients", headers=sessions["manager"].headers, json={"name": f"On-prem {uuid.uuid4()}", "email": email}
    )
    patched = await api.raw.patch(
        f"/clients/{created.json()['id']}", headers=sessions["manager"].headers, json={"email": email}
    )

    assert created.status_code == 201, created.text
    assert (created.json()["email"], patched.json()["email"]) == (email, email)


# --- reveal reasons (issue 16 item 4), on the shared system ---------------------------------------------------

NEEDS_REASON = {
    "type": "about:blank",
    "title": "Precondition Required",
    "status": 428,
    "detail": "this client requires a reason for every reveal: give one (reason)",
}


async def test_a_reason_required_client_reveals_only_with_a_reason_and_the_audit_log_keeps_it(
    api: Api, system: System, sessions: dict[str, Session]
) -> None:
    admin, manager = sessions["admin"], sessions["manager"]
    client = await new_client(api, admin)
    credential_id = await create(api, admin, client["id"], label="Firewall", secret="old-firewall")
    changed = await api.raw.patch(
        f"/clients/{client['id']}/credentials/{credential_id}", headers=admin.headers, json={"secret": "new-firewall"}
    )
    assert changed.status_code == 200, changed.text
    credential = f"/clients/{client['id']}/credentials/{credential_id}"
    before = await api.raw.get(credential, headers=manager.headers)
    tag = (await api.raw.get(f"/clients/{client['id']}", headers=admin.headers)).headers["etag"]

    by_manager = await api.raw.patch(
        f"/clients/{client['id']}", headers=manager.headers, json={"revealReasonRequired": True}
    )
    stale = await api.raw.patch(
        f"/clients/{client['id']}", headers={**admin.headers, "If-Match": '"999"'}, json={"revealReasonRequired": True}
    )
    by_admin = await api.raw.patch(
        f"/clients/{client['id']}", headers={**admin.headers, "If-Match": tag}, json={"revealReasonRequired": True}
    )
    refused = [
        await api.raw.get(credential, headers=manager.headers),
        await api.raw.post(f"{credential}/reveal", headers=manager.headers),
        await api.raw.post(f"{credential}/reveal", headers=manager.headers, json={"reason": "  ", "ticketRef": "T-1"}),
        await api.raw.post(f"{credential}/versions/1/reveal", headers=manager.headers),
    ]
    revealed = await api.raw.post(
        f"{credential}/reveal", headers=manager.headers, json={"reason": "Renewing the VPN", "ticketRef": "INC-42"}
    )
    old = await api.raw.post(
        f"{credential}/versions/1/reveal", headers=manager.headers, json={"reason": "Comparing with the backup"}
    )
    again = await api.raw.patch(f"/clients/{client['id']}", headers=admin.headers, json={"revealReasonRequired": True})
    page = await wait_for_entries(api, admin, 5, clientId=client["id"], credentialId=credential_id)
    policy = await wait_for_entries(api, admin, 1, clientId=client["id"], action="client_policy_changed")
    reveals = sorted(
        (e for e in page["items"] if e["action"] != "credential_create" and e["action"] != "credential_update"),
        key=lambda e: e["occurredAt"],
    )
    verified = system.cli("audit", "verify")

    assert (before.status_code, before.json()["secret"]) == (200, "new-firewall")
    assert (by_manager.status_code, by_manager.headers["content-type"]) == (403, PROBLEM)
    assert stale.status_code == 412
    assert by_admin.status_code == 200, by_admin.text
    assert by_admin.json()["revealReasonRequired"] is True
    assert by_admin.headers["etag"] != tag
    assert again.status_code == 200, again.text
    # the admin's change is in the chain once (setting it again to what it is changes nothing)
    assert [(e["action"], e["userId"], e["detail"]) for e in policy["items"]] == [
        ("client_policy_changed", await me(api, admin), {"revealReasonRequired": {"from": False, "to": True}})
    ]
    for answer in refused:
        assert (answer.status_code, answer.headers["content-type"], answer.json()) == (428, PROBLEM, NEEDS_REASON)
    assert (revealed.status_code, revealed.json()["secret"]) == (200, "new-firewall")
    assert revealed.headers["cache-control"] == "no-store"
    assert (old.status_code, old.json()["secret"]) == (200, "old-firewall")
    assert [(e["action"], e.get("detail")) for e in reveals] == [
        ("credential_reveal", None),
        ("credential_reveal", {"reason": "Renewing the VPN", "ticketRef": "INC-42"}),
        ("credential_version_reveal", {"version": 1, "reason": "Comparing with the backup"}),
    ]
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_reveal_with_a_reason_answers_as_the_get_reveal_and_clients_show_the_setting(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin = sessions["admin"]
    client = await new_client(api, admin)
    credential_id = await create(api, admin, client["id"], label="NAS", secret="nas-secret")
    credential = f"/clients/{client['id']}/credentials/{credential_id}"

    got = await api.raw.get(credential, headers=admin.headers)
    posted = await api.raw.post(f"{credential}/reveal", headers=admin.headers)
    with_reason = await api.raw.post(f"{credential}/reveal", headers=admin.headers, json={"reason": "Audit"})
    listed = (await api.raw.get("/clients", params={"q": client["name"]}, headers=admin.headers)).json()

    assert got.json() == posted.json() == with_reason.json()
    assert got.headers["cache-control"] == posted.headers["cache-control"] == "no-store"
    assert client["revealReasonRequired"] is False
    assert [c["revealReasonRequired"] for c in listed["items"]] == [False]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "x" * 501}, "reason"),
        ({"ticketRef": "T" * 101}, "ticketRef"),
        ({"reason": "first line\nsecond line"}, "reason"),
        ({"reason": "ok", "ticketRef": "INC\u0007"}, "ticketRef"),
        ({"reason": "ok", "why": "extra"}, "why"),
        ({"reason": 42}, "reason"),
    ],
)
async def test_a_reason_that_cannot_be_kept_is_422_naming_the_field(
    api: Api, sessions: dict[str, Session], body: dict[str, Any], field: str
) -> None:
    admin = sessions["admin"]
    client = await new_client(api, admin)
    credential_id = await create(api, admin, client["id"], label="Switch", secret="switch-secret")

    r = await api.raw.post(
        f"/clients/{client['id']}/credentials/{credential_id}/reveal", headers=admin.headers, json=body
    )

    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM)
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert "switch-secret" not in r.text


async def test_a_totp_code_of_a_reason_required_client_needs_a_reason_too(
    api: Api, sessions: dict[str, Session]
) -> None:
    """A code gives what a reveal gives (it needs MFA where a reveal does): the reason rule holds for it as well."""
    admin, manager = sessions["admin"], sessions["manager"]
    client = await new_client(api, admin)
    made = await api.raw.post(
        f"/clients/{client['id']}/credentials",
        headers=admin.headers,
        json={"label": "Registrar", "secret": "registrar-pw", "totpSecret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"},
    )
    assert made.status_code == 201, made.text
    totp = f"/clients/{client['id']}/credentials/{made.json()['id']}/totp"
    set_flag = await api.raw.patch(
        f"/clients/{client['id']}", headers=admin.headers, json={"revealReasonRequired": True}
    )
    assert set_flag.status_code == 200, set_flag.text

    refused = await api.raw.get(totp, headers=manager.headers)
    bad = await api.raw.get(totp, headers=manager.headers, params={"reason": "ok", "ticketRef": "INC\n1"})
    code = await api.raw.get(totp, headers=manager.headers, params={"reason": "Registrar login", "ticketRef": "CHG-9"})
    page = await wait_for_entries(api, admin, 1, clientId=client["id"], action="credential_totp")

    assert (refused.status_code, refused.json()) == (428, NEEDS_REASON)
    assert (bad.status_code, [e["field"] for e in bad.json()["errors"]]) == (422, ["ticketRef"])
    assert code.status_code == 200, code.text
    assert len(code.json()["code"]) == 6
    assert [e["detail"] for e in page["items"]] == [{"reason": "Registrar login", "ticketRef": "CHG-9"}]
