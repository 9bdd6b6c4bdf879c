"""The layout of a data dir and what `up` records in it for operator commands and fault tests.

<data-dir>/secrets.json      generated keys and passwords (0600); never logged: the token and event signing keys,
                             the audit checkpoint key, the KEK keyring, database and NATS passwords, the
                             rotation-tasks identity's password
<data-dir>/postgres/         embedded PostgreSQL cluster
<data-dir>/nats/             embedded nats-server config and JetStream store
<data-dir>/logs/<name>.log   output of every process `up` started
<data-dir>/run/<name>.pid    one pid file per running process (rewritten on restart)
<data-dir>/run/system.json   how to reach the running system (database and NATS URLs, gateway URL)
<data-dir>/run/up.lock       held by the running `up`
"""

import fcntl
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from clientvault.attestation import new_context_key
from ops.registry import PROCESSES, SERVICES

if TYPE_CHECKING:
    from clientvault.events import EventSigner


def write_private(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Writes a file only its owner may read (mode 0600 from its creation, never briefly wider); `exclusive`:
    refuses to replace a file that exists (FileExistsError)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    with os.fdopen(os.open(path, flags, 0o600), "w") as out:
        out.write(text)


class AlreadyRunning(Exception):
    pass


@dataclass(frozen=True)
class DataDir:
    root: Path

    @classmethod
    def at(cls, path: Path) -> "DataDir":
        root = path.expanduser().resolve()
        for sub in ("run", "logs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return cls(root)

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def nats(self) -> Path:
        return self.root / "nats"

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.root / "run" / f"{name}.pid"

    def write_pid(self, name: str, pid: int) -> None:
        """Replaces the pid file at once (write, then rename): a reader never finds it empty or half written."""
        written = self.pid_file(name).with_suffix(".pid.new")
        written.write_text(f"{pid}\n")
        written.replace(self.pid_file(name))

    @property
    def system_file(self) -> Path:
        return self.root / "run" / "system.json"

    def lock(self) -> IO[str]:
        """Holds the data dir for this process; a second `up` on it raises `AlreadyRunning`."""
        handle = (self.root / "run" / "up.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise AlreadyRunning(f"clientvault is already running on {self.root} (pid {owner})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def secrets(self) -> dict[str, str]:
        """The data dir's generated secrets, created on first use with owner-only permissions."""
        from clientvault import ed25519
        from clientvault.events import PRODUCER_OF

        path = self.root / "secrets.json"
        values: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        wanted: dict[str, Callable[[], str]] = {
            "token_signing_key": ed25519.generate,
            "context_key": new_context_key,  # the gateway's; each service gets only its derived key
            # Each audit producer's event-signing key (only that producer gets it) and the checkpoint key.
            **{f"{producer}_event_signing_key": ed25519.generate for producer in set(PRODUCER_OF.values())},
            "audit_checkpoint_key": ed25519.generate,
            "mfa_key": new_context_key,  # auth's: seals TOTP seeds (base64 of 32 random bytes, like the context key)
            "postgres_password": lambda: secrets.token_urlsafe(24),
            "nats_token": lambda: secrets.token_urlsafe(24),
            # The vault's rotation-tasks identity (an auth account that may only create tasks: docs/security.md).
            "rotation_tasks_password": lambda: secrets.token_urlsafe(24),
            # A PostgreSQL login per service (ops/supervisor.py), as in production.
            **{f"{service.name}_db_password": lambda: secrets.token_urlsafe(24) for service in SERVICES},
            # One NATS user per process (ops/embedded.py); nats_token is the operator's.
            **{f"nats_{process.name}_password": lambda: secrets.token_urlsafe(24) for process in PROCESSES},
        }
        missing = {name: make() for name, make in wanted.items() if name not in values}
        if missing:
            values |= missing
            write_private(path, json.dumps(values, indent=2))
        os.chmod(path, 0o600)
        return values

    def event_signers(self) -> "list[EventSigner]":
        """Each audit producer's signing key, as `up` gives it to that producer."""
        from clientvault import ed25519
        from clientvault.events import PRODUCER_OF, EventSigner

        values = self.secrets()
        return [
            EventSigner(producer, ed25519.private_key(values[f"{producer}_event_signing_key"], "secrets.json"))
            for producer in sorted(set(PRODUCER_OF.values()))
        ]

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    def ensure_vault_kek(self) -> bool:
        """Puts a generated vault KEK keyring (`vault_keks`, `vault_kek_active`) into secrets.json unless it has
        one; True when it made one. The vault reads (and `vault rotate-key` extends) it there."""
        import base64

        values = self.secrets()
        if "vault_keks" in values:
            return False
        values |= {"vault_keks": "v1:" + base64.b64encode(secrets.token_bytes(32)).decode(), "vault_kek_active": "v1"}
        write_private(self.secrets_file, json.dumps(values, indent=2))
        return True

    def write_system(self, info: dict[str, Any]) -> None:
        write_private(self.system_file, json.dumps(info, indent=2))

    def read_system(self) -> dict[str, Any] | None:
        """What a running `up` recorded; None when no `up` holds this data dir."""
        if not self.system_file.exists():
            return None
        try:
            self.lock().close()  # we could take the lock: nobody runs here, the file is stale
        except AlreadyRunning:
            return json.loads(self.system_file.read_text())  # type: ignore[no-any-return]
        return None
