"""Per-client access and archive both ways, through the gateway, as a technician, an admin and an attacker try it.

A system of its own runs with CLIENTVAULT_CLIENT_SCOPING=on (as the production overlay does): a manager who is not a
member of a client finds nothing of it, not through any route, not in a search or a total, not by a direct gRPC call
to the vault with their own token; an admin adds them and they work on it; removing them closes it again at once.
The run's shared system keeps scoping off: there everything behaves as before members existed.
"""

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from clientvault.v1 import vault_pb2, vault_pb2_grpc
from tests.audit_support import wait_for_entries
from tests.system import Api, Session, System, me, new_task, running
from tests.vault_support import create

PROBLEM = "application/problem+json"
SCOPED_ENV = {"CLIENTVAULT_TRUSTED_PROXIES": "127.0.0.1/32", "CLIENTVAULT_CLIENT_SCOPING": "on"}
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
    assert (await scoped.raw.post(f"/clients/{client['id']}/unarchive", headers=admin.headers)).status_code == 200
    assert (await scoped.raw.post(f"/clients/{client['id']}/unarchive", headers=admin.headers)).status_code == 200

    page = await wait_for_entries(scoped, admin, 3, clientId=client["id"])
    entries = sorted(page["items"], key=lambda entry: entry["occurredAt"])
    verified = scoped_system.cli("audit", "verify")

    assert [e["action"] for e in entries] == ["client_member_added", "client_member_removed", "client_unarchived"]
    assert {e["userId"] for e in entries} == {admin_id}
    assert [(e.get("targetUser") or {}).get("id") for e in entries] == [tech_id, tech_id, None]
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
    unknown = await scoped.raw.get(f"/clients/{uuid.uuid4()}/credentials/{ids['credential']}", headers=outsider.headers)
    page = await wait_for_entries(scoped, admin, 2, clientId=ids["client"], action="reveal_denied")

    assert hidden.status_code == said.status_code == unknown.status_code == 404
    assert hidden.json() == said.json() == unknown.json() == {**NOT_FOUND, "detail": "client not found"}
    assert [(e["userId"], e["credentialId"], e["detail"]) for e in page["items"]] == [
        (await me(scoped, outsider), ids["credential"], {"reason": "not a member of the client (or no such client)"})
    ] * 2


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
    page = await wait_for_entries(api, admin, 5, clientId=client["id"], credentialId=credential_id)
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
