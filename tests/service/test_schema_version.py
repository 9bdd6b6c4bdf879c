"""A service serves only once its schema is at the version its code ships: `clientvault serve` (a real process)
against a real PostgreSQL whose schema is one revision behind stays NOT_SERVING, does no background work, and
becomes SERVING once the schema is migrated; against a schema ahead of it (a rollback), it refuses to start.
"""

import asyncio
import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import psycopg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clientvault import ed25519
from ops.migrate import config
from ops.registry import BY_NAME
from tests import postgres
from tests.system import free_port, stop_process

WAIT_S = 60.0  # a deadline for what the test waits for, never an assertion about speed
AUDIT = BY_NAME["audit"]
AUDIT_SCRIPTS = ScriptDirectory(str(AUDIT.migrations))
AUDIT_HEAD = str(AUDIT_SCRIPTS.get_current_head())


@pytest.fixture
def database(database_url: str) -> Iterator[str]:
    """An empty database of its own, with the auth schema migrated (auth's keys let the audit service verify)."""
    with postgres.fresh_database(database_url, drop=True) as url:
        postgres.migrate(url, "auth")
        yield url


def migrate_audit(url: str, revision: str) -> None:
    command.upgrade(config(url, AUDIT), revision)


@contextmanager
def serve(name: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`clientvault serve <name>` with `env`, its log lines (stderr) in `log`; stopped at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops", "serve", name], env={**os.environ, **env}, stdout=out, stderr=out
        )
        try:
            yield process
        finally:
            stop_process(process)


def settings(url: str, tmp_path: Path) -> dict[str, str]:
    """What the auth and audit processes read: the database, a NATS nobody listens on (their jobs retry), keys."""
    return {
        "DATABASE_URL": url,
        "NATS_URL": "nats://127.0.0.1:9",
        "CLIENTVAULT_AUTH_ADDR": f"127.0.0.1:{free_port()}",
        "CLIENTVAULT_AUDIT_ADDR": f"127.0.0.1:{free_port()}",
        "CLIENTVAULT_TOKEN_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
        "CLIENTVAULT_EVENT_PUBLIC_KEYS": "vault:"
        + ed25519.encode_public(ed25519.private_key(ed25519.generate(), "key").public_key()),
        "CLIENTVAULT_EVENT_SIGNING_KEY": ed25519.generate(),  # auth's and the audit service's own events
    }


def wait_for_line(log: Path, event: str, process: subprocess.Popen[bytes]) -> str:
    """The first log line of `event`, once the process has written it."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text().splitlines():
            if f'"event": "{event}"' in line:
                return line
        time.sleep(0.1)
    pytest.fail(f"no {event} in the log (exit {process.poll()}):\n{log.read_text()}")


async def health(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


async def wait_for_health(address: str, status: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while (seen := await health(address)) != status:
        assert time.monotonic() < deadline, f"health stayed {health_pb2.HealthCheckResponse.ServingStatus.Name(seen)}"
        await asyncio.sleep(0.2)


async def test_a_service_behind_its_schema_is_not_serving_until_migrated(database: str, tmp_path: Path) -> None:
    env = settings(database, tmp_path)
    head = AUDIT_SCRIPTS.get_revision(AUDIT_HEAD)
    assert head is not None
    one_behind = head.down_revision
    assert isinstance(one_behind, str)
    migrate_audit(database, one_behind)
    with serve("auth", env, tmp_path / "auth.log") as auth, serve("audit", env, tmp_path / "audit.log") as audit:
        wait_for_line(tmp_path / "auth.log", "rpc.listening", auth)
        await wait_for_health(env["CLIENTVAULT_AUTH_ADDR"], health_pb2.HealthCheckResponse.SERVING)  # keys to load
        behind = wait_for_line(tmp_path / "audit.log", "schema.behind", audit)
        assert f'"revision": "{one_behind}"' in behind
        assert f'"expected": "{AUDIT_HEAD}"' in behind
        wait_for_line(tmp_path / "audit.log", "rpc.listening", audit)

        assert await health(env["CLIENTVAULT_AUDIT_ADDR"]) == health_pb2.HealthCheckResponse.NOT_SERVING
        # No job runs before the schema is there: neither the consumer nor the deny list has tried NATS yet.
        assert '"event": "nats.error"' not in (tmp_path / "audit.log").read_text()

        migrate_audit(database, "head")

        await wait_for_health(env["CLIENTVAULT_AUDIT_ADDR"], health_pb2.HealthCheckResponse.SERVING)
        wait_for_line(tmp_path / "audit.log", "schema.current", audit)
        wait_for_line(tmp_path / "audit.log", "nats.error", audit)  # its jobs have started (and find no NATS)
    log = (tmp_path / "audit.log").read_text()
    assert log.count('"event": "schema.behind"') == 1, "said once, not at every look"


def test_a_service_refuses_a_schema_ahead_of_it(database: str, tmp_path: Path) -> None:
    """An older image against a schema a newer one migrated (a rollback): it must not guess what the schema means."""
    migrate_audit(database, "head")
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE audit.alembic_version SET version_num = '9001'")  # a revision this code does not ship

    done = subprocess.run(
        [sys.executable, "-m", "ops", "serve", "audit"],
        env={**os.environ, **settings(database, tmp_path)},
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )

    assert done.returncode == 2
    assert (
        f'audit: cannot start: the schema "audit" is at revision 9001, which this version does not ship '
        f"(its newest is {AUDIT_HEAD})" in done.stderr
    )
    assert '"event": "schema.ahead"' in done.stderr
