"""The five credential routes through the gateway, against the real vault, PostgreSQL and NATS."""

import asyncio
import json
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from ops.embedded import pg_bin
from tests.system import Api, Session, unique_ip
from tests.vault_support import create, events_for, new_client

PROBLEM = "application/problem+json"
ROLES = ("admin", "manager", "read_only")
METADATA = {
    "id", "label", "username", "url", "updatedAt", "lastAccessedAt", "secretChangedAt", "deletedAt", "hasTotp",
}  # fmt: skip


@pytest.fixture
async def client_id(api: Api, sessions: dict[str, Session]) -> str:
    return await new_client(api, sessions["admin"])


def path(client_id: str, credential_id: str | None = None) -> str:
    return f"/clients/{client_id}/credentials" + (f"/{credential_id}" if credential_id else "")


UNICODE_SECRETS = [
    "correct horse battery staple",
    "пароль-密码-パスワード-كلمة السر-🔑🦄",
    'tab\tnewline\nquote"backslash\\ NUL\x00 end',
    "🔐" * 10_000,  # 10,000 characters, 40,000 bytes of UTF-8
    "e\u0301 (combining) ﷽ \U0010fffd",
]


@pytest.mark.parametrize("secret", UNICODE_SECRETS, ids=["ascii", "scripts", "controls", "max-emoji", "rare"])
async def test_a_secret_round_trips_exactly(
    api: Api, sessions: dict[str, Session], client_id: str, secret: str
) -> None:
    manager = sessions["manager"]
    credential_id = await create(api, manager, client_id, label="Ünïcødé ✓", username="ana@ex", secret=secret)

    r = await api.raw.get(path(client_id, credential_id), headers=manager.headers)

    assert r.status_code == 200
    assert r.json() == {
        "id": credential_id, "label": "Ünïcødé ✓", "username": "ana@ex", "url": None, "secret": secret, "notes": None,
    }  # fmt: skip
    assert r.headers["cache-control"] == "no-store"


async def test_list_answers_metadata_only_and_reveal_sets_last_accessed(
    api: Api, sessions: dict[str, Session], client_id: str
) -> None:
    reader = sessions["read_only"]
    first = await create(api, reader, client_id, label="Router", username="admin", url="https://192.0.2.1", secret="s1")
    second = await create(api, reader, client_id, label="DNS", secret="s2")

    before = (await api.raw.get(path(client_id), headers=reader.headers)).json()
    await api.raw.get(path(client_id, first), headers=sessions["admin"].headers)
    after = (await api.raw.get(path(client_id), headers=reader.headers)).json()

    assert [item["id"] for item in before] == [first, second]
    assert set(before[0]) == METADATA
    assert before[0]["label"] == "Router"
    assert before[0]["url"] == "https://192.0.2.1"
    assert before[0]["lastAccessedAt"] is None
    assert after[0]["lastAccessedAt"] is not None
    assert after[0]["lastAccessedAt"].endswith("Z")
    assert after[1]["lastAccessedAt"] is None
    assert "s1" not in json.dumps(after)


async def test_update_changes_the_named_fields_and_the_secret(
    api: Api, sessions: dict[str, Session], client_id: str
) -> None:
    reader, admin = sessions["read_only"], sessions["admin"]
    credential_id = await create(api, reader, client_id, label="Mail", username="bob", url="https://mail", secret="old")

    r = await api.raw.patch(
        path(client_id, credential_id), headers=reader.headers, json={"label": "Mail 2", "url": None, "secret": "nëw"}
    )

    assert r.status_code == 200
    body = r.json()
    assert set(body) == METADATA
    assert (body["label"], body["username"], body["url"]) == ("Mail 2", "bob", None)
    revealed = (await api.raw.get(path(client_id, credential_id), headers=admin.headers)).json()
    assert revealed == {
        "id": credential_id, "label": "Mail 2", "username": "bob", "url": None, "secret": "nëw", "notes": None,
    }  # fmt: skip


async def test_delete_removes_the_credential(api: Api, sessions: dict[str, Session], client_id: str) -> None:
    admin = sessions["admin"]
    credential_id = await create(api, admin, client_id, label="Gone", secret="bye")

    r = await api.raw.delete(path(client_id, credential_id), headers=admin.headers)

    assert r.status_code == 204
    gone = await api.raw.get(path(client_id, credential_id), headers=admin.headers)
    assert gone.status_code == 404
    assert gone.json()["detail"] == "credential not found"
    assert (await api.raw.delete(path(client_id, credential_id), headers=admin.headers)).status_code == 404


async def test_a_credential_under_another_client_is_not_found_exactly_like_a_missing_one(
    api: Api, sessions: dict[str, Session], client_id: str
) -> None:
    admin = sessions["admin"]
    credential_id = await create(api, admin, client_id, label="Mine", secret="mine")
    other = await new_client(api, admin)
    await create(api, admin, other, label="Theirs", secret="theirs")

    answers = []
    for target in (credential_id, str(uuid.uuid4())):
        for method, body in (("GET", None), ("PATCH", {"label": "hijack"}), ("DELETE", None)):
            r = await api.raw.request(method, path(other, target), headers=admin.headers, json=body)
            answers.append((r.status_code, r.headers["content-type"], r.json()))

    assert all(answer == (404, PROBLEM, answers[0][2]) for answer in answers)
    assert answers[0][2] == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "credential not found",
    }
    still = (await api.raw.get(path(client_id, credential_id), headers=admin.headers)).json()
    assert (still["label"], still["secret"]) == ("Mine", "mine")
    listed = (await api.raw.get(path(other), headers=admin.headers)).json()
    assert [item["label"] for item in listed] == ["Theirs"]


@pytest.mark.parametrize("bad", ["not-a-uuid", "123", "%20"])
async def test_malformed_ids_are_404(api: Api, sessions: dict[str, Session], client_id: str, bad: str) -> None:
    admin = sessions["admin"]
    credential_id = await create(api, admin, client_id, label="x", secret="y")

    for url in (path(client_id, bad), path(bad, credential_id), path(bad)):
        r = await api.raw.get(url, headers=admin.headers)
        assert r.status_code == 404, url
        assert r.headers["content-type"] == PROBLEM


ALIASES: dict[str, Callable[[str], str]] = {
    "braces": lambda id_: "{" + id_ + "}",
    "no hyphens": lambda id_: id_.replace("-", ""),
    "urn": lambda id_: "urn:uuid:" + id_,
    "upper case": str.upper,
}


@pytest.mark.parametrize("spell", ALIASES.values(), ids=ALIASES.keys())
async def test_another_spelling_of_an_id_names_nothing(
    api: Api, sessions: dict[str, Session], client_id: str, spell: Callable[[str], str]
) -> None:
    """One object, one name: an alias would be counted apart by anything keyed by the text (limits, filters)."""
    admin = sessions["admin"]
    credential_id = await create(api, admin, client_id, label="x", secret="y")

    for url in (path(client_id, spell(credential_id)), path(spell(client_id), credential_id)):
        r = await api.raw.get(url, headers=admin.headers)
        assert r.status_code == 404, url
    assert (await api.raw.get(path(client_id, credential_id), headers=admin.headers)).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"label": "", "secret": "x"}, "label"),
        ({"label": "x" * 201, "secret": "x"}, "label"),
        ({"label": "x", "secret": ""}, "secret"),
        ({"label": "x", "secret": "x" * 10_001}, "secret"),
        ({"label": "x", "secret": "🔐" * 10_001}, "secret"),
        ({"label": "x"}, "secret"),
        ({"secret": "x"}, "label"),
        ({"label": "x", "secret": "y", "keyVersion": "v1"}, "keyVersion"),
        ({"label": "x", "secret": "y", "id": str(uuid.uuid4())}, "id"),
        ({"label": "x", "secret": "y", "ciphertext": "AAAA"}, "ciphertext"),
        ({"label": "x", "secret": "y", "createdByUserId": str(uuid.uuid4())}, "createdByUserId"),
        ({"label": "nul\x00", "secret": "y"}, "label"),
        ({"label": "x", "secret": 42}, "secret"),
    ],
)
async def test_invalid_creates_are_422_and_store_nothing(
    api: Api, sessions: dict[str, Session], client_id: str, body: dict[str, Any], field: str
) -> None:
    admin = sessions["admin"]

    r = await api.raw.post(path(client_id), headers=admin.headers, json=body)

    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert field in [error["field"] for error in r.json()["errors"]]
    assert (await api.raw.get(path(client_id), headers=admin.headers)).json() == []


async def test_text_that_cannot_be_stored_is_422_not_500(
    api: Api, sessions: dict[str, Session], client_id: str
) -> None:
    admin = sessions["admin"]
    for raw in (b'{"label": "x", "secret": "\\ud800"}', b'{"label": "\\udfff", "secret": "x"}'):
        r = await api.raw.post(
            path(client_id), headers={**admin.headers, "Content-Type": "application/json"}, content=raw
        )
        assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    "body",
    [{}, {"label": None}, {"secret": None}, {"label": ""}, {"secret": "x" * 10_001}, {"keyVersion": "v2"}],
)
async def test_invalid_updates_are_422(
    api: Api, sessions: dict[str, Session], client_id: str, body: dict[str, Any]
) -> None:
    admin = sessions["admin"]
    credential_id = await create(api, admin, client_id, label="Keep", secret="keep")

    r = await api.raw.patch(path(client_id, credential_id), headers=admin.headers, json=body)

    assert r.status_code == 422, r.text
    revealed = (await api.raw.get(path(client_id, credential_id), headers=admin.headers)).json()
    assert (revealed["label"], revealed["secret"]) == ("Keep", "keep")


EXPECTED = {  # route -> status per role (admin, manager, read_only), from the contract
    "list": (200, 200, 200),
    "create": (201, 201, 201),
    "reveal": (200, 200, 403),
    "update": (200, 200, 200),
    "delete": (204, 403, 403),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", list(EXPECTED))
async def test_every_role_on_every_route(
    api: Api, sessions: dict[str, Session], client_id: str, role: str, route: str
) -> None:
    session = sessions[role]
    credential_id = await create(api, sessions["admin"], client_id, label="Role test", secret="role-secret")
    requests = {
        "list": ("GET", path(client_id), None),
        "create": ("POST", path(client_id), {"label": "by " + role, "secret": "s"}),
        "reveal": ("GET", path(client_id, credential_id), None),
        "update": ("PATCH", path(client_id, credential_id), {"label": "renamed by " + role}),
        "delete": ("DELETE", path(client_id, credential_id), None),
    }
    method, url, body = requests[route]

    r = await api.raw.request(method, url, headers=session.headers, json=body)
    anonymous = await api.raw.request(method, url, json=body)

    assert r.status_code == EXPECTED[route][ROLES.index(role)], r.text
    if r.status_code == 403:
        assert "role-secret" not in r.text
        assert r.json()["detail"] == "your role does not allow this operation"
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"


async def test_an_unknown_client_is_404(api: Api, sessions: dict[str, Session]) -> None:
    admin, unknown = sessions["admin"], str(uuid.uuid4())

    listed = await api.raw.get(path(unknown), headers=admin.headers)
    created = await api.raw.post(path(unknown), headers=admin.headers, json={"label": "x", "secret": "y"})

    for r in (listed, created):
        assert r.status_code == 404
        assert r.json()["detail"] == "client not found"


async def test_an_archived_client_takes_no_new_credential_and_its_credentials_are_read_only(
    api: Api, sessions: dict[str, Session], client_id: str
) -> None:
    admin = sessions["admin"]
    kept = await create(api, admin, client_id, label="Before", secret="before")
    assert (await api.raw.post(f"/clients/{client_id}/archive", headers=admin.headers)).status_code == 204

    r = await api.raw.post(path(client_id), headers=admin.headers, json={"label": "After", "secret": "after"})
    assert r.status_code == 409
    assert r.json() == {"type": "about:blank", "title": "Conflict", "status": 409, "detail": "client is archived"}
    for session in (sessions["read_only"], admin):
        r = await api.raw.patch(path(client_id, kept), headers=session.headers, json={"secret": "changed"})
        assert (r.status_code, r.json()["detail"]) == (409, "client is archived")
    r = await api.raw.delete(path(client_id, kept), headers=admin.headers)
    assert (r.status_code, r.json()["detail"]) == (409, "client is archived")

    still = (await api.raw.get(path(client_id, kept), headers=admin.headers)).json()
    assert (still["label"], still["secret"]) == ("Before", "before")


async def test_an_event_per_operation_with_the_right_fields(
    api: Api, sessions: dict[str, Session], client_id: str
) -> None:
    manager, admin = sessions["manager"], sessions["admin"]
    ip = unique_ip()
    headers = {"X-Forwarded-For": ip, "User-Agent": "vault-test/1.0"}
    secret = f"event-secret-{uuid.uuid4()}"

    def h(session: Session, request_id: str) -> dict[str, str]:
        return {**session.headers, **headers, "X-Request-ID": request_id}

    r = await api.raw.post(path(client_id), headers=h(manager, "req-create"), json={"label": "Ev", "secret": secret})
    credential_id = r.json()["id"]
    await api.raw.get(path(client_id, credential_id), headers=h(manager, "req-reveal"))
    await api.raw.patch(path(client_id, credential_id), headers=h(manager, "req-update"), json={"label": "Ev 2"})
    await api.raw.delete(path(client_id, credential_id), headers=h(admin, "req-delete"))

    found = await events_for(api.system.info()["nats_url"], credential_id, 4)

    assert [subject for _, subject, _ in found] == [
        "audit.vault.credential_create",
        "audit.vault.credential_reveal",
        "audit.vault.credential_update",
        "audit.vault.credential_delete",
    ]
    labels = ["Ev", "Ev", "Ev 2", "Ev 2"]
    actors = [manager, manager, manager, admin]
    for (msg_id, _, event), label, actor, request_id in zip(
        found, labels, actors, ["req-create", "req-reveal", "req-update", "req-delete"], strict=True
    ):
        assert msg_id == event.event_id
        uuid.UUID(event.event_id)
        assert event.credential_label == label
        assert event.client_id == client_id
        assert event.user_email == actor.account.email
        assert event.user_full_name == f"Test {actor.account.role}"
        uuid.UUID(event.user_id)
        assert (event.ip, event.user_agent, event.request_id) == (ip, "vault-test/1.0", request_id)
        assert event.occurred_at.seconds > 0
        assert secret.encode() not in event.SerializeToString()
    assert len({msg_id for msg_id, _, _ in found}) == 4


async def test_a_ciphertext_copied_to_another_row_does_not_decrypt(
    api: Api, sessions: dict[str, Session], client_id: str
) -> None:
    admin = sessions["admin"]
    source = await create(api, admin, client_id, label="Source", secret="source-secret")
    same_client = await create(api, admin, client_id, label="Target", secret="target")
    other_client = await new_client(api, admin)
    elsewhere = await create(api, admin, other_client, label="Elsewhere", secret="elsewhere")
    async with await psycopg.AsyncConnection.connect(api.system.info()["database_url"], autocommit=True) as conn:
        for target in (same_client, elsewhere):
            await conn.execute(
                "UPDATE vault.credentials t SET ciphertext = s.ciphertext, nonce = s.nonce, key_generation = "
                "s.key_generation FROM vault.credentials s WHERE s.id = %s AND t.id = %s",
                (uuid.UUID(source), uuid.UUID(target)),
            )

    for owner, target in ((client_id, same_client), (other_client, elsewhere)):
        r = await api.raw.get(path(owner, target), headers=admin.headers)
        assert r.status_code == 500
        assert "source-secret" not in r.text
        assert r.json()["detail"] == (
            f"the secret of credential {target} cannot be decrypted (corrupt or tampered with);"
            " an operator must restore it"
        )
    assert (await api.raw.get(path(client_id, source), headers=admin.headers)).json()["secret"] == "source-secret"
    # The failure is logged with the ids an operator needs, and nothing of the frames' variables: they held the
    # data key, the sealed secret and the caller's token.
    vault_log = (api.system.data_dir / "logs" / "vault.log").read_text()
    logged = [json.loads(line) for line in vault_log.splitlines() if "credential.undecryptable" in line]
    assert {(entry["credential_id"], entry["key_generation"]) for entry in logged} >= {(same_client, 1), (elsewhere, 1)}
    assert '"locals"' not in vault_log
    assert admin.access_token.rsplit(".", 1)[1][:24] not in vault_log


async def test_a_database_dump_and_the_logs_hold_no_plaintext_secret(
    api: Api, sessions: dict[str, Session], client_id: str
) -> None:
    admin = sessions["admin"]
    secret = f"plaintext-{uuid.uuid4().hex}-🔑"
    label = f"dump-label-{uuid.uuid4().hex}"
    credential_id = await create(api, admin, client_id, label=label, secret=secret)
    await api.raw.patch(path(client_id, credential_id), headers=admin.headers, json={"secret": secret + "-2"})
    assert (await api.raw.get(path(client_id, credential_id), headers=admin.headers)).json()["secret"] == secret + "-2"

    dump = (
        await asyncio.to_thread(
            subprocess.run,
            [str(pg_bin() / "pg_dump"), "--dbname", api.system.info()["database_url"], "--format", "plain"],
            capture_output=True,
            check=True,
            timeout=120,
        )
    ).stdout
    logs = b"".join(p.read_bytes() for p in (api.system.data_dir / "logs").glob("*.log"))

    assert label.encode() in dump  # the dump has the vault's rows…
    for needle in (secret.encode(), secret.split("-")[1].encode(), (secret + "-2").encode()):
        assert needle not in dump  # …but not the secret
        assert needle not in logs


async def test_a_data_key_under_a_kek_version_the_vault_lacks_is_503_with_retry_after(
    api: Api, sessions: dict[str, Session], client_id: str
) -> None:
    """A replica whose keyring lags a rotation: the request may succeed later or elsewhere, so 503, not 500."""
    admin = sessions["admin"]
    credential_id = await create(api, admin, client_id, label="Lagging", secret="s3cret-lagging")
    async with await psycopg.AsyncConnection.connect(api.system.info()["database_url"], autocommit=True) as conn:
        restore = await (
            await conn.execute(
                "SELECT kek_version FROM vault.client_keys WHERE client_id = %s", (uuid.UUID(client_id),)
            )
        ).fetchone()
        assert restore is not None
        set_version = "UPDATE vault.client_keys SET kek_version = %s WHERE client_id = %s"
        await conn.execute(set_version, ("v999999", uuid.UUID(client_id)))
        try:
            r = await api.raw.get(path(client_id, credential_id), headers=admin.headers)
        finally:
            await conn.execute(set_version, (restore[0], uuid.UUID(client_id)))

    assert r.status_code == 503
    assert r.headers["Retry-After"].isdigit()
    assert "s3cret-lagging" not in r.text
    vault_log = (api.system.data_dir / "logs" / "vault.log").read_text().splitlines()
    assert any('"keys.kek_not_loaded"' in line and '"v999999"' in line for line in vault_log)
    assert (await api.raw.get(path(client_id, credential_id), headers=admin.headers)).json()[
        "secret"
    ] == "s3cret-lagging"
