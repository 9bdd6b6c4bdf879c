"""The gateway's HTTP conventions: problem+json, request ids, limits, docs and health."""

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest

from clientvault.settings import GatewaySettings
from gateway.app import create_app
from tests.policy_support import CATALOGUE
from tests.system import Api, Session, frozen

PROBLEM = "application/problem+json"


async def test_a_valid_request_id_is_echoed(api: Api) -> None:
    r = await api.raw.get("/healthz", headers={"X-Request-ID": "trace-42.a_b"})

    assert r.headers["x-request-id"] == "trace-42.a_b"


@pytest.mark.parametrize("given", ["", "has space", "x" * 129, "semi;colon", "ünï"])
async def test_an_unsafe_request_id_is_replaced(api: Api, given: str) -> None:
    r = await api.raw.get("/users/me", headers={b"X-Request-ID": given.encode()})

    assert r.headers["x-request-id"] != given
    assert len(r.headers["x-request-id"]) == 32


async def test_every_response_has_a_request_id_even_errors(api: Api) -> None:
    for r in (await api.raw.get("/nowhere"), await api.raw.post("/auth/sign-in", content=b"{")):
        assert r.headers["x-request-id"]
        assert r.headers["content-type"] == PROBLEM


async def test_unknown_route_is_a_problem_404(api: Api) -> None:
    r = await api.raw.get("/nowhere")

    assert r.status_code == 404
    assert r.json() == {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "Not Found"}


async def test_wrong_method_is_a_problem_405(api: Api) -> None:
    r = await api.raw.delete("/users/me")

    assert r.status_code == 405
    assert r.headers["content-type"] == PROBLEM


async def test_unknown_body_fields_are_rejected(api: Api) -> None:
    r = await api.raw.post("/auth/sign-in", json={"email": "a@example.com", "password": "x", "role": "admin"})

    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "role", "message": "unknown field"}]


async def test_a_body_that_is_not_json_is_422(api: Api) -> None:
    r = await api.raw.post("/auth/sign-in", content=b"{not json", headers={"Content-Type": "application/json"})

    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body"


async def test_a_body_over_one_mebibyte_is_413(api: Api) -> None:
    big = b'{"email": "a@example.com", "password": "' + b"x" * (1024 * 1024) + b'"}'

    r = await api.raw.post("/auth/sign-in", content=big, headers={"Content-Type": "application/json"})

    assert r.status_code == 413
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["status"] == 413


async def test_a_chunked_body_over_one_mebibyte_is_413(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    r = await api.raw.post("/auth/sign-in", content=chunks(), headers={"Content-Type": "application/json"})

    assert r.status_code == 413


async def test_openapi_describes_every_route_as_the_app_declares_it(api: Api) -> None:
    spec = (await api.raw.get("/openapi.json")).json()

    # What tests/unit/test_openapi.py examines (types, enums, operationIds, security) is what is served.
    assert spec == json.loads(json.dumps(create_app(GatewaySettings()).openapi()))
    operations = {(method.upper(), path): op for path, item in spec["paths"].items() for method, op in item.items()}
    assert set(operations) >= set(CATALOGUE)
    for key in CATALOGUE:
        assert "503" in operations[key]["responses"], key
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


async def test_docs_are_served(api: Api) -> None:
    r = await api.raw.get("/docs")

    assert r.status_code == 200
    assert "swagger" in r.text.lower()


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.raw.get("/healthz")).json() == {"status": "ok"}
    assert (await api.raw.get("/readyz")).json() == {"status": "ready"}


async def test_a_frozen_audit_service_leaves_the_gateway_ready_and_only_its_routes_503(api: Api) -> None:
    admin = await api.session("admin")

    with frozen(api.system.pids()["audit"]):  # alive but silent, as a hung process is
        ready = await api.raw.get("/readyz")
        clients = await api.raw.get("/clients", headers=admin.headers)
        audit_logs = await api.raw.get("/audit-logs", headers=admin.headers)
        services = await api.raw.get("/healthz/services")

    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    assert clients.status_code == 200
    assert audit_logs.status_code == 503
    assert audit_logs.headers["content-type"] == PROBLEM
    assert int(audit_logs.headers["retry-after"]) > 0
    assert services.status_code == 503
    assert services.json()["detail"] == "unavailable: audit"


async def test_the_services_health_names_each_service(api: Api) -> None:
    r = await api.raw.get("/healthz/services")

    assert r.status_code == 200
    assert r.json() == {"status": "ok", "services": dict.fromkeys(["auth", "clients", "vault", "audit"], "serving")}


async def test_a_service_that_does_not_answer_is_a_503_not_a_hang(api: Api) -> None:
    session = await api.session()
    assert (await api.raw.get("/users/me", headers=session.headers)).status_code == 200

    with frozen(api.system.pids()["auth"]):  # alive but silent: only the deadline can end the call
        started = time.monotonic()
        r = await api.raw.get("/users/me", headers=session.headers)
        took = time.monotonic() - started

    assert r.status_code == 503
    assert r.headers["content-type"] == PROBLEM
    assert int(r.headers["retry-after"]) > 0
    assert r.json()["detail"] == "a service could not answer; try again later"
    assert took < 10  # the gateway's deadline (5 s by default), not the client's 30 s timeout
    assert (await api.raw.get("/users/me", headers=session.headers)).status_code == 200


async def test_every_response_carries_the_security_headers(api: Api) -> None:
    session = await api.session()
    answered = {
        "ok": await api.raw.get("/users/me", headers=session.headers),
        "error": await api.raw.get("/users/me"),
        "unknown": await api.raw.get("/no-such-route"),
    }
    for name, r in answered.items():
        assert r.headers["x-content-type-options"] == "nosniff", name
        assert r.headers["x-frame-options"] == "DENY", name
        assert r.headers["referrer-policy"] == "no-referrer", name
        assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains", name
        assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
        assert r.headers["cache-control"] == "no-store", name
    docs = await api.raw.get("/docs")
    assert "content-security-policy" not in docs.headers  # Swagger UI loads its scripts and styles
    assert docs.headers["x-content-type-options"] == "nosniff"


async def test_a_route_that_sets_its_own_cache_control_keeps_it_alone(api: Api) -> None:
    r = await api.raw.post("/auth/sign-in", json={"email": "nobody@example.com", "password": "x"})
    assert r.headers.get_list("cache-control") == ["no-store"]


async def test_each_request_has_an_access_log_line_without_its_query_string(api: Api) -> None:
    session = await api.session()
    request_id = f"access-log-{time.monotonic_ns()}"
    await api.raw.get("/clients?q=private-search-term", headers={**session.headers, "X-Request-ID": request_id})

    log_file = api.system.data_dir / "logs" / "gateway.log"
    for _ in range(50):  # the line is written right after the response is sent
        if request_id in log_file.read_text():
            break
        await asyncio.sleep(0.1)
    lines = [json.loads(line) for line in log_file.read_text().splitlines() if request_id in line]

    access = [line for line in lines if line["event"] == "http.request"]
    assert len(access) == 1
    assert (access[0]["method"], access[0]["path"], access[0]["status"]) == ("GET", "/clients", 200)
    me = (await api.raw.get("/users/me", headers=session.headers)).json()
    assert (access[0]["user_id"], access[0]["client_ip"]) == (me["id"], "127.0.0.1")
    assert access[0]["ms"] > 0
    assert "private-search-term" not in log_file.read_text()


async def test_a_key_given_twice_in_a_body_is_422_not_the_last_value(api: Api, admin: Session) -> None:
    """A proxy or an audit reader taking the first value must never see another request than the service."""
    client = (await api.raw.post("/clients", headers=admin.headers, json={"name": "Dup keys"})).json()["id"]
    body = b'{"label": "Router", "secret": "first", "secret": "second"}'

    r = await api.raw.post(
        f"/clients/{client}/credentials", headers={**admin.headers, "Content-Type": "application/json"}, content=body
    )

    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "body", "message": "a key appears twice in the JSON body"}]
    assert (await api.raw.get(f"/clients/{client}/credentials", headers=admin.headers)).json() == []


async def test_an_id_in_a_query_or_body_in_another_spelling_is_422(api: Api, admin: Session) -> None:
    me = (await api.raw.get("/users/me", headers=admin.headers)).json()["id"]
    client = (await api.raw.post("/clients", headers=admin.headers, json={"name": "Id spellings"})).json()["id"]
    for alias in (me.upper(), "{" + me + "}", me.replace("-", ""), "urn:uuid:" + me):
        r = await api.raw.get("/audit-logs", headers=admin.headers, params={"userId": alias})
        assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "userId"), alias
        r = await api.raw.post(
            f"/clients/{client}/tasks", headers=admin.headers, json={"title": "T", "assigneeUserId": alias}
        )
        assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "assigneeUserId"), alias
    assert (await api.raw.get("/audit-logs", headers=admin.headers, params={"userId": me})).status_code == 200
