"""`clientvault up` as an operator runs it: start, restart on the same data, supervise, stop cleanly."""

import asyncio
import base64
import os
import signal
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from alembic import command

from clientvault.attestation import service_key_setting
from clientvault.migrations import SchemaVersion
from ops.migrate import config
from ops.registry import BY_NAME
from tests.system import Api, System, pid_alive

PROCESSES = {"postgres", "nats", "gateway", "auth", "clients", "vault", "audit"}


@pytest.fixture
def own_system(tmp_path: Path) -> System:
    # Always embedded servers here: the test is about what `up` starts and stops itself.
    env = {"DATABASE_URL": "", "NATS_URL": ""}
    return System(tmp_path / "data", env=env)


def test_up_stops_everything_on_sigterm_and_keeps_data_across_restarts(own_system: System) -> None:
    own_system.start()
    assert own_system.admin is not None
    email, password = own_system.admin
    pids = own_system.pids()
    assert set(pids) == PROCESSES
    assert all(pid_alive(pid) for pid in pids.values())
    made = own_system.cli("users", "create", "--email", "kept@example.com", "--full-name", "Kept", "--role",
                          "manager", "--password-stdin", stdin="a-long-enough-password")  # fmt: skip
    assert made.returncode == 0, made.stderr

    took = own_system.stop(signal.SIGTERM)

    assert took < 10
    assert own_system.process is not None
    assert own_system.process.returncode == 0
    assert not [name for name, pid in pids.items() if pid_alive(pid)]
    assert not list((own_system.data_dir / "run").glob("*.pid"))

    own_system.lines.clear()
    own_system.start()
    try:
        assert own_system.admin is None  # not a first start: no new admin
        with httpx.Client(base_url=own_system.url) as http:
            for account in ((email, password), ("kept@example.com", "a-long-enough-password")):
                r = http.post("/auth/sign-in", json={"email": account[0], "password": account[1]})
                assert r.status_code == 200, r.text
    finally:
        assert own_system.stop(signal.SIGINT) < 10
    assert not [name for name, pid in own_system.pids().items() if pid_alive(pid)]


def migrations_said(system: System) -> list[str]:
    return [line.strip() for line in system.lines if "migrated the schemas" in line]


def test_up_migrates_only_the_schemas_behind_their_code(own_system: System) -> None:
    own_system.start()
    assert own_system.admin is not None
    email, password = own_system.admin
    try:
        assert migrations_said(own_system) == ["clientvault: migrated the schemas of auth, clients, vault, audit"]
        # An upgrade's new clients migration not applied yet: the schema one revision behind its code.
        command.downgrade(config(own_system.info()["database_url"], BY_NAME["clients"]), "-1")
    finally:
        own_system.stop()

    own_system.start()  # an upgrade: clients is behind, the others are current
    try:
        assert migrations_said(own_system) == ["clientvault: migrated the schemas of clients"]
        with psycopg.connect(own_system.info()["database_url"]) as conn:
            row = conn.execute("SELECT version_num FROM clients.alembic_version").fetchone()
        assert row == (SchemaVersion.shipped("clients", BY_NAME["clients"].migrations).head,)
        with httpx.Client(base_url=own_system.url, timeout=10) as http:
            signed_in = http.post("/auth/sign-in", json={"email": email, "password": password})
            assert signed_in.status_code == 200, signed_in.text
            http.headers["Authorization"] = f"Bearer {signed_in.json()['accessToken']}"
            made = http.post("/clients", json={"name": "Migrated Again GmbH"})
            assert made.status_code == 201, made.text
            found = http.get("/clients", params={"q": "igrated aga"})  # the search the migration made
            assert found.status_code == 200, found.text
            assert [c["name"] for c in found.json()["items"]] == ["Migrated Again GmbH"]
    finally:
        own_system.stop()

    own_system.start()  # nothing behind: no migration runs (Alembic is not even imported)
    try:
        assert migrations_said(own_system) == []
    finally:
        own_system.stop()


def test_a_second_up_on_the_same_data_dir_is_refused(system: System) -> None:
    second = System(system.data_dir, env=system.env)

    with pytest.raises(RuntimeError) as failed:
        second.start()

    assert second.process is not None
    assert second.process.returncode == 1
    assert "already running" in str(failed.value)
    assert system.process is not None
    assert system.process.poll() is None


async def test_a_child_that_dies_is_restarted(api: Api) -> None:
    system = api.system
    account = await api.new_account()
    old = system.pids()["auth"]

    os.kill(old, signal.SIGKILL)

    # Restarted means serving again: a sign-in works (which also leaves the system usable for the next tests;
    # the gateway's channel to auth reconnects with gRPC's backoff, which can take longer than the restart).
    deadline = time.monotonic() + 60
    while True:
        new = system.pids().get("auth")
        if new and new != old:
            body = {"email": account.email, "password": account.password}
            signed_in = await api.raw.post("/auth/sign-in", json=body)
            if signed_in.status_code == 200:
                break
        assert time.monotonic() < deadline, "auth was not restarted and serving within 60 s"
        await asyncio.sleep(0.2)
    assert any("auth exited" in line for line in system.lines)
    token = signed_in.json()["accessToken"]
    assert (await api.raw.get("/users/me", headers={"Authorization": f"Bearer {token}"})).status_code == 200


def test_a_port_in_use_is_a_clear_error(system: System, tmp_path: Path) -> None:
    taken = System(tmp_path / "data", env={"DATABASE_URL": "", "NATS_URL": ""}, port=system.port)

    with pytest.raises(RuntimeError) as failed:
        taken.start()

    assert f"cannot listen on 127.0.0.1:{system.port}" in str(failed.value)
    assert "choose another --port" in str(failed.value)
    assert taken.process is not None
    assert taken.process.returncode == 1


def environment_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().partition("=")[::2] for entry in entries if b"=" in entry)


def test_each_child_gets_only_the_secrets_it_uses(system: System) -> None:
    pids = system.pids()
    env = {name: environment_of(pids[name]) for name in ("gateway", "auth", "clients", "vault", "audit")}

    assert env["gateway"].get("DATABASE_URL", "") == ""  # the gateway has no database access
    assert all(env[name]["DATABASE_URL"] for name in ("auth", "clients", "vault", "audit"))
    assert [name for name in env if env[name].get("CLIENTVAULT_TOKEN_SIGNING_KEY")] == ["auth"]
    assert [name for name in env if env[name].get("CLIENTVAULT_KEK_FILE")] == ["vault"]
    # The rotation-tasks identity's password (the vault signs in with it), and only auth's and the clients service's
    # event keys to trust (users disabled, break-glass ends).
    assert [name for name in env if env[name].get("CLIENTVAULT_ROTATION_TASKS_PASSWORD")] == ["vault"]
    trusted = env["vault"]["CLIENTVAULT_EVENT_PUBLIC_KEYS"].split(",")
    assert [entry.partition(":")[0] for entry in trusted] == ["auth", "clients"]
    # The gateway holds the context key; each service only the key derived for itself (clientvault/attestation.py).
    context_key = base64.b64decode(system.secrets()["context_key"])
    assert [name for name in env if env[name].get("CLIENTVAULT_CONTEXT_KEY")] == ["gateway"]
    assert env["gateway"]["CLIENTVAULT_CONTEXT_KEY"] == system.secrets()["context_key"]
    assert env["gateway"].get("CLIENTVAULT_CONTEXT_VERIFY_KEY", "") == ""
    for name in ("auth", "clients", "vault", "audit"):
        assert env[name]["CLIENTVAULT_CONTEXT_VERIFY_KEY"] == service_key_setting(context_key, name)
    assert len({env[name]["CLIENTVAULT_CONTEXT_VERIFY_KEY"] for name in ("auth", "clients", "vault", "audit")}) == 4
    if not os.environ.get("NATS_URL"):  # embedded nats-server: a NATS user each
        assert len({env[name]["NATS_URL"] for name in env}) == 5


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="an external database's roles are the operator's")
async def test_each_service_logs_in_as_its_own_role_that_sees_only_its_schema(system: System) -> None:
    admin_url = system.info()["database_url"]
    pids = system.pids()
    for service in ("auth", "clients", "vault", "audit"):
        assert environment_of(pids[service])["DATABASE_URL"].startswith(f"postgresql://clientvault_{service}:")
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        logins = await (
            await conn.execute(
                "SELECT DISTINCT application_name, usename FROM pg_stat_activity "
                "WHERE application_name LIKE 'clientvault-%'"
            )
        ).fetchall()
    assert logins  # the services that have used the database so far, each as its own role
    assert all(user == app.replace("-", "_") for app, user in logins), logins

    password = system.secrets()["clients_db_password"]
    as_clients = f"postgresql://clientvault_clients:{password}@{admin_url.split('@', 1)[1]}"
    async with await psycopg.AsyncConnection.connect(as_clients, autocommit=True) as conn:
        assert await (await conn.execute("SELECT count(*) >= 0 FROM clients.clients")).fetchone() == (True,)
        for other in ("vault.credentials", "auth.users", "audit.events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(f"SELECT 1 FROM {other} LIMIT 1")  # noqa: S608
