"""Run a real ClientVault (`clientvault up`), for the tests and the benchmarks alike, and talk to it as a
user and an operator would.

By default `up` starts embedded PostgreSQL and nats-server in a temporary data dir; with DATABASE_URL /
NATS_URL set, it uses those servers instead (each test makes its own data under unique names).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from clientvault.db import Database

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
READY_LINE = re.compile(r"ready at (http://\S+) in ([\d.]+)s")
ADMIN_LINE = re.compile(r"created the first admin: email (\S+)\s+password (\S+)")
# For env: `up` on its own embedded PostgreSQL and nats-server even when the caller's environment names others.
EMBEDDED: dict[str, str | None] = {"DATABASE_URL": None, "NATS_URL": None}
# For systems whose tests reveal hundreds of times as one user (the limits stay on, as in production).
HIGH_REVEAL_LIMITS = {"CLIENTVAULT_REVEAL_USER_MAX": "1000000", "CLIENTVAULT_REVEAL_IP_MAX": "1000000"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class System:
    """One `clientvault up` process on a data dir, with its output collected line by line.

    `env` is added to this process's environment (a None value removes the variable); `echo` prints each
    line of `up` as it comes (the benchmarks do).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        env: Mapping[str, str | None] | None = None,
        port: int | None = None,
        echo: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        merged: dict[str, str | None] = {**os.environ, **(env or {})}
        self.env = {name: value for name, value in merged.items() if value is not None}
        self.echo = echo
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.admin: tuple[str, str] | None = None
        self.ready_s = 0.0  # how long the last start took, from spawn to `ready`
        self.reported_ready_s = 0.0  # the same as `up` itself says it

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ops", *args]

    def start(self) -> float:
        """Starts `up` and waits for its `ready` line; returns the seconds it took (wall clock from spawn)."""
        started = time.monotonic()
        self.lines = []
        self.process = subprocess.Popen(
            self.command("up", "--data-dir", str(self.data_dir), "--port", str(self.port)),
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._collect, args=(self.process,), daemon=True).start()
        while time.monotonic() - started < READY_TIMEOUT_S:
            if ready := next(filter(None, map(READY_LINE.search, self.lines)), None):
                self.reported_ready_s = float(ready[2])
                self.admin = next(((m[1], m[2]) for m in map(ADMIN_LINE.search, self.lines) if m), None)
                self.ready_s = time.monotonic() - started
                return self.ready_s
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("clientvault up did not become ready:\n" + "".join(self.lines[-50:]))

    def _collect(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if self.echo:
                print(f"  | {line.rstrip()}", flush=True)
            self.lines.append(line)

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Signals `up` and waits for it to exit (SIGKILL after STOP_TIMEOUT_S); returns the seconds it took."""
        return 0.0 if self.process is None else stop_process(self.process, sig, STOP_TIMEOUT_S)

    def pids(self) -> dict[str, int]:
        run = self.data_dir / "run"
        return {path.stem: int(path.read_text()) for path in run.glob("*.pid")}

    def info(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "run" / "system.json").read_text())  # type: ignore[no-any-return]

    def info_address(self, service: str) -> str:
        """Where a service's gRPC server listens (for direct calls that bypass the gateway)."""
        return str(self.info()["services"][service])

    def secrets(self) -> dict[str, str]:
        return json.loads((self.data_dir / "secrets.json").read_text())  # type: ignore[no-any-return]

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """An operator command acting on this system (through --data-dir)."""
        env = {k: v for k, v in self.env.items() if k not in ("DATABASE_URL", "NATS_URL")}
        return subprocess.run(
            self.command(*args, "--data-dir", str(self.data_dir)),
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )


def stop_process(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace_s: float = 10) -> float:
    """Signals a process we started and waits for it to exit, SIGKILL after `grace_s`; returns the seconds it took."""
    if process.poll() is not None:
        return 0.0
    started = time.monotonic()
    process.send_signal(sig)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return time.monotonic() - started


@contextmanager
def running(data_dir: Path, env: Mapping[str, str | None]) -> Iterator[System]:
    """A system started on `data_dir` with `env`, stopped when the block ends."""
    system = System(data_dir, env=env)
    system.start()
    try:
        yield system
    finally:
        system.stop()


async def all_ready(http: httpx.AsyncClient) -> bool:
    """The gateway ready (/readyz: it verifies tokens) and every service serving (/healthz/services): what a
    test that restarted a process waits for before it carries on."""
    try:
        answers = [await http.get(path) for path in ("/readyz", "/healthz/services")]
    except httpx.TransportError:
        return False
    return all(r.status_code == 200 for r in answers)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent's wait is missing.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP: alive but silent) for the block, then let go on (SIGCONT) whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    role: str


@dataclass(frozen=True)
class Session:
    account: Account
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


class Api:
    """HTTP through the gateway, plus accounts made in-process in the system's database (as `clientvault users
    create` makes them, without a process each). `async with` closes it."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.raw = httpx.AsyncClient(base_url=system.url, timeout=30)
        self._db: Database | None = None

    async def __aenter__(self) -> "Api":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.raw.aclose()
        if self._db is not None:
            await self._db.dispose()

    async def new_account(self, role: str = "read_only") -> Account:
        account = Account(f"{role}-{uuid.uuid4().hex[:12]}@example.com", f"pw-{uuid.uuid4().hex}", role)
        if self._db is None:
            self._db = Database(self.system.info()["database_url"], pool_size=2)
        await create_account(self._db, account)
        return account

    async def sign_in(self, account: Account, *, ip: str | None = None) -> Session:
        headers = {"X-Forwarded-For": ip} if ip else {}
        r = await self.raw.post(
            "/auth/sign-in", json={"email": account.email, "password": account.password}, headers=headers
        )
        assert r.status_code == 200, r.text
        body = r.json()
        return Session(account, body["accessToken"], body["refreshToken"])

    async def session(self, role: str = "read_only") -> Session:
        return await self.sign_in(await self.new_account(role))


async def create_account(db: Database, account: Account) -> None:
    """A user who can sign in, made with the auth service's own code (validation, argon2id) in its database."""
    from clientvault.context import NO_REQUEST
    from clientvault.policy import SERVICE_ROLES, Role
    from services.auth.security_events import OPERATOR
    from services.auth.users import create_user, issue_service_account

    if account.role in SERVICE_ROLES:  # issued as the operator issues one, never created through the API
        await issue_service_account(db, role=Role(account.role), email=account.email,
                                    full_name=f"Test {account.role}", password=account.password)  # fmt: skip
        return
    await create_user(db, email=account.email, full_name=f"Test {account.role}", role=account.role,
                      password=account.password, actor=OPERATOR, context=NO_REQUEST)  # fmt: skip


async def new_task(api: Api, session: Session, client_id: str, **body: Any) -> dict[str, Any]:
    r = await api.raw.post(f"/clients/{client_id}/tasks", headers=session.headers, json={"title": "Renew TLS", **body})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def me(api: Api, session: Session) -> str:
    """The session's user id."""
    return str((await api.raw.get("/users/me", headers=session.headers)).json()["id"])


def unique_ip() -> str:
    """A client IP of its own for a test, sent through the trusted proxy header, so throttles never cross."""
    value = uuid.uuid4().int
    return f"10.{value % 250}.{(value >> 8) % 250}.{(value >> 16) % 250 + 1}"
