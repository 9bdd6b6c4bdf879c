"""Run a real ClientVault (`clientvault up`) for tests, and talk to it as a user and an operator would.

By default `up` starts embedded PostgreSQL and nats-server in a temporary data dir; with DATABASE_URL /
NATS_URL set, it uses those servers instead (each test makes its own data under unique names).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

READY_TIMEOUT_S = 120.0
# For systems whose tests reveal hundreds of times as one user (the limits stay on, as in production).
HIGH_REVEAL_LIMITS = {"CLIENTVAULT_REVEAL_USER_MAX": "1000000", "CLIENTVAULT_REVEAL_IP_MAX": "1000000"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class System:
    """One `clientvault up` process on a data dir, with its output collected line by line."""

    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.admin: tuple[str, str] | None = None

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ops", *args]

    def start(self) -> float:
        """Starts `up` and waits for its `ready` line; returns the seconds it took."""
        started = time.monotonic()
        self.process = subprocess.Popen(
            self.command("up", "--data-dir", str(self.data_dir), "--port", str(self.port)),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._collect, args=(self.process,), daemon=True).start()
        while time.monotonic() - started < READY_TIMEOUT_S:
            if any("ready at" in line for line in self.lines):
                self.admin = self._admin()
                return time.monotonic() - started
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("clientvault up did not become ready:\n" + "".join(self.lines[-50:]))

    def _collect(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    def _admin(self) -> tuple[str, str] | None:
        for line in self.lines:
            if "created the first admin" in line:
                words = line.split()
                return words[words.index("email") + 1], words[words.index("password") + 1]
        return None

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Signals `up` and waits for it to exit; returns the seconds it took."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return time.monotonic() - started

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


@contextmanager
def running(data_dir: Path, env: dict[str, str]) -> Iterator[System]:
    """A system started on `data_dir` with `env`, stopped when the block ends."""
    system = System(data_dir, env=env)
    system.start()
    try:
        yield system
    finally:
        system.stop()


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
    """HTTP through the gateway, plus the operator commands that make accounts. `async with` closes it."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.raw = httpx.AsyncClient(base_url=system.url, timeout=30)

    async def __aenter__(self) -> "Api":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.raw.aclose()

    def new_account(self, role: str = "read_only") -> Account:
        account = Account(f"{role}-{uuid.uuid4().hex[:12]}@example.com", f"pw-{uuid.uuid4().hex}", role)
        done = self.system.cli(
            "users", "create", "--email", account.email, "--full-name", f"Test {role}", "--role", role,
            "--password-stdin", stdin=account.password,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
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
        return await self.sign_in(self.new_account(role))


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
