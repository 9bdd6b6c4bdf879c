"""`clientvault up` as an operator runs it: start, restart on the same data, supervise, stop cleanly."""

import asyncio
import base64
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from alembic import command

from clientvault.attestation import service_key_setting
from clientvault.migrations import SchemaVersion
from ops.datadir import DataDir
from ops.migrate import config
from ops.registry import BY_NAME
from tests.system import Api, System, pid_alive

PROCESSES = {"postgres", "nats", "forkserver", "gateway", "auth", "clients", "vault", "audit"}


@pytest.fixture
def own_system(tmp_path: Path) -> Iterator[System]:
    """A system the test starts (and restarts) itself; stopped at the end whatever happened, also when an assertion
    fails while it runs."""
    # Always embedded servers here: the test is about what `up` starts and stops itself.
    own = System(tmp_path / "data", env={"DATABASE_URL": "", "NATS_URL": ""})
    try:
        yield own
    finally:
        own.stop()


def test_up_stops_everything_on_sigterm_and_keeps_data_across_restarts(own_system: System) -> None:
    own_system.start()
    assert own_system.admin is not None
    email, password = own_system.admin
    pids = own_system.pids()
    assert set(pids) == PROCESSES
    assert all(pid_alive(pid) for pid in pids.values())
    forked = ("gateway", "auth", "clients", "vault", "audit")  # named for `top`, not after the fork server
    assert [Path(f"/proc/{pids[name]}/comm").read_text().strip() for name in forked] == [f"cv-{n}" for n in forked]
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


def test_when_the_fork_server_dies_every_process_is_forked_again_from_a_new_one(own_system: System) -> None:
    own_system.start()
    old = own_system.pids()
    forked = ("gateway", "auth", "clients", "vault", "audit")

    os.kill(old["forkserver"], signal.SIGKILL)  # its children get their stop signal from the kernel

    deadline = time.monotonic() + 90
    while True:
        pids = own_system.pids()
        if all(pids.get(name) not in (None, old[name]) and pid_alive(pids[name]) for name in (*forked, "forkserver")):
            names = [Path(f"/proc/{pids[name]}/comm").read_text().strip() for name in forked]
            with httpx.Client(base_url=own_system.url, timeout=5) as http, contextlib.suppress(httpx.TransportError):
                if [http.get(path).status_code for path in ("/readyz", "/healthz/services")] == [200, 200]:
                    break
        assert time.monotonic() < deadline, "not every process was forked again and serving within 90 s"
        time.sleep(0.5)
    assert names == [f"cv-{name}" for name in forked]  # each pid file names the process it says
    assert not [name for name in forked if pid_alive(old[name])]


def test_a_port_in_use_is_a_clear_error(system: System, tmp_path: Path) -> None:
    taken = System(tmp_path / "data", env={"DATABASE_URL": "", "NATS_URL": ""}, port=system.port)

    with pytest.raises(RuntimeError) as failed:
        taken.start()

    assert f"cannot listen on 127.0.0.1:{system.port}" in str(failed.value)
    assert "choose another --port" in str(failed.value)
    assert taken.process is not None
    assert taken.process.returncode == 1


def secrets_in_memory(pid: int, secrets: dict[str, str]) -> set[str]:
    """The names of the `secrets` whose value is anywhere in the process's writable memory (heap, stacks, its
    environment), read through /proc/<pid>/mem: the test is an ancestor of every process `up` starts."""
    needles = {name: value.encode() for name, value in secrets.items()}
    found: set[str] = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
        for region in maps:
            span, permissions = region.split()[:2]
            if "r" not in permissions or "w" not in permissions:
                continue
            start, end = (int(address, 16) for address in span.split("-"))
            try:
                memory.seek(start)
                chunk = memory.read(end - start)
            except OSError:  # a guard page or a mapping gone meanwhile
                continue
            found |= {name for name, needle in needles.items() if needle in chunk}
    return found


def test_each_child_holds_only_the_secrets_it_uses(system: System) -> None:
    pids = system.pids()
    secrets = {name: value for name, value in system.secrets().items() if name != "vault_kek_active"}
    holders = {"rotation_tasks_password": {"vault"}, "context_key": {"gateway"}}
    holders |= {"token_signing_key": {"auth"}, "mfa_key": {"auth"}}
    holders |= {f"{name}_{kind}": {name} for name in pids for kind in ("event_signing_key", "db_password")}
    if not os.environ.get("NATS_URL"):  # embedded nats-server: a NATS user each
        holders |= {f"nats_{name}_password": {name} for name in pids}
    # The fork server imports and forks; each child reads its environment from a pipe of its own after its fork.
    children = ("forkserver", "gateway", "auth", "clients", "vault", "audit")
    held = {name: secrets_in_memory(pids[name], secrets) for name in children}

    # Auth checks the rotation password when the vault signs in; the vault reads its keyring from secrets.json.
    may_hold = {"rotation_tasks_password": {"auth"}, "vault_keks": {"vault"}}
    for secret in secrets:
        found = {name for name in children if secret in held[name]}
        assert found - may_hold.get(secret, set()) == holders.get(secret, set()), secret
    assert not held["forkserver"]
    for name in ("gateway", "auth", "clients", "vault", "audit"):  # what `ps e` shows: no secret at all
        environ = Path(f"/proc/{pids[name]}/environ").read_bytes()
        assert not [secret for secret, value in secrets.items() if value.encode() in environ], name
    # The gateway has no database access; each service only the key derived for itself (clientvault/attestation.py).
    context_key = base64.b64decode(system.secrets()["context_key"])
    derived = {name: service_key_setting(context_key, name) for name in ("auth", "clients", "vault", "audit")}
    for name in ("gateway", "auth", "clients", "vault", "audit"):
        assert secrets_in_memory(pids[name], derived) == ({name} if name in derived else set()), name
    # The vault trusts only auth's and the clients service's event keys (users disabled, break-glass ends).
    trusted = {signer.producer: signer.trusted_entry for signer in DataDir(system.data_dir).event_signers()}
    assert secrets_in_memory(pids["vault"], trusted) == {"auth", "clients"}


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="an external database's roles are the operator's")
async def test_each_service_logs_in_as_its_own_role_that_sees_only_its_schema(system: System) -> None:
    admin_url = system.info()["database_url"]
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
