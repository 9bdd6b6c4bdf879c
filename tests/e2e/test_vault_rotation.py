"""Key rotation on a running system: 10,000 credentials, reveals going on, a crash in the middle, then resumed."""

import asyncio
import json
import random
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from clientvault.ids import new_id
from services.vault.crypto import DataKeys, dek_context, new_dek, open_sealed, seal
from services.vault.keys import EnvKeys, Wrapped
from tests.system import Api, System

CLIENTS = 500
PER_CLIENT = 20  # 10,000 credentials
REVEALERS = 4  # reveals at once during the rotation: enough to overlap it, not so many that they starve it of CPU


def keyring(system: System) -> EnvKeys:
    return EnvKeys({}, None, system.data_dir / "secrets.json")


async def seed(system: System, owner: uuid.UUID) -> dict[uuid.UUID, tuple[uuid.UUID, str]]:
    """10,000 credentials written as the vault writes them (same crypto, same rows), through COPY."""
    keys = keyring(system)
    now = datetime.now(UTC)
    key_rows: list[tuple[object, ...]] = []
    credential_rows: list[tuple[object, ...]] = []
    secrets = {}
    for _ in range(CLIENTS):
        client_id = uuid.uuid4()
        dek = new_dek()
        wrapped = await keys.wrap(dek, dek_context(client_id, 1))
        key_rows.append((client_id, 1, wrapped.wrapped_key, wrapped.kek_version, now))
        for n in range(PER_CLIENT):
            credential_id, secret = new_id(), f"seeded-{n}-{uuid.uuid4().hex}-ключ-🔑"
            ciphertext, nonce = seal(dek, client_id, credential_id, secret)
            credential_rows.append(
                (credential_id, client_id, f"Seed {n}", ciphertext, nonce, 1, owner, owner, now, now, now, 1, owner)
            )
            secrets[credential_id] = (client_id, secret)
    keys.close()
    async with await psycopg.AsyncConnection.connect(system.info()["database_url"]) as conn:
        async with conn.cursor() as cur:
            async with cur.copy(
                "COPY vault.client_keys (client_id, generation, wrapped_key, kek_version, created_at) FROM STDIN"
            ) as copy:
                for row in key_rows:
                    await copy.write_row(row)
            async with cur.copy(
                "COPY vault.credentials (id, client_id, label, ciphertext, nonce, key_generation, created_by_user_id, "
                "updated_by_user_id, created_at, updated_at, secret_changed_at, secret_version, "
                "secret_changed_by_user_id) FROM STDIN"
            ) as copy:
                for row in credential_rows:
                    await copy.write_row(row)
        await conn.commit()
    return secrets


async def count_keys_on(database_url: str, version: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM vault.client_keys WHERE kek_version = %s", (version,))
        ).fetchone()
    assert row is not None
    return int(row[0])


def active_version(system: System) -> str:
    return str(json.loads((system.data_dir / "secrets.json").read_text())["vault_kek_active"])


def rotate_args(system: System, *args: str) -> list[str]:
    return system.command("vault", "rotate-key", *args, "--data-dir", str(system.data_dir))


def operator_env(system: System) -> dict[str, str]:
    return {k: v for k, v in system.env.items() if k not in ("DATABASE_URL", "NATS_URL")}


async def test_rotation_of_10000_credentials_while_reveals_run_survives_a_crash(api: Api) -> None:
    system = api.system
    admin = await api.session("admin")
    me = (await api.raw.get("/users/me", headers=admin.headers)).json()
    secrets = await seed(system, uuid.UUID(me["id"]))
    database_url = system.info()["database_url"]
    sample = random.sample(sorted(secrets), 200)
    old_version = active_version(system)
    revealed: list[tuple[int, bool]] = []
    stop = asyncio.Event()

    async def reveal_loop(worker: int) -> None:
        n = worker
        while not stop.is_set():
            credential_id = sample[n % len(sample)]
            client_id, secret = secrets[credential_id]
            r = await api.raw.get(f"/clients/{client_id}/credentials/{credential_id}", headers=admin.headers)
            revealed.append((r.status_code, r.status_code == 200 and r.json()["secret"] == secret))
            n += 7

    revealers = [asyncio.create_task(reveal_loop(w)) for w in range(REVEALERS)]
    try:
        # 1. a rotation with re-encryption, killed (SIGKILL) once it is under way
        first = await asyncio.create_subprocess_exec(
            *rotate_args(system, "--reencrypt", "--batch-size", "25"),
            env=operator_env(system),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            version = active_version(system)
            if version != old_version and await count_keys_on(database_url, version) >= 50:
                break
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        new_version = active_version(system)
        assert new_version != old_version
        part = await count_keys_on(database_url, new_version)
        # Killed while rewrapping, or already re-encrypting (every key rewrapped, the job still open): either
        # way the job is unfinished, which the second run must find and resume (asserted below).
        assert part > 0, "the first run had not started"

        # 2. run again: it resumes that rotation instead of starting another one
        second = await asyncio.to_thread(
            lambda: subprocess.run(
                rotate_args(system, "--reencrypt"),
                env=operator_env(system),
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
        )
    finally:
        stop.set()
        await asyncio.gather(*revealers)

    assert second.returncode == 0, second.stdout + second.stderr
    assert f"resuming the rotation to KEK {new_version}" in second.stderr  # a progress note, not the result
    assert f"every data key is on KEK {new_version}" in second.stdout
    assert active_version(system) == new_version
    assert len(revealed) >= 100, "too few reveals overlapped the rotation"
    assert all(ok for _, ok in revealed), {status for status, _ in revealed}

    status = system.cli("vault", "status")
    assert status.returncode == 0, status.stderr
    assert f"active KEK: {new_version}" in status.stdout
    lines = [line for line in status.stdout.splitlines() if line.startswith("v")]
    assert len(lines) == 1
    assert lines[0].startswith(f"{new_version} (active)")

    # 3. every seeded secret still decrypts, with the vault's own code and keys; a sample through the API
    keys = DataKeys(keyring(system), ttl_s=60)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "SELECT c.id, c.client_id, c.ciphertext, c.nonce, k.generation, k.wrapped_key, k.kek_version "
                "FROM vault.credentials c JOIN vault.client_keys k "
                "ON k.client_id = c.client_id AND k.generation = c.key_generation WHERE c.id = ANY(%s)",
                (list(secrets),),
            )
        ).fetchall()
    assert len(rows) == len(secrets)
    for credential_id, client_id, ciphertext, nonce, generation, wrapped, version in rows:
        assert generation == 2  # re-encrypted under a new data key
        assert version == new_version
        dek = await keys.unwrap(client_id, generation, Wrapped(wrapped, version))
        assert open_sealed(dek, client_id, credential_id, ciphertext, nonce) == secrets[credential_id][1]
    keys.clear()
    for credential_id in sample[:50]:
        client_id, secret = secrets[credential_id]
        r = await api.raw.get(f"/clients/{client_id}/credentials/{credential_id}", headers=admin.headers)
        assert r.json()["secret"] == secret


def test_an_inline_keyring_that_lacks_a_version_is_a_clear_error(system: System, tmp_path: Path) -> None:
    env = {k: v for k, v in system.env.items() if k not in ("NATS_URL",)}
    env |= {"DATABASE_URL": system.info()["database_url"], "CLIENTVAULT_KEKS": "v99:" + "A" * 43 + "="}
    done = subprocess.run(
        system.command("vault", "rotate-key"), env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 1
    assert "which the key provider lacks" in done.stderr
    assert "AAAA" not in done.stderr + done.stdout
