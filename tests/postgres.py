"""A PostgreSQL of the test run's own for the service tier: the embedded one (the wheel `up` uses), or a new
database on the server in DATABASE_URL. Either way the tier gets an empty database that it drops at the end.
"""

import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from alembic import command

from ops.datadir import DataDir
from ops.embedded import init_postgres, postgres_command
from ops.migrate import config
from ops.registry import BY_NAME
from tests.system import free_port, stop_process

READY_TIMEOUT_S = 60.0


def external() -> bool:
    return bool(os.environ.get("DATABASE_URL"))


@contextmanager
def server(data_dir: Path) -> Iterator[str]:
    """The admin URL of a PostgreSQL: DATABASE_URL's server, else an embedded one on `data_dir`."""
    if external():
        yield os.environ["DATABASE_URL"]
        return
    data, password = DataDir.at(data_dir), secrets.token_hex(16)
    init_postgres(data, password)
    port = free_port()
    cmd = postgres_command(data, port)
    log = data.log("postgres").open("w")
    process = subprocess.Popen(cmd.argv, env={**os.environ, **cmd.env}, user=cmd.user, stdout=log, stderr=log)
    url = f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
    try:
        _wait_ready(url, process)
        yield url
    finally:
        stop_process(process, signal.SIGINT, 30)  # PostgreSQL's fast shutdown
        log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            psycopg.connect(url, connect_timeout=1).close()
            return
        except psycopg.OperationalError:
            time.sleep(0.05)
    raise RuntimeError(f"PostgreSQL did not accept connections in {READY_TIMEOUT_S:.0f}s")


@contextmanager
def fresh_database(admin_url: str, *, drop: bool) -> Iterator[str]:
    """A new, empty database on the server (dropped at the end when `drop`): its URL."""
    name = f"service_tier_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        if drop:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(database_url: str, service: str) -> None:
    """One service's migrations, to head, in its own schema (what `clientvault migrate` does for each)."""
    command.upgrade(config(database_url, BY_NAME[service]), "head")
