"""Staff identity on the auth service alone, called directly as an attacker with a stolen password or token
would: a TOTP code works once, wrong codes are throttled like wrong passwords, recovery codes work once
each, a temporary password's token can do nothing but change it, weak passwords are refused by name, the
last admin stays, and the TOTP seed is sealed in the database."""

import time
import uuid

import grpc
import pyotp
import pytest

from clientvault.v1 import auth_pb2 as pb
from tests.service.conftest import SIGN_IN_EMAIL_MAX, Service
from tests.service.test_auth import new_account, sign_in
from tests.system import unique_ip


async def call(auth: Service, rpc: str, request: object, token: str | None = None, ip: str | None = None) -> object:
    metadata = [("x-client-ip", ip or unique_ip())]
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    return await getattr(auth.stub, rpc)(request, metadata=auth.vouched(rpc, metadata), timeout=10)


async def refused(auth: Service, rpc: str, request: object, token: str | None = None) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call(auth, rpc, request, token)
    return error.value.code(), error.value.details() or ""


async def enrolled(auth: Service, role: str = "manager") -> tuple[str, str, str, list[str]]:
    """A user with TOTP on: email, password, seed, recovery codes."""
    account = await new_account(auth, role)
    token = (await sign_in(auth, account.email, account.password, unique_ip())).access_token
    enrolment = await call(auth, "StartTotp", pb.StartTotpRequest(), token)
    seed = enrolment.secret  # type: ignore[attr-defined]
    codes = await call(auth, "ConfirmTotp", pb.ConfirmTotpRequest(code=pyotp.TOTP(seed).now()), token)
    return account.email, account.password, seed, list(codes.codes)  # type: ignore[attr-defined]


async def challenge(auth: Service, email: str, password: str, ip: str) -> str:
    reply = await call(auth, "SignIn", pb.SignInRequest(email=email, password=password), ip=ip)
    assert not reply.HasField("tokens")  # type: ignore[attr-defined]  # a password alone gets no token
    assert list(reply.mfa.methods) == ["totp", "recoveryCode"]  # type: ignore[attr-defined]
    return str(reply.mfa.mfa_token)  # type: ignore[attr-defined]


async def test_a_totp_code_signs_in_once_and_its_token_says_otp(auth: Service) -> None:
    email, password, seed, _ = await enrolled(auth)
    # The code of the enrolment itself is spent: a sign-in needs the next step's code.
    code = pyotp.TOTP(seed).at(time.time() + 30)
    first = await challenge(auth, email, password, unique_ip())

    pair = await call(auth, "CompleteMfa", pb.CompleteMfaRequest(mfa_token=first, code=code))
    caller = await auth.tokens.verifier.verify(pair.access_token)  # type: ignore[attr-defined]
    replayed = await refused(
        auth,
        "CompleteMfa",
        pb.CompleteMfaRequest(mfa_token=await challenge(auth, email, password, unique_ip()), code=code),
    )
    again = await refused(auth, "CompleteMfa", pb.CompleteMfaRequest(mfa_token=first, code=code))

    assert caller.amr == ("pwd", "otp")
    assert replayed == (grpc.StatusCode.UNAUTHENTICATED, "wrong code")
    assert again[0] is grpc.StatusCode.UNAUTHENTICATED  # the mfaToken was used up


async def test_wrong_codes_count_against_the_sign_in_throttle(auth: Service) -> None:
    email, password, _, _ = await enrolled(auth)
    token = await challenge(auth, email, password, unique_ip())

    statuses = [
        (await refused(auth, "CompleteMfa", pb.CompleteMfaRequest(mfa_token=token, code=f"{n:06d}")))[0]
        for n in range(SIGN_IN_EMAIL_MAX + 1)
    ]

    assert statuses[-1] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert set(statuses[:-1]) == {grpc.StatusCode.UNAUTHENTICATED}


async def test_each_recovery_code_works_once(auth: Service) -> None:
    email, password, _, codes = await enrolled(auth)

    first = await call(
        auth,
        "CompleteMfa",
        pb.CompleteMfaRequest(mfa_token=await challenge(auth, email, password, unique_ip()), code=codes[0].lower()),
    )
    reused = await refused(
        auth,
        "CompleteMfa",
        pb.CompleteMfaRequest(mfa_token=await challenge(auth, email, password, unique_ip()), code=codes[0]),
    )
    second = await call(
        auth,
        "CompleteMfa",
        pb.CompleteMfaRequest(mfa_token=await challenge(auth, email, password, unique_ip()), code=codes[1]),
    )

    assert first.access_token  # type: ignore[attr-defined]
    assert second.access_token  # type: ignore[attr-defined]
    assert len(codes) == len(set(codes)) == 10
    assert reused[0] is grpc.StatusCode.UNAUTHENTICATED


async def test_the_totp_seed_is_sealed_and_recovery_codes_hashed_in_the_database(auth: Service) -> None:
    email, _, seed, codes = await enrolled(auth)

    [(sealed,)] = await auth.sql("SELECT totp_sealed FROM auth.users WHERE email = %s", email)
    stored = await auth.sql("SELECT code_hash FROM auth.recovery_codes")

    assert seed.encode() not in bytes(sealed)
    assert not any(code.replace("-", "").encode() in bytes(row[0]) for row in stored for code in codes)


async def test_a_temporary_password_only_lets_its_user_change_it(auth: Service) -> None:
    admin = await new_account(auth, "admin")
    admin_token = (await sign_in(auth, admin.email, admin.password, unique_ip())).access_token
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    created = await call(
        auth,
        "CreateUser",
        pb.CreateUserRequest(email=email, full_name="New Manager", role=pb.ROLE_MANAGER),
        admin_token,
    )
    temporary = created.temporary_password  # type: ignore[attr-defined]
    pair = await sign_in(auth, email, temporary, unique_ip())

    blocked = await refused(auth, "GetMe", pb.GetMeRequest(), pair.access_token)
    weak = await refused(
        auth,
        "ChangePassword",
        pb.ChangePasswordRequest(current_password=temporary, new_password="Password1234!"),
        pair.access_token,
    )
    own_email = await refused(
        auth,
        "ChangePassword",
        pb.ChangePasswordRequest(current_password=temporary, new_password=email),
        pair.access_token,
    )
    await call(
        auth,
        "ChangePassword",
        pb.ChangePasswordRequest(current_password=temporary, new_password="plum orbit ferry cactus 42"),
        pair.access_token,
    )
    renewed = await call(auth, "Refresh", pb.RefreshRequest(refresh_token=pair.refresh_token))
    me = await call(auth, "GetMe", pb.GetMeRequest(), renewed.access_token)  # type: ignore[attr-defined]

    assert created.user.password_change_required  # type: ignore[attr-defined]
    assert blocked == (grpc.StatusCode.PERMISSION_DENIED, "password change required")
    assert weak[0] is grpc.StatusCode.INVALID_ARGUMENT
    assert "too easy to guess" in weak[1]
    assert own_email == (grpc.StatusCode.INVALID_ARGUMENT, "password must not be the email address")
    assert not me.password_change_required  # type: ignore[attr-defined]


async def test_a_temporary_password_left_unused_past_its_time_no_longer_signs_in(auth: Service) -> None:
    admin = await new_account(auth, "admin")
    admin_token = (await sign_in(auth, admin.email, admin.password, unique_ip())).access_token
    email = f"late-{uuid.uuid4().hex[:8]}@example.com"
    created = await call(
        auth,
        "CreateUser",
        pb.CreateUserRequest(email=email, full_name="Late Starter", role=pb.ROLE_MANAGER),
        admin_token,
    )
    temporary = created.temporary_password  # type: ignore[attr-defined]
    [(expires_at, set_at)] = await auth.sql(
        "SELECT temporary_password_expires_at, created_at FROM auth.users WHERE email = %s", email
    )
    # Three days later (the clock of the row moved back: the sign-in reads the real one).
    await auth.sql(
        "UPDATE auth.users SET temporary_password_expires_at = now() - interval '1 second' WHERE email = %s", email
    )

    code, message = await refused(auth, "SignIn", pb.SignInRequest(email=email, password=temporary))
    reset = await call(auth, "ResetPassword", pb.ResetPasswordRequest(user_id=created.user.id), admin_token)  # type: ignore[attr-defined]
    again = await sign_in(auth, email, reset.temporary_password, unique_ip())  # type: ignore[attr-defined]

    assert (expires_at - set_at).total_seconds() == pytest.approx(72 * 3600, abs=60)
    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert message == "the temporary password has expired: ask an admin for a new one"
    assert again.access_token


async def test_the_last_active_admin_can_be_neither_demoted_nor_disabled(auth: Service) -> None:
    admin = await new_account(auth, "admin")
    token = (await sign_in(auth, admin.email, admin.password, unique_ip())).access_token
    # Every other admin of the tier's database disabled, directly: this one is the last.
    others = await auth.sql(
        "UPDATE auth.users SET disabled_at = now() WHERE role = 'admin' AND disabled_at IS NULL AND email <> %s"
        " RETURNING id",
        admin.email,
    )
    me = await call(auth, "GetMe", pb.GetMeRequest(), token)

    try:
        demoted = await refused(auth, "UpdateUser", pb.UpdateUserRequest(user_id=me.id, role=pb.ROLE_MANAGER), token)  # type: ignore[attr-defined]
        disabled = await refused(auth, "UpdateUser", pb.UpdateUserRequest(user_id=me.id, disabled=True), token)  # type: ignore[attr-defined]
    finally:
        await auth.sql("UPDATE auth.users SET disabled_at = NULL WHERE id = ANY(%s)", [row[0] for row in others])

    assert (
        demoted
        == disabled
        == (grpc.StatusCode.FAILED_PRECONDITION, "this is the last active admin: make another user admin first")
    )


async def test_guessing_the_code_to_turn_mfa_off_with_a_stolen_token_is_throttled(auth: Service) -> None:
    # The thief has the password and an access token of the account (from before it enrolled), not the phone.
    account = await new_account(auth, "manager")
    stolen = (await sign_in(auth, account.email, account.password, unique_ip())).access_token
    seed = (await call(auth, "StartTotp", pb.StartTotpRequest(), stolen)).secret  # type: ignore[attr-defined]
    await call(auth, "ConfirmTotp", pb.ConfirmTotpRequest(code=pyotp.TOTP(seed).now()), stolen)

    statuses = [
        (await refused(auth, "DisableMfa", pb.DisableMfaRequest(password=account.password, code=f"{n:06d}"), stolen))[0]
        for n in range(SIGN_IN_EMAIL_MAX + 1)
    ]

    assert statuses[-1] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert set(statuses[:-1]) == {grpc.StatusCode.INVALID_ARGUMENT}
