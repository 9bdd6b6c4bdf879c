"""What schema fuzzing (tests/fuzz) and trying the classic bad inputs by hand found, kept as plain requests: each
answer is what the contract says, a problem+json that names what is wrong, never a 500."""

import uuid
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from clientvault.db import Database
from tests.audit_support import wait_for_audit
from tests.system import Api, Session, unique_ip
from tests.vault_support import new_client

PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}


def problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


def fields_of(body: dict[str, Any]) -> list[str]:
    return [error["field"] for error in body["errors"]]


def raw(headers: dict[str, str], **extra: bytes) -> dict[bytes, bytes]:
    """Headers with some values as raw bytes (UTF-8, as a browser or a proxy sends them)."""
    return {**{k.encode(): v.encode() for k, v in headers.items()}, **{k.encode(): v for k, v in extra.items()}}


async def test_sign_in_with_a_nul_in_the_email_is_a_wrong_email(api: Api) -> None:
    r = await api.raw.post(
        "/auth/sign-in",
        json={"email": "admin\x00@example.com", "password": "whatever-it-is"},
        headers={"X-Forwarded-For": unique_ip()},
    )

    assert problem(r, 401)["detail"] == "wrong email or password"


@pytest.mark.parametrize("agent", ["Zoë/1.0".encode(), b"tab\tseparated", "ブラウザ".encode()])
async def test_a_user_agent_beyond_printable_ascii_is_served(api: Api, admin: Session, agent: bytes) -> None:
    me = await api.raw.get("/users/me", headers=raw(admin.headers, **{"User-Agent": agent}))
    public = await api.raw.post("/auth/refresh", json={"refreshToken": "nope"}, headers={b"User-Agent": agent})

    assert me.status_code == 200, me.text
    assert problem(public, 401)["detail"] == "invalid refresh token"


async def test_the_audit_log_keeps_such_a_user_agent_escaped(api: Api, admin: Session) -> None:
    client_id = await new_client(api, admin)
    headers = raw(admin.headers, **{"User-Agent": "Zoë\tbrowser".encode()})

    r = await api.raw.post(f"/clients/{client_id}/credentials", headers=headers, json={"label": "ua", "secret": "s"})

    assert r.status_code == 201, r.text
    entry = (await wait_for_audit(api, admin, r.json()["id"], 1))["items"][0]
    assert entry["userAgent"] == "Zo\\xeb\\tbrowser"


@pytest.mark.parametrize("forwarded", ["é".encode(), b"not-an-address", b"198.51.100.7:443"])
async def test_a_forwarded_for_that_is_no_address_is_not_believed(api: Api, admin: Session, forwarded: bytes) -> None:
    # The test system trusts 127.0.0.1 as a proxy, so the gateway reads the header: the proxy is the client.
    client_id = await new_client(api, admin)

    headers = raw(admin.headers, **{"X-Forwarded-For": forwarded})

    r = await api.raw.post(f"/clients/{client_id}/credentials", headers=headers, json={"label": "xff", "secret": "s"})

    assert r.status_code == 201, r.text
    entry = (await wait_for_audit(api, admin, r.json()["id"], 1))["items"][0]
    assert entry["ip"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"to": "9999-12-31T23:59:59-23:59"}, "to"),  # after the last instant of year 9999 in UTC
        ({"from": "0001-01-01T00:00:00+23:59"}, "from"),  # before the first
        ({"to": "5.960464477539063e-08"}, "to"),  # a number, which pydantic would read as Unix time
        ({"from": "1600000000"}, "from"),
    ],
)
async def test_audit_log_times_out_of_range_or_not_rfc3339_are_422(
    api: Api, admin: Session, params: dict[str, str], field: str
) -> None:
    r = await api.raw.get("/audit-logs", headers=admin.headers, params=params)

    assert fields_of(problem(r, 422)) == [field]


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "\xff\xfe not UTF-8"}',
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the JSON parser goes
        b'{"name": "x", "phone": ' + b"9" * 5_000 + b"}",  # an integer past Python's 4,300 digits
    ],
    ids=["not-utf8", "too-deep", "huge-integer"],
)
async def test_a_body_that_cannot_be_read_as_json_is_422(api: Api, admin: Session, body: bytes) -> None:
    r = await api.raw.post("/clients", headers={**admin.headers, "Content-Type": "application/json"}, content=body)

    assert problem(r, 422)["errors"] == [{"field": "body", "message": "the body is not valid JSON"}]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"priority": 5}, "priority"), ({"status": ["done"]}, "status"), ({"title": ""}, "title")],
)
async def test_a_422_names_a_nullable_field_once_by_its_wire_name(
    api: Api, admin: Session, body: dict[str, Any], field: str
) -> None:
    client_id = await new_client(api, admin)

    r = await api.raw.patch(f"/clients/{client_id}/tasks/{uuid.uuid4()}", headers=admin.headers, json=body)

    assert fields_of(problem(r, 422)) == [field]


async def test_a_failed_statement_does_not_carry_its_parameters(api: Api) -> None:
    """Its message is what a 500 logs: the sign-in NUL failure logged the email it was given."""
    db = Database(api.system.info()["database_url"], pool_size=1)
    try:
        with pytest.raises(DBAPIError) as failed:  # NUL: refused by the driver, whose message names no value
            async with db.begin() as conn:
                await conn.exec_driver_sql("SELECT %(x)s::text", {"x": "a-private-value\x00"})
    finally:
        await db.engine.dispose()

    assert "a-private-value" not in str(failed.value)


@pytest.mark.parametrize(
    ("method", "path", "request_args", "status", "field"),
    [
        ("GET", "/clients", {"params": {"q": "a\x00b"}}, 422, "q"),
        ("GET", "/clients", {"params": {"q": "line\nbreak"}}, 422, "q"),
        ("GET", "/clients", {"params": {"page": "9" * 40}}, 422, "page"),
        ("GET", "/clients", {"params": {"pageSize": "-" + "9" * 40}}, 422, "pageSize"),
        ("GET", "/clients", {"params": [("page", "1"), ("page", "0")]}, 422, "page"),  # the last one counts
        ("GET", "/clients", {"params": {"unknown": "ignored"}}, 200, None),
        ("GET", "/clients/not-a-uuid", {}, 404, None),
        ("GET", "/clients/%2e%2e/credentials", {}, 404, None),
        ("GET", "/clients/..%2F..%2Fusers%2Fme", {}, 404, None),
        ("GET", "/clients/%00/tasks", {}, 404, None),
        ("GET", "/clients/%FF%FE/credentials/%ED%A0%80", {}, 404, None),
        ("GET", "/clients/" + "a" * 5_000, {}, 404, None),
        ("POST", "/clients", {"content": b'{"name": "a\\ud800b"}', "headers": JSON}, 422, "name"),  # lone surrogate
        ("POST", "/clients", {"json": {"name": "nul\x00"}}, 422, "name"),
        ("POST", "/clients", {"json": {"name": "x" * 100_000}}, 422, "name"),
        ("POST", "/clients", {"json": {"name": 5}}, 422, "name"),
        ("POST", "/clients", {"json": ["name"]}, 422, "body"),
        ("POST", "/clients", {"content": b"null", "headers": JSON}, 422, "body"),
        ("POST", "/clients", {"content": b""}, 422, "body"),
        ("POST", "/clients", {"content": b'{"name": "x"}', "headers": {"Content-Type": "text/plain"}}, 422, "body"),
        ("POST", "/clients", {"data": {"name": "x"}}, 422, "body"),  # a form
    ],
)
async def test_classic_bad_inputs_get_a_problem_naming_what_is_wrong(
    api: Api, admin: Session, method: str, path: str, request_args: dict[str, Any], status: int, field: str | None
) -> None:
    args = dict(request_args)
    headers = {**admin.headers, **args.pop("headers", {})}

    r = await api.raw.request(method, path, headers=headers, **args)

    if status == 200:
        assert r.status_code == 200, r.text
        return
    body = problem(r, status)
    if field is not None:
        assert fields_of(body) == [field]


async def test_a_multipart_body_that_does_not_parse_is_a_422_naming_the_body(api: Api, admin: Session) -> None:
    """Found by the fuzz test: a multipart upload without its boundary, or with a part header that is none, was an
    undocumented 400."""
    client_id = await new_client(api, admin)
    path = f"/clients/{client_id}/credentials:import"
    no_header = b"--xyz\r\nthis line is no header\r\n\r\ncsv\r\n--xyz--\r\n"
    answers = [
        await api.raw.post(path, headers={**admin.headers, "Content-Type": "multipart/form-data"}, content=b"x"),
        await api.raw.post(
            path, headers={**admin.headers, "Content-Type": "multipart/form-data; boundary=xyz"}, content=no_header
        ),
    ]

    for r in answers:
        assert fields_of(problem(r, 422)) == ["body"]
