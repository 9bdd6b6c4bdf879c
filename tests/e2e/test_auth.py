"""Sign-in, refresh, sign-out and /users/me through the gateway, as the contract describes them."""

import asyncio
import statistics
import time

from tests.system import Api, Session, frozen, unique_ip

PROBLEM = "application/problem+json"


async def wait_for_status(api: Api, session: Session, status: int, within_s: float = 1.0) -> float:
    """Polls /users/me until it answers `status`; returns how long that took (fails after `within_s`)."""
    started = time.monotonic()
    while True:
        r = await api.raw.get("/users/me", headers=session.headers)
        elapsed = time.monotonic() - started
        if r.status_code == status:
            return elapsed
        assert elapsed < within_s, f"/users/me still answers {r.status_code} after {elapsed:.2f}s"
        await asyncio.sleep(0.02)


async def test_sign_in_returns_a_token_pair_that_is_never_cached(api: Api) -> None:
    account = await api.new_account("manager")

    r = await api.raw.post("/auth/sign-in", json={"email": account.email, "password": account.password})

    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"accessToken", "refreshToken", "tokenType", "expiresIn"}
    assert body["tokenType"] == "Bearer"
    assert body["expiresIn"] == 900
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"


async def test_users_me_returns_the_callers_profile(api: Api) -> None:
    session = await api.session("manager")

    r = await api.raw.get("/users/me", headers=session.headers)

    assert r.status_code == 200
    me = r.json()
    assert set(me) == {"id", "email", "fullName", "role", "createdAt"}
    assert (me["email"], me["fullName"], me["role"]) == (session.account.email, "Test manager", "manager")
    assert me["createdAt"].endswith("Z")


async def test_email_is_matched_case_insensitively(api: Api) -> None:
    account = await api.new_account()

    r = await api.raw.post("/auth/sign-in", json={"email": account.email.upper(), "password": account.password})

    assert r.status_code == 200


async def test_wrong_password_and_unknown_email_answer_alike(api: Api) -> None:
    account = await api.new_account()
    ip = unique_ip()

    async def attempt(email: str) -> tuple[int, dict[str, object], float, str | None]:
        started = time.perf_counter()
        r = await api.raw.post(
            "/auth/sign-in", json={"email": email, "password": "not-the-password"}, headers={"X-Forwarded-For": ip}
        )
        return r.status_code, r.json(), time.perf_counter() - started, r.headers.get("www-authenticate")

    wrong = [await attempt(account.email) for _ in range(2)]
    unknown = [await attempt(f"nobody-{i}-{account.email}") for i in range(2)]

    assert {(status, header) for status, _, _, header in wrong + unknown} == {(401, "Bearer")}
    assert (
        wrong[0][1]
        == unknown[0][1]
        == {
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": "wrong email or password",
        }
    )
    # Both verify an argon2id hash, so neither answer is fast enough to tell them apart.
    wrong_s, unknown_s = statistics.median(t for *_, t, _ in wrong), statistics.median(t for *_, t, _ in unknown)
    assert 0.4 < unknown_s / wrong_s < 2.5, (wrong_s, unknown_s)


async def test_sign_in_is_throttled_per_email_even_with_the_right_password(api: Api) -> None:
    account = await api.new_account()
    for _ in range(5):
        r = await api.raw.post(
            "/auth/sign-in",
            json={"email": account.email, "password": "wrong-password-1"},
            headers={"X-Forwarded-For": unique_ip()},
        )
        assert r.status_code == 401

    r = await api.raw.post(
        "/auth/sign-in",
        json={"email": account.email, "password": account.password},
        headers={"X-Forwarded-For": unique_ip()},
    )

    assert r.status_code == 429
    assert r.headers["content-type"] == PROBLEM
    assert 1 <= int(r.headers["retry-after"]) <= 900


async def test_refresh_rotates_the_refresh_token(api: Api) -> None:
    session = await api.session()

    first = await api.raw.post("/auth/refresh", json={"refreshToken": session.refresh_token})
    second = await api.raw.post("/auth/refresh", json={"refreshToken": first.json()["refreshToken"]})

    assert first.status_code == second.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    assert first.json()["refreshToken"] != session.refresh_token
    me = await api.raw.get("/users/me", headers={"Authorization": f"Bearer {second.json()['accessToken']}"})
    assert me.json()["email"] == session.account.email


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_session(api: Api) -> None:
    session = await api.session()
    rotated = (await api.raw.post("/auth/refresh", json={"refreshToken": session.refresh_token})).json()

    reuse = await api.raw.post("/auth/refresh", json={"refreshToken": session.refresh_token})

    assert reuse.status_code == 401
    assert reuse.headers["www-authenticate"] == "Bearer"
    # The newest refresh token of that session is dead too, and so are its access tokens, within a second.
    assert (await api.raw.post("/auth/refresh", json={"refreshToken": rotated["refreshToken"]})).status_code == 401
    await wait_for_status(api, session, 401)
    newer = Session(session.account, rotated["accessToken"], rotated["refreshToken"])
    await wait_for_status(api, newer, 401)


async def test_a_session_revoked_elsewhere_leaves_other_sessions_alone(api: Api) -> None:
    account = await api.new_account()
    kept = await api.sign_in(account)
    ended = await api.sign_in(account)

    assert (await api.raw.post("/auth/sign-out", headers=ended.headers)).status_code == 204

    await wait_for_status(api, ended, 401)
    assert (await api.raw.get("/users/me", headers=kept.headers)).status_code == 200


async def test_sign_out_revokes_the_session_and_stays_idempotent(api: Api) -> None:
    session = await api.session()

    r = await api.raw.post("/auth/sign-out", headers=session.headers)

    assert r.status_code == 204
    assert r.content == b""
    await wait_for_status(api, session, 401)
    assert (await api.raw.post("/auth/refresh", json={"refreshToken": session.refresh_token})).status_code == 401
    again = await api.raw.post("/auth/sign-out", headers=session.headers)
    assert again.status_code == 204


async def test_a_disabled_user_is_locked_out_within_a_second(api: Api) -> None:
    session = await api.session("manager")

    done = api.system.cli("users", "disable", "--email", session.account.email)

    assert done.returncode == 0, done.stderr
    await wait_for_status(api, session, 401)
    assert (await api.raw.post("/auth/refresh", json={"refreshToken": session.refresh_token})).status_code == 401
    r = await api.raw.post(
        "/auth/sign-in",
        json={"email": session.account.email, "password": session.account.password},
        headers={"X-Forwarded-For": unique_ip()},
    )
    assert r.status_code == 401

    assert api.system.cli("users", "enable", "--email", session.account.email).returncode == 0
    again = await api.sign_in(session.account, ip=unique_ip())
    assert (await api.raw.get("/users/me", headers=again.headers)).status_code == 200


async def test_refresh_with_an_unknown_token_is_401(api: Api) -> None:
    r = await api.raw.post("/auth/refresh", json={"refreshToken": "x" * 43})

    assert r.status_code == 401
    assert r.json()["detail"] == "invalid refresh token"


async def test_sign_in_body_is_validated(api: Api) -> None:
    r = await api.raw.post("/auth/sign-in", json={"email": "a@example.com"})

    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["errors"] == [{"field": "password", "message": "Field required"}]


async def test_a_sign_out_during_a_nats_outage_still_revokes_once_nats_is_back(api: Api) -> None:
    session = await api.session()

    with frozen(api.system.pids()["nats"]):  # the broker hangs: nothing is published or delivered
        started = time.monotonic()
        r = await api.raw.post("/auth/sign-out", headers=session.headers)
        answered_in = time.monotonic() - started

    assert r.status_code == 204
    assert answered_in < 3  # the request does not wait for the broker
    assert (await api.raw.post("/auth/refresh", json={"refreshToken": session.refresh_token})).status_code == 401
    await wait_for_status(api, session, 401, within_s=20)  # delivered once the broker is back


async def test_a_sign_in_beyond_the_session_cap_ends_the_least_recently_used_session(api: Api) -> None:
    account = await api.new_account()
    oldest = await api.sign_in(account, ip=unique_ip())
    kept = [await api.sign_in(account, ip=unique_ip()) for _ in range(19)]  # 20 live sessions: the default cap

    newest = await api.sign_in(account, ip=unique_ip())

    refreshed = await api.raw.post("/auth/refresh", json={"refreshToken": oldest.refresh_token})
    assert refreshed.status_code == 401
    await wait_for_status(api, oldest, 401, within_s=2)  # the revocation reaches the deny list within a second
    for session in (*kept, newest):
        assert (await api.raw.get("/users/me", headers=session.headers)).status_code == 200
