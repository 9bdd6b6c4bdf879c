"""Security events in the audit chain (issue 15), as an admin reading /audit-logs and as an attacker would try them:
every sign-in, failure, throttle, token reuse, sign-out, session ended and user change is there once, with who
acted, whom it was about, the client's IP and user agent (through the gateway, the real ones); throttled and
refused reveals are there; reads of the log are themselves there; an auth event signed with another producer's
key, or published on another producer's subjects, never reaches the chain; and `audit verify` passes after it all
(comparing auth's outbox too)."""

import uuid
from collections import Counter
from typing import Any

import grpc
import nats
import pytest

from clientvault import ed25519
from clientvault.events import EventSigner
from clientvault.v1 import events_pb2, vault_pb2, vault_pb2_grpc
from tests.audit_support import audit_logs, signed, stored_event_ids, vault_signer, wait_for_entries
from tests.e2e.test_audit_log import an_event
from tests.e2e.test_nats_permissions import connected_as
from tests.e2e.test_signed_events import dead_letter_reasons
from tests.system import Api, Session, me, unique_ip
from tests.vault_support import create, new_client

AGENT = "security-events-test/1.0"
MAX_SESSIONS = 20  # CLIENTVAULT_MAX_SESSIONS_PER_USER's default
EMAIL_MAX_FAILURES = 5  # CLIENTVAULT_SIGN_IN_EMAIL_MAX_FAILURES's default


def as_client(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip, "User-Agent": AGENT}


async def sign_in(api: Api, email: str, password: str, ip: str) -> Any:
    return await api.raw.post("/auth/sign-in", json={"email": email, "password": password}, headers=as_client(ip))


def entries_by_action(page: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in page["items"]:
        found.setdefault(entry["action"], []).append(entry)
    return found


async def test_every_auth_action_appears_with_actor_target_ip_and_user_agent(api: Api, admin: Session) -> None:
    ip = unique_ip()
    email, password = f"Sec-{uuid.uuid4().hex[:10]}@Example.com", f"pw-{uuid.uuid4().hex}"
    created = api.system.cli(
        "users", "create", "--email", email, "--full-name", "Sec Test", "--role", "manager", "--password-stdin",
        stdin=password + "\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    typed = email.upper()  # as a user might type it: the event keeps it as typed

    assert (await sign_in(api, typed, "wrong password", ip)).status_code == 401
    first = (await sign_in(api, email, password, ip)).json()
    user_id = str(
        (await api.raw.get("/users/me", headers={"Authorization": f"Bearer {first['accessToken']}"})).json()["id"]
    )
    refreshed = await api.raw.post("/auth/refresh", json={"refreshToken": first["refreshToken"]}, headers=as_client(ip))
    assert refreshed.status_code == 200
    reused = await api.raw.post("/auth/refresh", json={"refreshToken": first["refreshToken"]}, headers=as_client(ip))
    assert reused.status_code == 401
    second = (await sign_in(api, email, password, ip)).json()
    signed_out = await api.raw.post(
        "/auth/sign-out", headers={"Authorization": f"Bearer {second['accessToken']}", **as_client(ip)}
    )
    assert signed_out.status_code == 204
    for _ in range(MAX_SESSIONS + 1):  # one past the cap: the least recently used session is ended
        assert (await sign_in(api, email, password, ip)).status_code == 200
    assert api.system.cli("users", "disable", "--email", email).returncode == 0
    assert api.system.cli("users", "enable", "--email", email).returncode == 0
    for _ in range(EMAIL_MAX_FAILURES - 1):  # with the first failure, the email's limit
        assert (await sign_in(api, typed, "wrong again", ip)).status_code == 401
    assert (await sign_in(api, typed, password, ip)).status_code == 429

    expected = Counter(
        user_created=1,
        sign_in_failed=EMAIL_MAX_FAILURES,
        sign_in=2 + MAX_SESSIONS + 1,
        refresh_token_reused=1,
        sign_out=1,
        session_revoked=1,
        user_updated=2,
        sign_in_throttled=1,
    )
    page = await wait_for_entries(api, admin, expected.total(), pageSize=100, targetUserId=user_id)
    assert page["total"] == expected.total()
    assert Counter(e["action"] for e in page["items"]) == expected
    found = entries_by_action(page)
    for entry in page["items"]:
        assert entry["targetUser"] == {"id": user_id, "email": email.lower()}
        assert (entry["credentialId"], entry["credential"], entry["clientId"]) == (None, None, None)
        assert password not in str(entry)
        if entry["action"] not in ("user_created", "user_updated"):  # through the gateway: the client's own
            assert (entry["ip"], entry["userAgent"]) == (ip, AGENT), entry
    for action in ("sign_in", "refresh_token_reused", "sign_out", "session_revoked"):
        for entry in found[action]:
            assert (entry["userId"], entry["user"]) == (user_id, {"fullName": "Sec Test", "email": email.lower()})
    for action in ("sign_in_failed", "sign_in_throttled"):  # nobody signed in: the email as typed
        for entry in found[action]:
            assert (entry["userId"], entry["user"]["email"]) == (None, typed), entry
    assert {e["detail"]["reason"] for e in found["sign_in_failed"]} == {"wrong password"}
    operator = {"userId": None, "user": {"fullName": "operator (clientvault command)", "email": ""}, "ip": ""}
    for entry in found["user_created"] + found["user_updated"]:
        assert {key: entry[key] for key in operator} == operator
    assert found["user_created"][0]["detail"] == {
        "role": "manager",
        "full_name": "Sec Test",
        "temporary_password": False,
    }
    assert [e["detail"] for e in found["user_updated"]] == [  # newest first
        {"disabled": {"from": True, "to": False}},
        {"disabled": {"from": False, "to": True}},
    ]
    assert found["refresh_token_reused"][0]["detail"]["session_revoked"] is True
    assert found["session_revoked"][0]["detail"]["reason"] == "session limit"

    verified = api.system.cli("audit", "verify")  # signatures, and auth's outbox against the chain both ways
    assert verified.returncode == 0, verified.stderr


async def test_reads_of_the_audit_log_are_audited_with_their_filters(api: Api, admin: Session) -> None:
    ip, looked_for = unique_ip(), str(uuid.uuid4())
    read = await api.raw.get(
        "/audit-logs", headers={**admin.headers, **as_client(ip)}, params={"targetUserId": looked_for, "pageSize": 7}
    )
    assert read.status_code == 200

    admin_id = await me(api, admin)
    page = await audit_logs(api, admin, action="audit_log_read", actorUserId=admin_id, pageSize=100)
    mine = [e for e in page["items"] if e["detail"]["filters"].get("target_user_id") == looked_for]
    assert len(mine) == 1
    assert mine[0]["detail"] == {"filters": {"target_user_id": looked_for}, "page": 1, "page_size": 7}
    assert (mine[0]["userId"], mine[0]["user"]["email"]) == (admin_id, admin.account.email)
    assert (mine[0]["ip"], mine[0]["userAgent"]) == (ip, AGENT)
    # That read is recorded too, before it is answered: the newest entry by this admin is a read.
    assert (await audit_logs(api, admin, actorUserId=admin_id))["items"][0]["action"] == "audit_log_read"


async def test_actor_and_target_filters_give_exact_totals(api: Api, admin: Session) -> None:
    account = await api.new_account("read_only")
    ip = unique_ip()
    for _ in range(3):
        assert (await sign_in(api, account.email, account.password, ip)).status_code == 200
    session = await api.sign_in(account, ip=ip)
    user_id = await me(api, session)

    by_target = await wait_for_entries(api, admin, 5, targetUserId=user_id)  # user_created and four sign-ins
    by_actor = await audit_logs(api, admin, actorUserId=user_id)
    pages = [await audit_logs(api, admin, targetUserId=user_id, pageSize=2, page=n) for n in (1, 2, 3)]

    assert by_target["total"] == 5
    assert by_actor["total"] == 4  # the operator created it
    assert await audit_logs(api, admin, userId=user_id) == await audit_logs(api, admin, actorUserId=user_id)
    assert [p["total"] for p in pages] == [5, 5, 5]
    assert [e["id"] for p in pages for e in p["items"]] == [e["id"] for e in by_target["items"]]
    assert (await audit_logs(api, admin, targetUserId=user_id, action="sign_in"))["total"] == 4
    differ = await api.raw.get(
        "/audit-logs", headers=admin.headers, params={"userId": user_id, "actorUserId": str(uuid.uuid4())}
    )
    assert differ.status_code == 422
    assert [e["field"] for e in differ.json()["errors"]] == ["actorUserId"]


async def refused_by_the_vault(api: Api, session: Session, method: str, request: Any) -> grpc.aio.AioRpcError:
    """What the vault answers a call made straight to it (no gateway) with the session's token: an error."""
    async with grpc.aio.insecure_channel(api.system.info_address("vault")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await getattr(vault_pb2_grpc.VaultStub(channel), method)(
                request, metadata=(("authorization", f"Bearer {session.access_token}"),), timeout=10
            )
    return refused.value


async def test_a_refused_reveal_is_audited_by_the_vault_through_the_gateway_and_on_a_direct_call(
    api: Api, admin: Session
) -> None:
    client_id = await new_client(api, admin)
    credential_id = await create(api, admin, client_id, label="Payroll", secret="s3cret-payroll")
    reader = await api.session("read_only")
    reader_id = await me(api, reader)
    ip = unique_ip()

    through_gateway = await api.raw.get(
        f"/clients/{client_id}/credentials/{credential_id}", headers={**reader.headers, **as_client(ip)}
    )
    direct = await refused_by_the_vault(
        api,
        reader,
        "RevealCredential",
        vault_pb2.RevealCredentialRequest(client_id=client_id, credential_id=credential_id),
    )

    assert through_gateway.status_code == 403
    assert through_gateway.json()["detail"] == "your role does not allow this operation"
    assert "s3cret" not in through_gateway.text
    assert direct.code() == grpc.StatusCode.PERMISSION_DENIED
    page = await wait_for_entries(api, admin, 2, action="reveal_denied", actorUserId=reader_id)
    assert page["total"] == 2
    for entry in page["items"]:
        assert (entry["credentialId"], entry["clientId"]) == (credential_id, client_id)
        assert entry["credential"] == {"label": "Payroll", "clientId": client_id}
        assert entry["detail"] == {"reason": "role read_only may not reveal"}
    direct_entry, gateway_entry = page["items"]  # newest first
    assert (gateway_entry["ip"], gateway_entry["userAgent"]) == (ip, AGENT)
    assert direct_entry["ip"] == "127.0.0.1"  # unattested: the caller's own address, nothing it claims


async def test_a_refused_totp_code_is_audited_like_a_refused_reveal(api: Api, admin: Session) -> None:
    # A TOTP code gives what a reveal gives: a role that may not reveal asking for one is a refused reveal too.
    client_id = await new_client(api, admin)
    credential_id = await create(api, admin, client_id, label="Router", secret="s3cret-router")
    reader = await api.session("read_only")
    reader_id = await me(api, reader)

    through_gateway = await api.raw.get(
        f"/clients/{client_id}/credentials/{credential_id}/totp", headers=reader.headers
    )
    direct = await refused_by_the_vault(
        api,
        reader,
        "GetCredentialTotp",
        vault_pb2.GetCredentialTotpRequest(client_id=client_id, credential_id=credential_id),
    )

    assert through_gateway.status_code == 403
    assert through_gateway.json()["detail"] == "your role does not allow this operation"
    assert direct.code() == grpc.StatusCode.PERMISSION_DENIED
    page = await wait_for_entries(api, admin, 2, action="reveal_denied", actorUserId=reader_id, clientId=client_id)
    assert [(e["credentialId"], e["detail"]) for e in page["items"]] == [
        (credential_id, {"reason": "role read_only may not reveal"})
    ] * 2


@pytest.mark.skipif(
    bool(__import__("os").environ.get("NATS_URL")), reason="an external NATS server's users are its own"
)
async def test_an_auth_event_under_another_producers_key_or_subject_never_reaches_the_chain(api: Api) -> None:
    info = api.system.info()
    auth_key = EventSigner("auth", ed25519.private_key(api.system.secrets()["auth_event_signing_key"], "secrets"))
    sign_in = {"action": events_pb2.AUDIT_ACTION_SIGN_IN, "credential_id": "", "credential_label": "", "client_id": ""}
    vault_signed = signed(an_event(**sign_in, target_user_id=str(uuid.uuid4())), vault_signer(api.system))
    misfiled = signed(an_event(**sign_in, target_user_id=str(uuid.uuid4())), auth_key)

    async with connected_as(api, "auth") as (nc, refusals):
        js = nc.jetstream()
        by_vault_key = await js.publish("audit.auth.sign_in", vault_signed.SerializeToString())
        with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
            await js.publish("audit.vault.sign_in", misfiled.SerializeToString(), timeout=2)
    assert any("audit.vault.sign_in" in refusal for refusal in refusals)
    operator = await nats.connect(info["nats_url"])  # what auth's user may not, the operator's may: still refused
    try:
        on_vault_subject = await operator.jetstream().publish("audit.vault.sign_in", misfiled.SerializeToString())
    finally:
        await operator.close()

    admin = await api.session("admin")
    await wait_for_entries(api, admin, 1, action="sign_in", actorUserId=await me(api, admin))  # consumed after them
    assert await stored_event_ids(info["database_url"], [vault_signed.event_id, misfiled.event_id]) == []
    reasons = await dead_letter_reasons(info["database_url"], [by_vault_key.seq, on_vault_subject.seq])
    vault_key_id = vault_signer(api.system).key_id
    assert reasons[by_vault_key.seq] == f"published as auth but signed by vault's key {vault_key_id}"
    assert reasons[on_vault_subject.seq] == f"published as vault but signed by auth's key {auth_key.key_id}"
