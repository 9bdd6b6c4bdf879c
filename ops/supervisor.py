"""`clientvault up`: run the whole system on one machine, in the foreground, until SIGINT/SIGTERM.

Order: lock the data dir, start the fork server (it imports the ClientVault processes' code meanwhile:
ops/forkserver.py), start (or reach) PostgreSQL and NATS, migrate what is behind, fork the four services and the
gateway from the fork server, create the first admin, wait until each is healthy, print one `ready` line. A child
that dies is restarted (with jittered backoff) and its pid file rewritten. On a signal every child is stopped:
politely (SIGTERM) first, SIGKILL after a grace period, so nothing outlives `up`.
"""

import asyncio
import base64
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
import stamina
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clientvault.attestation import service_key_setting
from clientvault.nats_access import PERMISSIONS
from clientvault.settings import FILE_SUFFIX, AuthSettings, GatewaySettings, JetStreamSettings, VaultSettings
from ops import embedded
from ops.datadir import AlreadyRunning, DataDir
from ops.embedded import Command
from ops.forkserver import Forked, ForkServer, ForkServerGone
from ops.registry import CONTEXT_KEY, CONTEXT_VERIFY_KEY, GATEWAY, SECRET_HOLDERS, SERVICES

APP_STOP_GRACE_S = 4.0
SERVER_STOP_GRACE_S = 3.0
START_TIMEOUT_S = 60.0
# A child that exits is restarted after 0.5 s, then twice as long after each exit in a row, up to 10 s, plus up
# to 0.5 s of jitter (stamina's backoff, as in clientvault/retrying.py); one that ran this long starts it over.
RESTART_BACKOFF: dict[str, Any] = {"wait_initial": 0.5, "wait_max": 10.0, "wait_jitter": 0.5}
RESTART_RESET_S = 30.0
PR_SET_PDEATHSIG = 1


def say(message: str) -> None:
    print(f"clientvault: {message}", flush=True)


# Ports this `up` has handed out or been given: a port is free only until something binds it, and the kernel may
# offer a released port again at once (a NATS server on the gateway's port was seen), so none is handed out twice.
_TAKEN: set[int] = set()


def free_port() -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _TAKEN:
            _TAKEN.add(port)
            return port


def _die_with_parent(sig: int) -> None:
    """Runs in the child before exec: if `up` itself is killed, the kernel stops the child too."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, sig)


@dataclass
class Child:
    name: str
    command: Command
    stop_signal: int = signal.SIGTERM
    forked: bool = False  # a ClientVault process: forked by the fork server (command.env its environment)
    process: asyncio.subprocess.Process | Forked | None = None
    started_at: float = 0.0
    restarts: int = 0


class _Exited(Exception):
    """A child exited: the supervisor's backoff waits, then restarts it."""


class Supervisor:
    def __init__(self, data: DataDir) -> None:
        self.data = data
        self.children: dict[str, Child] = {}
        self.stopping = False
        self._watchers: list[asyncio.Task[None]] = []
        self._logs: list[IO[bytes]] = []
        self.forkserver = ForkServer(self._start_forkserver)

    async def _start_forkserver(self, channel: int) -> asyncio.subprocess.Process:
        """The fork server, with every secret blanked: each child gets its own through a pipe (ops/forkserver.py)."""
        log = self.data.log("forkserver").open("ab")
        self._logs.append(log)
        blanked = {variable: "" for secret in SECRET_HOLDERS for variable in (secret, secret + FILE_SUFFIX)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ops.forkserver",
            str(channel),
            pass_fds=(channel,),
            env={**os.environ, **blanked},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=lambda: _die_with_parent(signal.SIGTERM),
        )
        self.data.write_pid("forkserver", process.pid)
        return process

    async def start(self, child: Child) -> None:
        self.children[child.name] = child
        await self._spawn(child)
        self._watchers.append(asyncio.create_task(self._watch(child)))

    async def _spawn(self, child: Child) -> None:
        log = self.data.log(child.name).open("ab")
        self._logs.append(log)
        sig = child.stop_signal
        if child.forked:
            environment = {**os.environ, **child.command.env}
            child.process = await self.forkserver.spawn(child.name, environment, log, sig)
            child.started_at = time.monotonic()
            self.data.write_pid(child.name, child.process.pid)
            return
        child.process = await asyncio.create_subprocess_exec(
            *child.command.argv,
            env={**os.environ, **child.command.env},
            user=child.command.user,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # a terminal's Ctrl-C reaches `up` only; `up` stops the children in order
            preexec_fn=lambda: _die_with_parent(sig),
        )
        child.started_at = time.monotonic()
        self.data.write_pid(child.name, child.process.pid)

    async def _watch(self, child: Child) -> None:
        """Restarts the child whenever it exits, after a wait that grows with each exit in a row (with jitter,
        so that children that died together do not restart in step); one that had run RESTART_RESET_S is
        restarted at once and the backoff starts over."""
        while True:
            async for attempt in stamina.retry_context(on=_Exited, attempts=None, timeout=None, **RESTART_BACKOFF):
                with attempt:
                    if attempt.num > 1:  # the wait after an exit is over
                        await self._restart(child)
                    assert child.process is not None
                    code = await child.process.wait()
                    if self.stopping:
                        return
                    child.restarts += 1
                    ran_long = time.monotonic() - child.started_at > RESTART_RESET_S
                    wait_s = 0.0 if ran_long else attempt.next_wait
                    say(f"{child.name} exited with code {code}; restarting in {wait_s:.1f}s "
                        f"(see {self.data.log(child.name)})")  # fmt: skip
                    if not ran_long:
                        raise _Exited
            with contextlib.suppress(_Exited):  # not restarted: it counts as an exit that did not run long
                await self._restart(child)

    async def _restart(self, child: Child) -> None:
        if self.stopping:
            return
        try:
            await self._spawn(child)
        except (OSError, ForkServerGone) as error:  # e.g. the fork server ended meanwhile: the next try starts one
            say(f"{child.name} could not be restarted: {error}")
            child.started_at = time.monotonic()
            raise _Exited from error
        assert child.process is not None
        say(f"{child.name} restarted (pid {child.process.pid})")

    async def stop_all(self) -> None:
        self.stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        apps = [c for c in self.children.values() if c.name not in ("postgres", "nats")]
        servers = [c for c in self.children.values() if c.name in ("nats", "postgres")]
        await self._stop(apps, APP_STOP_GRACE_S)
        await self.forkserver.stop(SERVER_STOP_GRACE_S)
        await self._stop(servers, SERVER_STOP_GRACE_S)
        for name in (*self.children, "forkserver"):
            self.data.pid_file(name).unlink(missing_ok=True)
        for log in self._logs:
            log.close()

    async def _stop(self, children: list[Child], grace_s: float) -> None:
        running = [c for c in children if c.process is not None and c.process.returncode is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(child.stop_signal)  # type: ignore[union-attr]
        waits = [asyncio.create_task(c.process.wait()) for c in running]  # type: ignore[union-attr]
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=grace_s)
        for child in running:
            if child.process is not None and child.process.returncode is None:
                say(f"{child.name} did not stop in {grace_s:.0f}s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
        if pending:
            await asyncio.wait(pending, timeout=2)


async def _wait_until(check: Any, what: str, supervisor: Supervisor, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready in {START_TIMEOUT_S:.0f}s (see {supervisor.data.log(name)})")


DATABASE = "clientvault"


async def start_embedded_postgres(supervisor: Supervisor, password: str) -> str:
    """Starts the data dir's embedded PostgreSQL (initdb on first use) under the supervisor and makes sure the
    `clientvault` database exists; the superuser's URL of that database."""
    pg_port = free_port()
    await asyncio.to_thread(embedded.init_postgres, supervisor.data, password)
    await supervisor.start(Child("postgres", embedded.postgres_command(supervisor.data, pg_port), signal.SIGINT))
    admin_url = f"postgresql://postgres:{password}@127.0.0.1:{pg_port}/postgres"
    await _wait_until(lambda: _postgres_ready(admin_url), "PostgreSQL", supervisor, "postgres")
    await _ensure_database(admin_url, DATABASE)
    return admin_url.rsplit("/", 1)[0] + "/" + DATABASE


async def _postgres_ready(url: str) -> bool:
    import psycopg

    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=1)
    except psycopg.OperationalError:
        return False
    await conn.close()
    return True


async def _ensure_database(admin_url: str, name: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        found = await (await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))).fetchone()
        if found is None:
            await conn.execute(f'CREATE DATABASE "{name}"')


async def _service_logins(database_url: str, passwords: dict[str, str]) -> dict[str, str]:
    """The URL each service connects with under the embedded PostgreSQL, as in production (deploy/README.md,
    section 3.2): a login role `clientvault_<service>` with rights on its own schema only. The audit role
    is only a member of the append-only role its migration made, so it can add entries, never change or
    remove one (and may read its schema's revision). Run after the migrations, so the grants cover every table
    they made."""
    import psycopg
    from psycopg import sql

    from services.audit.admin import WRITER_ROLE

    urls = {}
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for service, password in passwords.items():
            role, schema = sql.Identifier(f"clientvault_{service}"), sql.Identifier(service)
            found = await (
                await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (f"clientvault_{service}",))
            ).fetchone()
            verb = sql.SQL("ALTER" if found else "CREATE")
            await conn.execute(sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(verb, role, sql.Literal(password)))
            if service == "audit":
                await conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(WRITER_ROLE), role))
                # and the schema's revision, which the service checks at start (clientvault/migrations.py)
                await conn.execute(sql.SQL("GRANT SELECT ON audit.alembic_version TO {}").format(role))
            else:
                for grant in (
                    "GRANT USAGE ON SCHEMA {schema} TO {role}",
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
                    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
                ):
                    await conn.execute(sql.SQL(grant).format(schema=schema, role=role))
            urls[service] = f"postgresql://clientvault_{service}:{password}@{database_url.split('@', 1)[1]}"
    return urls


async def _quiet(_error: Exception) -> None:
    """nats-py prints every failed attempt with a traceback; while we wait for the server they are expected."""


async def _nats_ready(url: str) -> bool:
    import nats
    from nats.errors import Error as NatsError

    try:
        nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False, error_cb=_quiet)
    except (OSError, NatsError, TimeoutError):
        return False
    await nc.close()
    return True


async def _grpc_serving(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.aio.AioRpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def _http_ready(host: str, port: int, path: str) -> bool:
    """Whether GET `path` answers 200: one request on a plain connection (an HTTP client library is a third of a
    second of imports that `up` would pay at each start for this one probe)."""
    try:
        async with asyncio.timeout(1):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
                status = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    return status.split(b" ", 2)[1:2] == [b"200"]


def _vault_keys(data: DataDir, given: VaultSettings) -> dict[str, str]:
    """The vault's KEK: the one given in the environment (or a file it names), else a keyring kept in
    secrets.json (generated once).

    The vault gets the file's path rather than the key, so `clientvault vault rotate-key` can add a version
    to the keyring while the vault runs (it reloads the file when it changes)."""
    if given.key_provider == "transit" or (given.keks and given.keks.get_secret_value()) or given.kek_file:
        return {}
    if data.ensure_vault_kek():
        say(f"generated the vault's key-encryption key into {data.secrets_file} (mode 0600): back it up, "
            "without it no secret can be decrypted")  # fmt: skip
    return {"CLIENTVAULT_KEK_FILE": str(data.secrets_file)}


async def run(data_dir: Path, host: str, port: int, admin_email: str) -> int:
    from clientvault import logging

    logging.configure("warning", "up")  # `up` speaks in plain lines; the children log JSON to logs/
    data = DataDir.at(data_dir)
    try:
        lock = data.lock()
    except AlreadyRunning as error:
        say(f"{error}; stop it first or use another --data-dir")
        return 1
    supervisor = Supervisor(data)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(_start(supervisor, data, host, port, admin_email))
    stopped = asyncio.create_task(stop.wait())
    code = 0
    try:
        await asyncio.wait([starting, stopped], return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and starting.exception() is not None:
            say(f"could not start: {starting.exception()}")
            code = 1
        elif not stop.is_set():
            await stopped
    finally:
        starting.cancel()
        say("stopping")
        await supervisor.stop_all()
        data.system_file.unlink(missing_ok=True)
        lock.close()
        say("stopped")
    return code


async def _given(url: str) -> str:
    return url


async def _start_nats(
    supervisor: Supervisor, data: DataDir, keys: dict[str, str], given_url: str | None
) -> tuple[str, dict[str, str]]:
    """The operator's NATS URL and each process's own (none: every process uses the URL given). Starts the data
    dir's nats-server unless NATS_URL was given."""
    if given_url:
        return given_url, {}
    nats_port = free_port()
    passwords = {name: keys[f"nats_{name}_password"] for name in PERMISSIONS}
    passwords[embedded.NATS_OPERATOR] = keys["nats_token"]
    await supervisor.start(Child("nats", embedded.nats_command(data, nats_port, passwords)))
    nats_urls = {name: f"nats://{name}:{password}@127.0.0.1:{nats_port}" for name, password in passwords.items()}
    operator_url = nats_urls[embedded.NATS_OPERATOR]  # for operator commands (system.json)
    await _wait_until(lambda: _nats_ready(operator_url), "nats-server", supervisor, "nats")
    return operator_url, nats_urls


async def _accounts(database_url: str, admin_email: str, rotation_email: str, rotation_password: str) -> str | None:
    """The first admin (made only while auth has no person's account), then the vault's rotation-tasks identity
    with the exported password or the data dir's (docs/security.md 4.6); the admin's password when one was made."""
    from services.auth.admin import create_first_admin, issue_rotation_identity

    admin_password = await create_first_admin(database_url, admin_email)
    await issue_rotation_identity(database_url, email=rotation_email, password=rotation_password)
    return admin_password


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise RuntimeError(f"cannot listen on {host}:{port} ({error.strerror}); choose another --port") from None


async def _start(supervisor: Supervisor, data: DataDir, host: str, port: int, admin_email: str) -> None:
    started = time.monotonic()
    _check_port_free(host, port)
    _TAKEN.add(port)
    await supervisor.forkserver.start()  # it imports the processes' code meanwhile
    keys = data.secrets()
    given = VaultSettings()  # what the operator exported (as a variable or a *_FILE), DATABASE_URL and NATS_URL too
    embedded_postgres = not given.database_url
    # PostgreSQL and nats-server start side by side; the migrations and the stream's bootstrap likewise.
    postgres = start_embedded_postgres(supervisor, keys["postgres_password"]) if embedded_postgres else None
    (database_url, (nats_url, nats_urls)) = await asyncio.gather(
        postgres or _given(given.require_database_url()), _start_nats(supervisor, data, keys, given.nats_url)
    )
    from ops.jetstream import bootstrap
    from ops.migrate import upgrade_all

    # As the operator: the processes' users may not create the stream or bucket.
    migrated, _ = await asyncio.gather(
        asyncio.to_thread(upgrade_all, database_url), bootstrap(nats_url, JetStreamSettings())
    )
    if migrated:
        say(f"migrated the schemas of {', '.join(migrated)}")
    # The vault's rotation-tasks identity, with the exported password or the data dir's (docs/security.md).
    rotation_password = (
        given.rotation_tasks_password.get_secret_value()
        if given.rotation_tasks_password
        else keys["rotation_tasks_password"]
    )
    # Meanwhile (the processes need neither, and the fork server is likely still importing): the accounts.
    accounts = asyncio.create_task(_accounts(database_url, admin_email, given.rotation_tasks_email, rotation_password))
    accounts.add_done_callback(lambda done: done.cancelled() or done.exception())  # awaited below, unless start failed

    # With an external database every service uses the operator's DATABASE_URL as given (deploy/README.md, 3.2).
    service_urls = (
        await _service_logins(database_url, {s.name: keys[f"{s.name}_db_password"] for s in SERVICES})
        if embedded_postgres
        else {}
    )

    addresses = {service.name: f"127.0.0.1:{free_port()}" for service in SERVICES}
    # Each process serves /metrics on a port of its own (listed in run/system.json), on 127.0.0.1.
    metrics_ports = {process.name: free_port() for process in (*SERVICES, GATEWAY)}
    env = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        **{f"CLIENTVAULT_{name.upper()}_ADDR": address for name, address in addresses.items()},
        "CLIENTVAULT_GATEWAY_HOST": host,
        "CLIENTVAULT_GATEWAY_PORT": str(port),
    }
    vault_env = _vault_keys(data, given)
    own_auth_keys = AuthSettings()  # exported, or as a *_FILE: those win over the data dir's
    own_signing_key = own_auth_keys.token_signing_key is not None
    exported_context_key = GatewaySettings().context_key  # exported, or as a *_FILE
    context_key = exported_context_key.get_secret_value() if exported_context_key else keys["context_key"]
    # Each producer signs audit events with its own key; the audit service trusts exactly their public halves.
    signers = {signer.producer: signer for signer in data.event_signers()}
    trusted_events = ",".join(signer.trusted_entry for signer in signers.values())
    for process in (*SERVICES, GATEWAY):  # the gateway starts alongside: its /readyz waits for the services
        name = process.name
        child_env = dict(env, NATS_URL=nats_urls.get(name, nats_url), CLIENTVAULT_METRICS_PORT=str(metrics_ports[name]))
        if name == "auth" and not own_signing_key:
            child_env["CLIENTVAULT_TOKEN_SIGNING_KEY"] = keys["token_signing_key"]  # only auth holds it
        if name == "auth" and own_auth_keys.mfa_key is None:
            child_env["CLIENTVAULT_MFA_KEY"] = keys["mfa_key"]
        if name == "vault":
            child_env |= vault_env
            child_env["CLIENTVAULT_ROTATION_TASKS_PASSWORD"] = rotation_password
            # Only auth's and the clients service's keys: the vault acts on auth's "user disabled" events and on the
            # clients service's "break-glass ended" ones (rotation work), and on nobody else's.
            child_env["CLIENTVAULT_EVENT_PUBLIC_KEYS"] = ",".join(
                signers[producer].trusted_entry for producer in ("auth", "clients")
            )
        if process is GATEWAY:
            child_env[CONTEXT_KEY] = context_key
        else:  # only its own key: it cannot vouch for calls to another service
            child_env[CONTEXT_VERIFY_KEY] = service_key_setting(base64.b64decode(context_key), name)
        if name in signers:
            child_env["CLIENTVAULT_EVENT_SIGNING_KEY"] = keys[f"{name}_event_signing_key"]
        if name == "audit":
            child_env["CLIENTVAULT_EVENT_PUBLIC_KEYS"] = trusted_events
        if name in service_urls:
            child_env["DATABASE_URL"] = service_urls[name]
        # What `up` sets here it read from the environment or a *_FILE already: the file is not given twice.
        child_env |= {variable + FILE_SUFFIX: "" for variable, value in list(child_env.items()) if value}
        child_env |= {
            variable: ""
            for secret, holders in SECRET_HOLDERS.items()
            if name not in holders
            for variable in (secret, secret + FILE_SUFFIX)
        }
        serve = Command([sys.executable, "-m", "ops", "serve", name], child_env)  # what the fork server's child runs
        await supervisor.start(Child(name, serve, forked=True))
    admin_password = await accounts
    for name, address in addresses.items():
        await _wait_until(lambda a=address: _grpc_serving(a), f"the {name} service", supervisor, name)
    url = f"http://{host}:{port}"
    await _wait_until(lambda: _http_ready(host, port, "/readyz"), "the gateway", supervisor, "gateway")

    data.write_system(
        {
            "database_url": database_url,
            "nats_url": nats_url,
            "gateway_url": url,
            "services": addresses,
            "metrics": {name: f"http://127.0.0.1:{port}/metrics" for name, port in metrics_ports.items()},
            "pid": os.getpid(),
        }
    )
    if admin_password is not None:
        say(f"created the first admin: email {admin_email}  password {admin_password}")
        say("this password is shown only once: keep it somewhere safe")
    say(f"ready at {url} in {time.monotonic() - started:.1f}s (data dir {data.root}, logs in {data.root / 'logs'})")
