"""Key providers for real: a missing or wrong KEK stops the vault at startup; OpenBao Transit end to end."""

import asyncio
import base64
import contextlib
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import hvac
import psycopg
import pytest
import requests

from tests.system import Account, Api, System, free_port, stop_process
from tests.vault_support import create, new_client

BAO = Path(sys.executable).parent / "bao"


def serve_vault(system: System, **env: str) -> subprocess.CompletedProcess[str]:
    """`clientvault serve vault` against the test system's database, with the given key settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLIENTVAULT_K")}
    base |= {"DATABASE_URL": system.info()["database_url"], "NATS_URL": system.info()["nats_url"]}
    base |= {"CLIENTVAULT_VAULT_ADDR": f"127.0.0.1:{free_port()}", "CLIENTVAULT_AUTH_ADDR": system.info_address("auth")}
    base["CLIENTVAULT_EVENT_SIGNING_KEY"] = system.secrets()["vault_event_signing_key"]
    return subprocess.run(
        [sys.executable, "-m", "ops", "serve", "vault"],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_vault_without_a_kek_does_not_start(system: System) -> None:
    done = serve_vault(system)

    assert done.returncode == 2
    assert "vault: cannot start: no KEK: set CLIENTVAULT_KEKS" in done.stderr


def test_a_vault_without_its_event_signing_key_does_not_start(system: System) -> None:
    done = serve_vault(system, CLIENTVAULT_EVENT_SIGNING_KEY="")

    assert done.returncode == 2
    assert "vault: cannot start: CLIENTVAULT_EVENT_SIGNING_KEY is not set" in done.stderr


def test_a_vault_with_a_wrong_kek_does_not_start(system: System) -> None:
    versions = [line.split(":")[0] for line in system.secrets()["vault_keks"].split(",")]
    wrong_key = base64.b64encode(secrets.token_bytes(32)).decode()
    wrong = ",".join(f"{version}:{wrong_key}" for version in versions)

    done = serve_vault(system, CLIENTVAULT_KEKS=wrong)

    assert done.returncode == 2
    assert "is not the key this database's data keys were wrapped with" in done.stderr
    assert wrong_key not in done.stderr + done.stdout


def test_a_malformed_kek_is_named_without_its_value(system: System) -> None:
    done = serve_vault(system, CLIENTVAULT_KEKS="v1:c2hvcnQ=")

    assert done.returncode == 2
    assert "KEK v1 must be 32 bytes" in done.stderr
    assert "c2hvcnQ" not in done.stderr


@pytest.fixture(scope="module")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real OpenBao dev server on loopback with the transit engine, stopped at the end."""
    port, token = free_port(), secrets.token_urlsafe(16)
    log = (tmp_path_factory.mktemp("openbao") / "bao.log").open("w")
    server = subprocess.Popen(
        [str(BAO), "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}", f"-dev-root-token-id={token}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    addr = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.RequestException):
                if hvac.Client(url=addr, token=token).sys.is_initialized():
                    break
            assert time.monotonic() < deadline, "OpenBao did not start"
            time.sleep(0.1)
        hvac.Client(url=addr, token=token).sys.enable_secrets_engine("transit")
        yield addr, token
    finally:
        stop_process(server)
        log.close()


@pytest.fixture(scope="module")
async def transit_system(
    system: System, openbao: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[System]:
    """A second system whose vault keeps its KEK in Transit: its own database on the same PostgreSQL."""
    name = f"transit_{uuid.uuid4().hex[:8]}"
    admin_url = system.info()["database_url"]
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    addr, token = openbao
    env = {
        "DATABASE_URL": admin_url.rsplit("/", 1)[0] + "/" + name,
        "NATS_URL": system.info()["nats_url"],
        "CLIENTVAULT_KEY_PROVIDER": "transit",
        "CLIENTVAULT_TRANSIT_ADDR": addr,
        "CLIENTVAULT_TRANSIT_TOKEN": token,
        "CLIENTVAULT_DEK_CACHE_TTL_S": "0",  # every use of a data key asks Transit
    }
    running = System(Path(tmp_path_factory.mktemp("transit")) / "data", env=env)
    await asyncio.to_thread(running.start)
    yield running
    await asyncio.to_thread(running.stop)


async def test_transit_round_trip_rotation_and_reencryption(transit_system: System) -> None:
    async with Api(transit_system) as api:
        assert transit_system.admin is not None
        admin = await api.sign_in(Account(*transit_system.admin, role="admin"))
        client_id = await new_client(api, admin)
        ids = [await create(api, admin, client_id, label=f"T{n}", secret=f"transit-секрет-{n}") for n in range(5)]
        first = f"/clients/{client_id}/credentials/{ids[0]}"
        assert (await api.raw.patch(first, headers=admin.headers, json={"secret": "transit-старый"})).status_code == 200
        assert (
            await api.raw.patch(first, headers=admin.headers, json={"secret": "transit-секрет-0"})
        ).status_code == 200

        async def all_reveal() -> None:
            for n, credential_id in enumerate(ids):
                r = await api.raw.get(f"/clients/{client_id}/credentials/{credential_id}", headers=admin.headers)
                assert r.json()["secret"] == f"transit-секрет-{n}"

        await all_reveal()
        database_url = transit_system.info()["database_url"]
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            wrapped = await (await conn.execute("SELECT wrapped_key, kek_version FROM vault.client_keys")).fetchall()
        assert [(bytes(w[0])[:9], w[1]) for w in wrapped] == [(b"vault:v1:", "transit:v1")]

        rotated = transit_system.cli("vault", "rotate-key")
        assert rotated.returncode == 0, rotated.stderr
        assert "every data key is on KEK transit:v2" in rotated.stdout
        await all_reveal()

        again = transit_system.cli("vault", "rotate-key", "--reencrypt")
        assert again.returncode == 0, again.stderr
        await all_reveal()
        status = transit_system.cli("vault", "status")
        assert "key provider: transit   active KEK: transit:v3" in status.stdout
        assert [line.split() for line in status.stdout.splitlines() if line.startswith("transit:")] == [
            ["transit:v3", "(active)", "1", "5", "2"]  # a data key, 5 secrets and 2 old versions of the first
        ]
        # --reencrypt re-sealed the old versions too, under the new data key, and they still open.
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            generations = await (await conn.execute("SELECT key_generation FROM vault.credential_versions")).fetchall()
        assert generations == [(2,), (2,)]
        old = await api.raw.post(f"{first}/versions/2/reveal", headers=admin.headers)
        assert old.json()["secret"] == "transit-старый"
