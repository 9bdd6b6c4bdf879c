"""Logs never carry a password or a token, whatever the request did."""

from tests.system import Api


async def test_no_password_or_token_reaches_the_logs(api: Api) -> None:
    session = await api.session("admin")
    refreshed = (await api.raw.post("/auth/refresh", json={"refreshToken": session.refresh_token})).json()
    await api.raw.post("/auth/refresh", json={"refreshToken": session.refresh_token})  # a reuse, logged as a warning
    await api.raw.post(
        "/auth/sign-in", json={"email": session.account.email, "password": "wrong-" + session.account.password}
    )
    await api.raw.get("/users/me", headers={"Authorization": f"Bearer {refreshed['accessToken']}"})

    logs = "\n".join(path.read_text(errors="replace") for path in (api.system.data_dir / "logs").glob("*.log"))

    assert "session.refresh_token_reused" in logs  # the events are there…
    for value in (session.account.password, session.access_token, session.refresh_token,
                  refreshed["accessToken"], refreshed["refreshToken"]):  # fmt: skip
        assert value not in logs  # …the secrets are not
