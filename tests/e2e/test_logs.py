"""Logs never carry a password or a token, whatever the request did; every line is JSON, the web server's too."""

import json
import uuid

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


async def test_every_gateway_line_is_json_and_the_access_line_names_the_route(api: Api) -> None:
    session = await api.session("read_only")
    client_id = str(uuid.uuid4())
    assert (await api.raw.get(f"/clients/{client_id}", headers=session.headers)).status_code == 404

    lines = (api.system.data_dir / "logs" / "gateway.log").read_text().splitlines()
    logged = [json.loads(line) for line in lines]  # each line, uvicorn's own included, is one JSON object

    assert any(line.get("logger", "").startswith("uvicorn") for line in logged)
    (access,) = [line for line in logged if line["event"] == "http.request" and line["path"] == f"/clients/{client_id}"]
    assert access["route"] == "/clients/{clientId}"
    assert access["status"] == 404
