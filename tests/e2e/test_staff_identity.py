"""Staff identity through the gateway, as a new user, an admin and an attacker would try it, on a system of its
own where managers must use a second factor to reveal (CLIENTVAULT_MFA_REQUIRED_ROLES=manager)."""

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pyotp
import pytest

from clientvault.v1 import vault_pb2, vault_pb2_grpc
from tests.audit_support import wait_for_entries
from tests.e2e.test_auth import wait_for_status
from tests.system import HIGH_REVEAL_LIMITS, Account, Api, Session, System, running, unique_ip
from tests.vault_support import create, new_client

ENV = {
    "CLIENTVAULT_TRUSTED_PROXIES": "127.0.0.1/32",
    "CLIENTVAULT_MFA_REQUIRED_ROLES": "manager",
    **HIGH_REVEAL_LIMITS,
}
STRONG = "plum orbit ferry cactus 42"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running(Path(tmp_path_factory.mktemp("mfa")) / "data", ENV) as started:
        yield started


@pytest.fixture(scope="module")
async def api(guarded: System) -> AsyncIterator[Api]:
    async with Api(guarded) as client:
        yield client


def as_session(email: str, password: str, body: dict[str, Any]) -> Session:
    return Session(Account(email, password, "?"), body["accessToken"], body["refreshToken"])


async def sign_in(api: Api, email: str, password: str) -> dict[str, Any]:
    r = await api.raw.post(
        "/auth/sign-in", json={"email": email, "password": password}, headers={"X-Forwarded-For": unique_ip()}
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def with_code(api: Api, email: str, password: str, code: str) -> tuple[int, dict[str, Any]]:
    challenge = await sign_in(api, email, password)
    assert challenge["mfaRequired"] is True, challenge
    r = await api.raw.post("/auth/mfa", json={"mfaToken": challenge["mfaToken"], "code": code})
    return r.status_code, r.json()


def next_code(seed: str) -> str:
    """The code of the next time step: the current one may be spent already (each is accepted once)."""
    return pyotp.TOTP(seed).at(time.time() + 30)


async def test_a_new_manager_from_temporary_password_to_mfa_reveal_then_demoted_and_disabled(api: Api) -> None:
    admin = await api.session("admin")
    email = f"Manager-{uuid.uuid4().hex[:8]}@Example.com"
    client_id = await new_client(api, admin)
    credential_id = await create(api, admin, client_id, label="Router", secret="s3cret-router")
    reveal = f"/clients/{client_id}/credentials/{credential_id}"

    # The admin creates the manager over the API: a one-time temporary password, shown once.
    r = await api.raw.post(
        "/users", headers=admin.headers, json={"email": email, "fullName": "Mia Manager", "role": "manager"}
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["role"], created["passwordChangeRequired"], created["mfaEnabled"]) == ("manager", True, False)
    temporary = created["temporaryPassword"]
    taken = await api.raw.post(
        "/users", headers=admin.headers, json={"email": email.upper(), "fullName": "X", "role": "manager"}
    )
    assert taken.status_code == 409

    # With the temporary password nothing but a password change (or sign-out) is allowed.
    first = as_session(email, temporary, await sign_in(api, email, temporary))
    blocked = await api.raw.get("/clients", headers=first.headers)
    assert (blocked.status_code, blocked.json()["detail"]) == (403, "password change required")
    for weak, rule in (
        ("short", "too short"),
        ("Password1234!", "too easy to guess"),
        (email.lower(), "not be the email"),
    ):
        r = await api.raw.post(
            "/users/me/password", headers=first.headers, json={"currentPassword": temporary, "newPassword": weak}
        )
        assert r.status_code == 422, r.text
        assert rule in r.text
    r = await api.raw.post(
        "/users/me/password", headers=first.headers, json={"currentPassword": temporary, "newPassword": STRONG}
    )
    assert r.status_code == 204, r.text
    r = await api.raw.post("/auth/refresh", json={"refreshToken": first.refresh_token})
    manager = as_session(email, STRONG, r.json())
    assert (await api.raw.get("/clients", headers=manager.headers)).status_code == 200

    # A password alone does not reveal for a manager: the gateway refuses, and so does the vault itself.
    r = await api.raw.get(reveal, headers=manager.headers)
    assert (r.status_code, r.json()["detail"]) == (403, "mfa required")
    async with grpc.aio.insecure_channel(api.system.info_address("vault")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as direct:
            await vault_pb2_grpc.VaultStub(channel).RevealCredential(
                vault_pb2.RevealCredentialRequest(client_id=client_id, credential_id=credential_id),
                metadata=(("authorization", f"Bearer {manager.access_token}"),),
                timeout=5,
            )
    assert (direct.value.code(), direct.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "mfa required")

    # Enrolment: a secret, confirmed with a code, answers ten recovery codes.
    r = await api.raw.post("/users/me/mfa/totp", headers=manager.headers)
    assert r.status_code == 200, r.text
    seed = r.json()["secret"]
    assert r.json()["otpauthUri"].startswith("otpauth://totp/ClientVault:")
    r = await api.raw.post("/users/me/mfa/totp/confirm", headers=manager.headers, json={"code": pyotp.TOTP(seed).now()})
    assert r.status_code == 200, r.text
    recovery = r.json()["recoveryCodes"]
    assert len(recovery) == 10

    # Sign-in now asks for a code; a code works once.
    code = next_code(seed)
    status, tokens = await with_code(api, email, STRONG, code)
    assert status == 200, tokens
    replay_status, _ = await with_code(api, email, STRONG, code)
    assert replay_status == 401
    strong = as_session(email, STRONG, tokens)
    r = await api.raw.get(reveal, headers=strong.headers)
    assert (r.status_code, r.json()["secret"]) == (200, "s3cret-router")

    # The admin demotes them: their tokens stop within a second, and the session with them.
    user_id = created["id"]
    r = await api.raw.patch(f"/users/{user_id}", headers=admin.headers, json={"role": "read_only"})
    assert (r.status_code, r.json()["role"]) == (200, "read_only")
    await wait_for_status(api, strong, 401)
    assert (await api.raw.post("/auth/refresh", json={"refreshToken": strong.refresh_token})).status_code == 401

    # Signed in again, with a recovery code (the TOTP step is spent), then disabled. A revocation covers the
    # tokens issued up to its second (`iat` is whole seconds): wait for the next before signing in.
    await asyncio.sleep(1.1)
    status, tokens = await with_code(api, email, STRONG, recovery[0])
    assert status == 200, tokens
    again = as_session(email, STRONG, tokens)
    assert (await api.raw.get("/users/me", headers=again.headers)).json()["role"] == "read_only"
    r = await api.raw.patch(f"/users/{user_id}", headers=admin.headers, json={"disabled": True})
    assert (r.status_code, r.json()["disabled"]) == (200, True)
    await wait_for_status(api, again, 401)
    r = await api.raw.post(
        "/auth/sign-in", json={"email": email, "password": STRONG}, headers={"X-Forwarded-For": unique_ip()}
    )
    assert r.status_code == 401


async def test_the_last_active_admin_can_be_neither_demoted_nor_disabled(api: Api) -> None:
    admin = await api.session("admin")
    me = (await api.raw.get("/users/me", headers=admin.headers)).json()
    r = await api.raw.get(
        "/users", headers=admin.headers, params={"role": "admin", "disabled": "false", "pageSize": 100}
    )
    others = [user["id"] for user in r.json()["items"] if user["id"] != me["id"]]
    for other in others:  # this system's other admins (test accounts and the first admin) disabled
        assert (
            await api.raw.patch(f"/users/{other}", headers=admin.headers, json={"disabled": True})
        ).status_code == 200

    try:
        demoted = await api.raw.patch(f"/users/{me['id']}", headers=admin.headers, json={"role": "manager"})
        disabled = await api.raw.patch(f"/users/{me['id']}", headers=admin.headers, json={"disabled": True})
    finally:
        for other in others:
            await api.raw.patch(f"/users/{other}", headers=admin.headers, json={"disabled": False})

    for r in (demoted, disabled):
        assert r.status_code == 409, r.text
        assert r.json()["detail"] == "this is the last active admin: make another user admin first"


async def test_users_are_listed_newest_first_filtered_and_paged(api: Api) -> None:
    admin = await api.session("admin")
    tag = uuid.uuid4().hex[:8]
    for n, role in enumerate(("manager", "read_only", "manager")):
        body = {"email": f"{tag}-{n}@example.com", "fullName": f"Filter {tag} {n}", "role": role, "password": STRONG}
        assert (await api.raw.post("/users", headers=admin.headers, json=body)).status_code == 201

    r = await api.raw.get("/users", headers=admin.headers, params={"q": tag.upper(), "role": "manager", "pageSize": 1})
    page = r.json()

    assert r.status_code == 200, r.text
    assert (page["total"], page["page"], page["pageSize"]) == (2, 1, 1)
    assert [user["email"] for user in page["items"]] == [f"{tag}-2@example.com"]
    assert "temporaryPassword" not in page["items"][0]


async def test_own_sessions_are_listed_and_one_ended_stops_its_tokens(api: Api) -> None:
    account = await api.new_account("read_only")
    here = await api.sign_in(account, ip=unique_ip())
    there = await api.sign_in(account, ip="10.9.8.7")

    r = await api.raw.get("/users/me/sessions", headers=here.headers)
    sessions = r.json()
    other = next(s for s in sessions if not s["current"])
    ended = await api.raw.delete(f"/users/me/sessions/{other['id']}", headers=here.headers)

    assert r.status_code == 200, r.text
    assert [s["current"] for s in sessions].count(True) == 1
    assert (other["ip"], other["userAgent"]) == ("10.9.8.7", f"python-httpx/{__import__('httpx').__version__}")
    assert ended.status_code == 204
    await wait_for_status(api, there, 401)
    assert (await api.raw.get("/users/me", headers=here.headers)).status_code == 200


async def test_someone_elses_session_cannot_be_ended(api: Api) -> None:
    mine, theirs = await api.session(), await api.session()
    their_session = (await api.raw.get("/users/me/sessions", headers=theirs.headers)).json()[0]["id"]

    r = await api.raw.delete(f"/users/me/sessions/{their_session}", headers=mine.headers)

    assert r.status_code == 404
    assert (await api.raw.get("/users/me", headers=theirs.headers)).status_code == 200


async def test_an_admin_reset_ends_the_sessions_and_gives_a_temporary_password(api: Api) -> None:
    admin, user = await api.session("admin"), await api.session("manager")
    user_id = (await api.raw.get("/users/me", headers=user.headers)).json()["id"]

    r = await api.raw.post(f"/users/{user_id}/reset-password", headers=admin.headers)

    assert r.status_code == 200, r.text
    await wait_for_status(api, user, 401)
    old = await api.raw.post("/auth/sign-in", json={"email": user.account.email, "password": user.account.password})
    assert old.status_code == 401
    await asyncio.sleep(1.1)  # a revocation covers tokens issued up to its second
    temporary = as_session(
        user.account.email, "", await sign_in(api, user.account.email, r.json()["temporaryPassword"])
    )
    assert (await api.raw.get("/users/me", headers=temporary.headers)).status_code == 403


async def test_mfa_is_turned_off_with_password_and_code_or_by_an_admin(api: Api) -> None:
    admin, user = await api.session("admin"), await api.session("read_only")
    seed = (await api.raw.post("/users/me/mfa/totp", headers=user.headers)).json()["secret"]
    code = pyotp.TOTP(seed).now()
    assert (
        await api.raw.post("/users/me/mfa/totp/confirm", headers=user.headers, json={"code": code})
    ).status_code == 200
    again = await api.raw.post("/users/me/mfa/totp", headers=user.headers)
    wrong = await api.raw.request(
        "DELETE", "/users/me/mfa", headers=user.headers, json={"password": "not-it", "code": code}
    )

    off = await api.raw.request(
        "DELETE",
        "/users/me/mfa",
        headers=user.headers,
        json={"password": user.account.password, "code": next_code(seed)},
    )
    user_id = (await api.raw.get("/users/me", headers=user.headers)).json()["id"]
    plain = await sign_in(api, user.account.email, user.account.password)

    assert again.status_code == 409
    assert wrong.status_code == 422
    assert off.status_code == 204, off.text
    assert "accessToken" in plain
    # Enrolled again, then reset by an admin (a lost device): the password alone signs in once more.
    seed = (await api.raw.post("/users/me/mfa/totp", headers=user.headers)).json()["secret"]
    confirm = {"code": pyotp.TOTP(seed).now()}
    assert (await api.raw.post("/users/me/mfa/totp/confirm", headers=user.headers, json=confirm)).status_code == 200
    assert (await sign_in(api, user.account.email, user.account.password))["mfaRequired"] is True
    assert (await api.raw.delete(f"/users/{user_id}/mfa", headers=admin.headers)).status_code == 204
    assert "accessToken" in await sign_in(api, user.account.email, user.account.password)
    listed = (await api.raw.get(f"/users/{user_id}", headers=admin.headers)).json()
    assert listed["mfaEnabled"] is False


async def test_a_password_change_ends_every_other_session(api: Api) -> None:
    account = await api.new_account("read_only")
    here, elsewhere = await api.sign_in(account, ip=unique_ip()), await api.sign_in(account, ip=unique_ip())
    wrong = await api.raw.post(
        "/users/me/password", headers=here.headers, json={"currentPassword": "not-mine", "newPassword": STRONG}
    )

    r = await api.raw.post(
        "/users/me/password", headers=here.headers, json={"currentPassword": account.password, "newPassword": STRONG}
    )

    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "currentPassword"
    assert r.status_code == 204, r.text
    await wait_for_status(api, elsewhere, 401)
    assert (await api.raw.post("/auth/refresh", json={"refreshToken": elsewhere.refresh_token})).status_code == 401
    assert (await api.raw.get("/users/me", headers=here.headers)).status_code == 200


async def test_each_staff_identity_action_is_in_the_audit_log_once_without_a_secret(api: Api) -> None:
    admin = await api.session("admin")
    admin_id = (await api.raw.get("/users/me", headers=admin.headers)).json()["id"]
    email = f"audited-{uuid.uuid4().hex[:8]}@example.com"
    created = (
        await api.raw.post("/users", headers=admin.headers, json={"email": email, "fullName": "A", "role": "manager"})
    ).json()
    user_id, temporary = created["id"], created["temporaryPassword"]
    first = as_session(email, temporary, await sign_in(api, email, temporary))
    change = {"currentPassword": temporary, "newPassword": STRONG}
    assert (await api.raw.post("/users/me/password", headers=first.headers, json=change)).status_code == 204
    user = as_session(
        email, STRONG, (await api.raw.post("/auth/refresh", json={"refreshToken": first.refresh_token})).json()
    )
    seed = (await api.raw.post("/users/me/mfa/totp", headers=user.headers)).json()["secret"]
    code = pyotp.TOTP(seed).now()
    recovery = (await api.raw.post("/users/me/mfa/totp/confirm", headers=user.headers, json={"code": code})).json()
    wrong_status, _ = await with_code(api, email, STRONG, "000000" if code != "000000" else "111111")
    assert wrong_status == 401
    assert (await api.raw.delete(f"/users/{user_id}/mfa", headers=admin.headers)).status_code == 204
    assert (
        await api.raw.patch(f"/users/{user_id}", headers=admin.headers, json={"role": "read_only"})
    ).status_code == 200
    assert (await api.raw.post(f"/users/{user_id}/reset-password", headers=admin.headers)).status_code == 200
    expected = Counter(
        user_created=1, sign_in=1, password_changed=1, mfa_enrolled=1, mfa_failed=1, mfa_disabled=1, user_updated=1,
        password_reset=1,
    )  # fmt: skip

    page = await wait_for_entries(api, admin, sum(expected.values()), pageSize=100, targetUserId=user_id)

    assert Counter(entry["action"] for entry in page["items"]) == expected
    by_action = {entry["action"]: entry for entry in page["items"]}
    for action in ("user_created", "mfa_disabled", "user_updated", "password_reset"):
        assert by_action[action]["userId"] == admin_id, action
    for action in ("password_changed", "mfa_enrolled"):
        assert by_action[action]["userId"] == user_id, action
    assert by_action["user_updated"]["detail"] == {"role": {"from": "manager", "to": "read_only"}}
    assert by_action["user_created"]["detail"]["temporary_password"] is True
    for secret in (temporary, STRONG, seed, code, *recovery["recoveryCodes"]):
        assert secret not in str(page)


async def test_a_totp_code_needs_the_second_factor_a_reveal_needs(api: Api) -> None:
    admin, manager = await api.session("admin"), await api.session("manager")  # the manager: a password alone
    client_id = await new_client(api, admin)
    seed = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    credential_id = await create(api, admin, client_id, label="SSO", secret="s", totpSecret=seed)

    r = await api.raw.get(f"/clients/{client_id}/credentials/{credential_id}/totp", headers=manager.headers)
    async with grpc.aio.insecure_channel(api.system.info_address("vault")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as direct:
            await vault_pb2_grpc.VaultStub(channel).GetCredentialTotp(
                vault_pb2.GetCredentialTotpRequest(client_id=client_id, credential_id=credential_id),
                metadata=(("authorization", f"Bearer {manager.access_token}"),),
                timeout=5,
            )

    assert (r.status_code, r.json()["detail"]) == (403, "mfa required")
    assert (direct.value.code(), direct.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "mfa required")
    assert seed not in r.text
