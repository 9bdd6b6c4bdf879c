"""Rotation work on leave, on the running system, as an admin and an attacker would try it: disabling a user turns
each credential they revealed that nobody rotated into one high-priority task in its client, assigned to the
client's owner; the same event delivered again (republished to NATS) adds nothing; a forged "user disabled" event
(unsigned, or signed with a key other than auth's) adds nothing; and the service identity that makes the tasks can
do nothing but create tasks.

To know that the vault has handled what a test published, the test then disables a second user (a genuine event,
behind the others on the consumer's one subject) and waits for that user's task: the vault handles the events of
its consumer in order."""

import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from clientvault import ed25519
from clientvault.convert import timestamp
from clientvault.events import EventSigner
from clientvault.settings import RotationIdentity
from clientvault.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    clients_pb2,
    clients_pb2_grpc,
    events_pb2,
    vault_pb2,
    vault_pb2_grpc,
)
from tests.audit_support import signed
from tests.system import Api, Session, me
from tests.vault_support import create

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("NATS_URL")), reason="publishes as the embedded NATS server's operator"
)

USER_UPDATED = "audit.auth.user_updated"
WAIT_S = 30


async def client_of(api: Api, owner: Session) -> str:
    r = await api.raw.post("/clients", headers=owner.headers, json={"name": f"Leaver co {uuid.uuid4()}"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def leaver(api: Api, admin: Session, name: str) -> tuple[Session, str]:
    """A manager named `name` (renamed before signing in, so their reveals carry the name), and their id."""
    account = await api.new_account("manager")
    session = await api.sign_in(account)
    user_id = await me(api, session)
    renamed = await api.raw.patch(f"/users/{user_id}", headers=admin.headers, json={"fullName": name})
    assert renamed.status_code == 200, renamed.text
    return await api.sign_in(account), user_id


async def reveal(api: Api, session: Session, client_id: str, credential_id: str) -> None:
    r = await api.raw.get(f"/clients/{client_id}/credentials/{credential_id}", headers=session.headers)
    assert r.status_code == 200, r.text


async def disable(api: Api, admin: Session, user_id: str) -> None:
    r = await api.raw.patch(f"/users/{user_id}", headers=admin.headers, json={"disabled": True})
    assert r.status_code == 200, r.text


async def rotation_tasks(api: Api, admin: Session, client_id: str) -> list[dict[str, Any]]:
    r = await api.raw.get(f"/clients/{client_id}/tasks", headers=admin.headers, params={"pageSize": 100})
    assert r.status_code == 200, r.text
    return [task for task in r.json()["items"] if task["title"].startswith("Rotate ")]


async def wait_for_tasks(api: Api, admin: Session, counts: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Each client's rotation tasks once it has (at least) the count given."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = {client_id: await rotation_tasks(api, admin, client_id) for client_id in counts}
        if all(len(found[client_id]) >= n for client_id, n in counts.items()) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def published_disabling(nats_url: str, user_id: str) -> bytes:
    """The bytes auth published when it disabled the user (as anyone reading the stream can copy them)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            USER_UPDATED,
            stream="AUDIT",
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30),
        )
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for msg in await sub.fetch(500, timeout=5):
                event = events_pb2.AuditEvent.FromString(msg.data)
                if event.target_user_id == user_id and json.loads(event.detail).get("disabled", {}).get("to") is True:
                    return bytes(msg.data)
        raise AssertionError(f"no user_updated event disabling {user_id} in the stream")
    finally:
        await nc.close()


async def publish(nats_url: str, *payloads: bytes) -> None:
    """As the operator (who may publish anything), each payload on auth's user_updated subject, under a message
    id of its own so that the stream's duplicate window does not drop a copy."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for data in payloads:
            await js.publish(USER_UPDATED, data, headers={"Nats-Msg-Id": str(uuid.uuid4())})
    finally:
        await nc.close()


async def test_disabling_a_user_makes_one_task_per_exposed_credential_even_when_the_event_comes_twice(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin, owner = sessions["admin"], await api.session("manager")
    owner_id, admin_id = await me(api, owner), await me(api, admin)
    mine, theirs = await client_of(api, owner), await client_of(api, admin)
    router = await create(api, owner, mine, label="Router", secret="r-1")
    wifi = await create(api, owner, mine, label="Office Wi-Fi", secret="w-1")
    unseen = await create(api, owner, mine, label="Unseen", secret="u-1")
    nas = await create(api, admin, theirs, label="NAS", secret="n-1")
    rotated = await create(api, admin, theirs, label="Rotated already", secret="x-1")
    dana, dana_id = await leaver(api, admin, "Dana Leaver")
    for client_id, credential_id in ((mine, router), (mine, router), (mine, wifi), (theirs, nas), (theirs, rotated)):
        await reveal(api, dana, client_id, credential_id)
    await reveal(api, owner, mine, unseen)  # someone else's exposure, not Dana's
    changed = await api.raw.patch(
        f"/clients/{theirs}/credentials/{rotated}", headers=admin.headers, json={"secret": "x-2"}
    )
    assert changed.status_code == 200, changed.text

    await disable(api, admin, dana_id)
    found = await wait_for_tasks(api, admin, {mine: 2, theirs: 1})

    assert sorted((t["title"], t["priority"], t["status"], t["assigneeUserId"]) for t in found[mine]) == [
        ("Rotate Office Wi-Fi: revealed by Dana Leaver", "high", "todo", owner_id),
        ("Rotate Router: revealed by Dana Leaver", "high", "todo", owner_id),
    ]
    assert [(t["title"], t["priority"], t["assigneeUserId"]) for t in found[theirs]] == [
        ("Rotate NAS: revealed by Dana Leaver", "high", admin_id)
    ]
    assert "Dana Leaver" in found[mine][0]["description"]
    first = {client_id: sorted(t["id"] for t in tasks) for client_id, tasks in found.items()}

    # The same event again, twice, as a redelivery or someone replaying what they copied from the stream would.
    nats_url = api.system.info()["nats_url"]
    original = await published_disabling(nats_url, dana_id)
    await publish(nats_url, original, original)
    await sentinel_handled(api, admin, mine, router)

    again = {client_id: sorted(t["id"] for t in await rotation_tasks(api, admin, client_id)) for client_id in first}
    assert again[theirs] == first[theirs]
    assert set(first[mine]) <= set(again[mine])
    assert len(again[mine]) == len(first[mine]) + 1


async def sentinel_handled(api: Api, admin: Session, client_id: str, credential_id: str) -> None:
    """Disables a new user who revealed `credential_id` and waits for their task: the events published on the
    subject before it have been handled by then."""
    name = f"Sentinel {uuid.uuid4().hex[:8]}"
    sentinel, sentinel_id = await leaver(api, admin, name)
    await reveal(api, sentinel, client_id, credential_id)
    await disable(api, admin, sentinel_id)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if any(t["title"].endswith(f"revealed by {name}") for t in await rotation_tasks(api, admin, client_id)):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the sentinel's rotation task did not appear: the vault did not get that far")


def a_disabling(user_id: str, email: str) -> events_pb2.AuditEvent:
    """A user_updated event saying the user was disabled, as auth writes one (unsigned)."""
    return events_pb2.AuditEvent(
        event_id=str(uuid.uuid4()),
        action=events_pb2.AUDIT_ACTION_USER_UPDATED,
        occurred_at=timestamp(datetime.now(UTC)),
        user_full_name="operator (clientvault command)",
        target_user_id=user_id,
        target_user_email=email,
        detail='{"disabled":{"from":false,"to":true}}',
    )


async def test_a_forged_user_disabled_event_makes_no_task(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    client_id = await client_of(api, admin)
    secret = await create(api, admin, client_id, label="Core switch", secret="c-1")
    target, target_id = await leaver(api, admin, "Still Employed")
    await reveal(api, target, client_id, secret)
    vault_key = EventSigner("vault", ed25519.private_key(api.system.secrets()["vault_event_signing_key"], "test"))
    stranger = EventSigner("auth", ed25519.private_key(ed25519.generate(), "attacker"))
    email = target.account.email
    forged = [
        a_disabling(target_id, email),  # unsigned
        signed(a_disabling(target_id, email), vault_key),  # a real key, but the vault's: not auth's to sign
        signed(a_disabling(target_id, email), stranger),  # "auth" by name, a key nobody trusts
    ]

    await publish(api.system.info()["nats_url"], *(event.SerializeToString() for event in forged))
    await sentinel_handled(api, admin, client_id, secret)

    titles = [t["title"] for t in await rotation_tasks(api, admin, client_id)]
    assert not [t for t in titles if "Still Employed" in t], titles
    assert len(titles) == 1  # the sentinel's


async def test_the_rotation_identity_may_create_tasks_and_nothing_else(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    identity = RotationIdentity()
    password = api.system.secrets()["rotation_tasks_password"]
    signed_in = await api.raw.post("/auth/sign-in", json={"email": identity.rotation_tasks_email, "password": password})
    assert signed_in.status_code == 200, signed_in.text
    token = signed_in.json()["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    client_id = await client_of(api, admin)
    credential_id = await create(api, admin, client_id, label="Firewall", secret="fw-secret")

    attempts = {
        "list clients": await api.raw.get("/clients", headers=headers),
        "read a client": await api.raw.get(f"/clients/{client_id}", headers=headers),
        "list tasks": await api.raw.get(f"/clients/{client_id}/tasks", headers=headers),
        "list credentials": await api.raw.get(f"/clients/{client_id}/credentials", headers=headers),
        "reveal": await api.raw.get(f"/clients/{client_id}/credentials/{credential_id}", headers=headers),
        "create a user": await api.raw.post(
            "/users",
            headers=headers,
            json={"email": f"x{uuid.uuid4().hex[:6]}@example.com", "fullName": "X", "role": "admin"},
        ),
        "read the audit log": await api.raw.get("/audit-logs", headers=headers),
        "who am I": await api.raw.get("/users/me", headers=headers),
        "exposure report": await api.raw.get(
            "/reports/exposure", headers=headers, params={"userId": str(uuid.uuid4())}
        ),
    }
    created = await api.raw.post(f"/clients/{client_id}/tasks", headers=headers, json={"title": "Rotate by hand"})

    assert {what: r.status_code for what, r in attempts.items()} == dict.fromkeys(attempts, 403)
    assert "fw-secret" not in attempts["reveal"].text
    assert created.status_code == 201, created.text
    # Straight to the services, past the gateway: refused there too.
    info = api.system.info()
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(info["services"]["vault"]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await vault_pb2_grpc.VaultStub(channel).RevealCredential(
                vault_pb2.RevealCredentialRequest(client_id=client_id, credential_id=credential_id), metadata=metadata
            )
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    async with grpc.aio.insecure_channel(info["services"]["clients"]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as listing:
            await clients_pb2_grpc.ClientsStub(channel).ListClients(clients_pb2.ListClientsRequest(), metadata=metadata)
    assert listing.value.code() is grpc.StatusCode.PERMISSION_DENIED
    async with grpc.aio.insecure_channel(info["services"]["auth"]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as listing_users:
            await auth_pb2_grpc.AuthStub(channel).ListUsers(auth_pb2.ListUsersRequest(), metadata=metadata)
    assert listing_users.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_an_admin_cannot_hand_out_or_change_the_service_role(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    users = await api.raw.get("/users", headers=admin.headers, params={"role": "rotation_tasks"})
    assert users.status_code == 200, users.text
    identity_id = next(u["id"] for u in users.json()["items"] if u["email"] == RotationIdentity().rotation_tasks_email)

    made = await api.raw.post(
        "/users",
        headers=admin.headers,
        json={"email": f"svc-{uuid.uuid4().hex[:6]}@example.com", "fullName": "Svc", "role": "rotation_tasks"},
    )
    promoted = await api.raw.patch(f"/users/{identity_id}", headers=admin.headers, json={"role": "admin"})
    person = await me(api, await api.session("read_only"))
    demoted = await api.raw.patch(f"/users/{person}", headers=admin.headers, json={"role": "rotation_tasks"})

    for r in (made, promoted, demoted):
        assert (r.status_code, r.headers["content-type"]) == (422, "application/problem+json"), r.text
    assert made.json()["errors"] == [
        {"field": "role", "message": "rotation_tasks is a service identity's role: the operator issues its account "
                                     "(docs/security.md)"}
    ]  # fmt: skip
    assert promoted.json()["errors"] == [
        {"field": "role", "message": "a service identity keeps its role: disable it, or issue another account"}
    ]
    assert demoted.json()["errors"] == made.json()["errors"]
