"""A secret's life through the gateway, as a user and an auditor see it: old versions and their audited reveals,
the trash, `secretChangedAt`, the exposure report, and the crypto-shred of a client (410 afterwards, and its
erasure entry in the audit log). The trash's purge after the retention is in tests/service (a short retention
needs a vault of its own)."""

import uuid

from tests.audit_support import wait_for_audit, wait_for_entries
from tests.system import Api, Session
from tests.vault_support import create, new_client

PROBLEM = "application/problem+json"


def path(client_id: str, credential_id: str | None = None, *rest: str) -> str:
    return "/".join([f"/clients/{client_id}/credentials", *([credential_id] if credential_id else []), *rest])


async def change_secret(api: Api, session: Session, client_id: str, credential_id: str, secret: str) -> None:
    r = await api.raw.patch(path(client_id, credential_id), headers=session.headers, json={"secret": secret})
    assert r.status_code == 200, r.text


async def revealed(api: Api, session: Session, client_id: str, credential_id: str) -> str:
    r = await api.raw.get(path(client_id, credential_id), headers=session.headers)
    assert r.status_code == 200, r.text
    return str(r.json()["secret"])


async def test_three_updates_leave_three_versions_each_reveal_audited_and_one_restored(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin, manager = sessions["admin"], sessions["manager"]
    client_id = await new_client(api, admin)
    credential_id = await create(api, manager, client_id, label="Core switch", secret="first")
    for secret in ("second", "third", "fourth"):
        await change_secret(api, manager, client_id, credential_id, secret)

    listed = await api.raw.get(path(client_id, credential_id, "versions"), headers=manager.headers)
    reveals = {
        n: await api.raw.post(path(client_id, credential_id, "versions", str(n), "reveal"), headers=manager.headers)
        for n in (1, 2, 3)
    }

    assert listed.status_code == 200
    assert [v["version"] for v in listed.json()] == [3, 2, 1]
    assert all(set(v) == {"version", "createdAt", "createdByUserId"} for v in listed.json())
    assert {n: r.json()["secret"] for n, r in reveals.items()} == {1: "first", 2: "second", 3: "third"}
    assert all(r.headers["cache-control"] == "no-store" for r in reveals.values())
    entries = await wait_for_entries(
        api, admin, 3, credentialId=credential_id, action="credential_version_reveal"
    )  # an auditor sees each old version's reveal, and which version it was
    assert sorted((e["detail"]["version"], e["credential"]["label"]) for e in entries["items"]) == [
        (1, "Core switch"),
        (2, "Core switch"),
        (3, "Core switch"),
    ]
    assert {e["userId"] for e in entries["items"]} == {(await me(api, manager))}

    restored = await api.raw.post(path(client_id, credential_id, "versions", "1", "restore"), headers=manager.headers)

    assert restored.status_code == 200, restored.text
    assert await revealed(api, manager, client_id, credential_id) == "first"
    updates = await wait_for_entries(api, admin, 4, credentialId=credential_id, action="credential_update")
    # Three secret changes, then the restore, which names the version it brought back.
    assert [e.get("detail") for e in updates["items"]] == [{"restored_version": 1}, None, None, None]
    unknown = await api.raw.post(path(client_id, credential_id, "versions", "99", "reveal"), headers=manager.headers)
    assert (unknown.status_code, unknown.headers["content-type"]) == (404, PROBLEM)
    reader = sessions["read_only"]
    refused = await api.raw.post(path(client_id, credential_id, "versions", "1", "reveal"), headers=reader.headers)
    assert refused.status_code == 403
    assert "first" not in refused.text


async def me(api: Api, session: Session) -> str:
    return str((await api.raw.get("/users/me", headers=session.headers)).json()["id"])


async def test_secret_changed_at_does_not_move_on_a_label_edit(api: Api, sessions: dict[str, Session]) -> None:
    manager = sessions["manager"]
    client_id = await new_client(api, sessions["admin"])
    credential_id = await create(api, manager, client_id, label="Printer", secret="p1")
    before = (await api.raw.get(path(client_id), headers=manager.headers)).json()[0]

    relabelled = await api.raw.patch(path(client_id, credential_id), headers=manager.headers, json={"label": "P2"})
    await change_secret(api, manager, client_id, credential_id, "p2")
    after = (await api.raw.get(path(client_id), headers=manager.headers)).json()[0]

    assert relabelled.json()["secretChangedAt"] == before["secretChangedAt"]
    assert relabelled.json()["updatedAt"] > before["updatedAt"]
    assert after["secretChangedAt"] > before["secretChangedAt"]


async def test_a_deleted_credential_goes_to_the_trash_and_an_admin_brings_it_back(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin, manager = sessions["admin"], sessions["manager"]
    client_id = await new_client(api, admin)
    credential_id = await create(api, manager, client_id, label="Backup NAS", secret="nas-secret")

    assert (await api.raw.delete(path(client_id, credential_id), headers=admin.headers)).status_code == 204

    assert (await api.raw.get(path(client_id), headers=manager.headers)).json() == []
    hidden = await api.raw.get(path(client_id, credential_id), headers=admin.headers)
    assert (hidden.status_code, hidden.headers["content-type"]) == (404, PROBLEM)
    assert "nas-secret" not in hidden.text
    trash = await api.raw.get(path(client_id), headers=admin.headers, params={"deleted": "true"})
    assert [(c["id"], c["label"]) for c in trash.json()] == [(credential_id, "Backup NAS")]
    assert trash.json()[0]["deletedAt"].endswith("Z")
    peek = await api.raw.get(path(client_id), headers=manager.headers, params={"deleted": "true"})
    assert (peek.status_code, peek.headers["content-type"]) == (403, PROBLEM)
    not_admin = await api.raw.post(path(client_id, credential_id, "restore"), headers=manager.headers)
    assert not_admin.status_code == 403

    back = await api.raw.post(path(client_id, credential_id, "restore"), headers=admin.headers)

    assert back.status_code == 200, back.text
    assert back.json()["deletedAt"] is None
    assert await revealed(api, manager, client_id, credential_id) == "nas-secret"
    assert (await api.raw.get(path(client_id), headers=admin.headers, params={"deleted": "true"})).json() == []
    page = await wait_for_audit(api, admin, credential_id, 4)
    assert [e["action"] for e in page["items"]] == [
        "credential_reveal",
        "credential_restore",
        "credential_delete",
        "credential_create",
    ]


async def test_the_exposure_report_lists_what_a_user_saw_and_nobody_rotated(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin = sessions["admin"]
    leaver = await api.session("manager")
    client_name = f"Exposed {uuid.uuid4()}"
    made = await api.raw.post("/clients", headers=admin.headers, json={"name": client_name})
    client_id = made.json()["id"]
    kept = await create(api, admin, client_id, label="Firewall", secret="fw")
    rotated = await create(api, admin, client_id, label="VPN", secret="vpn")
    untouched = await create(api, admin, client_id, label="Never revealed", secret="nr")
    for credential_id in (kept, kept, rotated):
        await revealed(api, leaver, client_id, credential_id)
    await change_secret(api, admin, client_id, rotated, "vpn-2")
    await revealed(api, admin, client_id, untouched)  # someone else's reveal is not the leaver's exposure
    user_id = await me(api, leaver)

    r = await api.raw.get("/reports/exposure", headers=admin.headers, params={"userId": user_id})

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 1
    [item] = body["items"]
    assert {k: item[k] for k in ("credentialId", "clientId", "clientName", "label", "revealCount")} == {
        "credentialId": kept,
        "clientId": client_id,
        "clientName": client_name,
        "label": "Firewall",
        "revealCount": 2,
    }
    assert item["secretChangedAt"] <= item["lastRevealedAt"]
    later = await api.raw.get(
        "/reports/exposure", headers=admin.headers, params={"userId": user_id, "since": "2999-01-01T00:00:00Z"}
    )
    assert later.json()["items"] == []
    await change_secret(api, admin, client_id, kept, "fw-2")
    after = await api.raw.get("/reports/exposure", headers=admin.headers, params={"userId": user_id})
    assert after.json()["total"] == 0
    manager_asks = await api.raw.get("/reports/exposure", headers=leaver.headers, params={"userId": user_id})
    assert manager_asks.status_code == 403
    malformed = await api.raw.get("/reports/exposure", headers=admin.headers, params={"userId": "nobody"})
    assert (malformed.status_code, [e["field"] for e in malformed.json()["errors"]]) == (422, ["userId"])


async def test_a_shredded_client_answers_410_while_other_clients_secrets_still_reveal(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin = sessions["admin"]
    name = f"Offboarded {uuid.uuid4()}"
    client_id = (await api.raw.post("/clients", headers=admin.headers, json={"name": name})).json()["id"]
    credential_id = await create(api, admin, client_id, label="Domain admin", secret="da-secret")
    await change_secret(api, admin, client_id, credential_id, "da-secret-2")
    other_client = await new_client(api, admin)
    other = await create(api, admin, other_client, label="Still here", secret="kept")
    shred = f"/clients/{client_id}/shred"

    live = await api.raw.post(shred, headers=admin.headers, json={"confirmName": name})
    assert (live.status_code, live.json()["detail"]) == (
        409,
        "only an archived client can be shredded: archive it first",
    )
    assert (await api.raw.post(f"/clients/{client_id}/archive", headers=admin.headers)).status_code == 204
    misnamed = await api.raw.post(shred, headers=admin.headers, json={"confirmName": name + " "})
    assert (misnamed.status_code, misnamed.json()["detail"]) == (409, "confirmName is not the client's name")
    manager = await api.raw.post(shred, headers=sessions["manager"].headers, json={"confirmName": name})
    assert manager.status_code == 403

    done = await api.raw.post(shred, headers=admin.headers, json={"confirmName": name})

    assert done.status_code == 200, done.text
    assert {k: done.json()[k] for k in ("credentials", "versions", "dataKeys")} == {
        "credentials": 1,
        "versions": 1,
        "dataKeys": 1,
    }
    for url in (path(client_id, credential_id), path(client_id), path(client_id, credential_id, "versions")):
        r = await api.raw.get(url, headers=admin.headers)
        assert (r.status_code, r.headers["content-type"]) == (410, PROBLEM), url
        assert "da-secret" not in r.text
    again = await api.raw.post(shred, headers=admin.headers, json={"confirmName": name})
    assert again.status_code == 410
    assert await revealed(api, admin, other_client, other) == "kept"
    erasure = await wait_for_entries(api, admin, 1, clientId=client_id, action="client_shredded")
    [entry] = erasure["items"]
    assert entry["userId"] == await me(api, admin)
    assert (entry["credentialId"], entry["credential"], entry["clientId"]) == (None, None, client_id)
    assert entry["detail"] == {"credentials": 1, "versions": 1, "data_keys": 1, "generations": [1]}

    # Every lifecycle event of this file (old versions' reveals, restores, the trash, the shred) is signed by the
    # vault and in its outbox as in the chain: verify checks every signature and compares both ways.
    verified = api.system.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
