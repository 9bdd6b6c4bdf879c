"""The NATS users of the deployment: deploy/README.md carries exactly the block that `clientvault up` runs with
(ops/embedded.py, from the allow-lists of clientvault/nats_access.py), and the Compose file's
nats.conf, run by a real nats-server, lets each process do exactly what the table says and its job: the
operator's bootstrap, then every process's own NATS code (tests/e2e/test_nats_attacks.py attacks it under `up`)."""

import asyncio
import contextlib
import re
import secrets
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DiscardPolicy, StreamInfo
from nats.js.errors import APIError, BucketNotFoundError, NoStreamResponseError, NotFoundError

from clientvault.events import DUPLICATE_WINDOW_S, PullConsumer, stream_config
from clientvault.nats_access import (
    AUDIT_DURABLE,
    AUDIT_STREAM,
    BREAK_GLASS_DURABLE,
    BREAK_GLASS_SUBJECT,
    BUCKET,
    KV_STREAM,
    LEAVERS_DURABLE,
    LEAVERS_SUBJECT,
    PERMISSIONS,
    connect,
    inbox_prefix,
)
from clientvault.revocation import DenyList, Revoker
from clientvault.settings import JetStreamSettings
from ops.embedded import NATS_OPERATOR, nats_authorization_from_environment, nats_password_variable
from ops.jetstream import BootstrapRefused, bootstrap
from ops.supervisor import free_port
from services.audit.consumer import Consumer
from services.vault.break_glass import BreakGlassEnds
from services.vault.leavers import Leavers
from tests.deploy.compose import COMPOSE, interpolate
from tests.deploy.files import DEPLOY, PROCESSES, tool

README = (DEPLOY / "README.md").read_text()
USERS = (NATS_OPERATOR, *PERMISSIONS)


def test_the_processes_are_the_users() -> None:
    assert set(PERMISSIONS) == set(PROCESSES)


def test_the_readme_carries_the_users_of_the_code() -> None:
    block = nats_authorization_from_environment()
    assert re.search("```\n" + re.escape(block) + "```\n", README), "deploy/README.md, 3.3: clientvault-users.conf"
    assert "$include: clientvault-users.conf" in README
    for user in USERS:
        variable = nats_password_variable(user)
        assert f'--from-literal={variable}="${variable}"' in README, f"the nats-server Secret lacks {variable}"
    for process in PROCESSES:  # each URL in clientvault-nats names its own user and that user's password
        url = f'nats://{process}:${nats_password_variable(process)}@nats.clientvault-data:4222"'
        assert f'--from-literal={process}-url="{url}' in README, process
    operator = f'nats://{NATS_OPERATOR}:${nats_password_variable(NATS_OPERATOR)}@nats.clientvault-data:4222"'
    assert f'create secret generic clientvault-nats-operator --from-literal=url="{operator}' in README, "migration's"


def compose_nats_conf(directory: Path, port: int) -> Path:
    """The Compose file's nats.conf as nats-server gets it, on a local port and store."""
    content = interpolate(COMPOSE["configs"]["nats"]["content"], {})
    for old, new in [
        ("port: 4222\n", f'listen: "127.0.0.1:{port}"\n'),
        ("http_port: 8222\n", ""),
        ("store_dir: /data", f'store_dir: "{directory / "jetstream"}"'),
    ]:
        assert content.count(old) == 1, old
        content = content.replace(old, new)
    path = directory / "nats.conf"
    path.write_text(content)
    return path


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, str]]]:
    """nats-server on the Compose config, each password made as deploy/README.md says."""
    passwords = {user: "p" + secrets.token_hex(32) for user in USERS}
    env = {nats_password_variable(user): password for user, password in passwords.items()}
    port = free_port()
    config = compose_nats_conf(tmp_path_factory.mktemp("nats"), port)
    binary = tool("nats-server")
    checked = subprocess.run([binary, "-c", str(config), "-t"], env=env, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    with running_nats(["-c", str(config)], port, env):
        yield port, passwords


@contextlib.contextmanager
def running_nats(arguments: list[str], port: int, env: dict[str, str]) -> Iterator[None]:
    """nats-server with these arguments, listening on `port` (on 127.0.0.1), until the block ends."""
    server = subprocess.Popen(
        [tool("nats-server"), *arguments], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            assert server.poll() is None, "nats-server exited"
            assert time.monotonic() < deadline, "nats-server does not listen"
            time.sleep(0.05)
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def url(server: tuple[int, dict[str, str]], user: str) -> str:
    port, passwords = server
    return f"nats://{user}:{passwords[user]}@127.0.0.1:{port}"


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` one or more at the end."""
    tokens, wanted = subject.split("."), pattern.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or (token != "*" and token != tokens[i]):
            return False
    return len(tokens) == len(wanted)


def allowed(user: str, subject: str, kind: str) -> bool:
    return user == NATS_OPERATOR or any(matches(p, subject) for p in getattr(PERMISSIONS[user], kind))


def concrete(pattern: str) -> str:
    return pattern.replace("*", "x").replace(">", "x")


# Every subject some process may use, made concrete, and what a thief would try.
PUBLISHED = sorted(
    {concrete(p) for permissions in PERMISSIONS.values() for p in permissions.publish}
    | {
        "$JS.API.STREAM.CREATE.COPY",
        f"$JS.API.STREAM.UPDATE.{AUDIT_STREAM}",
        f"$JS.API.STREAM.DELETE.{AUDIT_STREAM}",
        f"$JS.API.STREAM.PURGE.{AUDIT_STREAM}",
        f"$JS.API.STREAM.INFO.{AUDIT_STREAM}",
        f"$JS.API.STREAM.MSG.GET.{AUDIT_STREAM}",
        f"$JS.API.DIRECT.GET.{AUDIT_STREAM}",
        f"$JS.API.CONSUMER.CREATE.{AUDIT_STREAM}",
        f"$JS.API.CONSUMER.CREATE.{AUDIT_STREAM}.thief.audit.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{AUDIT_STREAM}.{AUDIT_DURABLE}",
        f"$JS.API.CONSUMER.PAUSE.{AUDIT_STREAM}.{AUDIT_DURABLE}",
        f"$JS.API.CONSUMER.DELETE.{AUDIT_STREAM}.{AUDIT_DURABLE}",
        f"$JS.API.CONSUMER.LIST.{AUDIT_STREAM}",
        f"$JS.API.CONSUMER.CREATE.{KV_STREAM}.watcher",
        f"$JS.API.CONSUMER.DELETE.{KV_STREAM}.watcher",
        f"$JS.API.CONSUMER.LIST.{KV_STREAM}",
        "audit.auth.credential_reveal",
        "_INBOX.x",
        f"{inbox_prefix('audit')}.x",
    }
)
SUBSCRIBED = sorted(
    {f"{inbox_prefix(user)}.>" for user in USERS}
    | {"_INBOX.>", "audit.>", f"$JS.API.CONSUMER.MSG.NEXT.{AUDIT_STREAM}.>", f"$JS.ACK.{AUDIT_STREAM}.>", ">"}
)


@pytest.mark.parametrize("user", USERS)
async def test_the_compose_config_allows_each_process_what_the_table_says(
    nats_server: tuple[int, dict[str, str]], user: str
) -> None:
    refused: list[tuple[str, str]] = []

    async def on_error(error: Exception) -> None:
        refused.extend(re.findall(r'(publish to|subscription to) "([^"]+)"', str(error), re.IGNORECASE))

    nc = await nats.connect(url(nats_server, user), error_cb=on_error, allow_reconnect=False)
    try:
        for subject in PUBLISHED:
            await nc.publish(subject, b"probe")
        for subject in SUBSCRIBED:
            await nc.subscribe(subject)
        await nc.flush()
        await asyncio.sleep(0.3)  # the refusals' callbacks
    finally:
        await nc.close()

    refusals = sorted((kind.lower(), subject) for kind, subject in refused)  # nats-py lowercases errors
    expected = [("publish to", s.lower()) for s in PUBLISHED if not allowed(user, s, "publish")]
    expected += [("subscription to", s.lower()) for s in SUBSCRIBED if not allowed(user, s, "subscribe")]
    assert refusals == sorted(expected)


@contextlib.asynccontextmanager
async def watching(server: tuple[int, dict[str, str]], user: str) -> AsyncIterator[DenyList]:
    """The process's revocation watcher (clientvault/revocation.py), synced."""
    denylist = DenyList()
    task = asyncio.create_task(denylist.run(url(server, user)))
    try:
        await asyncio.wait_for(denylist.synced.wait(), 10)
        yield denylist
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_each_process_does_its_job_under_the_compose_config(nats_server: tuple[int, dict[str, str]]) -> None:
    """The allow-lists are enough: the operator creates the stream and bucket, every process watches the
    revocations, auth revokes, the vault publishes an audit event, the audit service pulls and acks it. Before
    the operator's bootstrap, no process can create the stream or bucket: each finds it missing."""
    vault = await connect(url(nats_server, "vault"), allow_reconnect=False)
    with pytest.raises(NoStreamResponseError):  # the relay logs outbox.stream_missing
        await vault.jetstream().publish("audit.vault.credential_reveal", b"event")
    await vault.close()
    early = Consumer(db=None, nats_url=url(nats_server, "audit"), batch=10, keys=None)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):  # audit.stream_missing
        await early._subscription()
    await early.close()
    gateway = await connect(url(nats_server, "gateway"), allow_reconnect=False)
    with pytest.raises(BucketNotFoundError):  # revocations.bucket_missing
        await gateway.jetstream().key_value(BUCKET)
    await gateway.close()

    await bootstrap(url(nats_server, NATS_OPERATOR), JetStreamSettings())
    session, user = uuid.uuid4(), uuid.uuid4()
    async with contextlib.AsyncExitStack() as stack:
        watchers = {p: await stack.enter_async_context(watching(nats_server, p)) for p in PROCESSES}
        revoker = Revoker(url(nats_server, "auth"))
        await revoker.revoke_session(session)
        await revoker.close()
        for _ in range(100):
            if all(w.is_revoked(session, user, 0) for w in watchers.values()):
                break
            await asyncio.sleep(0.05)
        assert [p for p, w in watchers.items() if not w.is_revoked(session, user, 0)] == []

    vault = await connect(url(nats_server, "vault"), allow_reconnect=False)
    ack = await vault.jetstream().publish("audit.vault.credential_reveal", b"event", headers={"Nats-Msg-Id": "e1"})
    await vault.close()
    consumer = Consumer(db=None, nats_url=url(nats_server, "audit"), batch=10, keys=None)  # type: ignore[arg-type]
    try:
        (msg,) = await (await consumer._subscription()).fetch(1, timeout=5)
        assert msg.metadata.sequence.stream == ack.seq
        await msg.ack_sync()
    finally:
        await consumer.close()
    vault = await connect(url(nats_server, "vault"), allow_reconnect=False)
    try:  # the vault reads the consumer's lag for its metrics (services/vault/backlog.py)
        assert (await vault.jetstream().consumer_info(AUDIT_STREAM, AUDIT_DURABLE)).num_ack_pending == 0
    finally:
        await vault.close()
    operator: NATS = await nats.connect(url(nats_server, NATS_OPERATOR))
    try:
        info = await operator.jetstream().consumer_info(AUDIT_STREAM, AUDIT_DURABLE)
    finally:
        await operator.close()
    assert (info.num_ack_pending, info.num_pending) == (0, 0)


@pytest.mark.parametrize(
    ("work", "durable", "subject", "producer", "other"),
    [
        (Leavers, LEAVERS_DURABLE, LEAVERS_SUBJECT, "auth", "audit.auth.sign_in"),
        (BreakGlassEnds, BREAK_GLASS_DURABLE, BREAK_GLASS_SUBJECT, "clients", "audit.clients.break_glass"),
    ],
    ids=["leavers", "break-glass"],
)
async def test_the_vault_reads_its_rotation_work_events_through_its_own_consumers_and_nothing_else(
    nats_server: tuple[int, dict[str, str]], work: Any, durable: str, subject: str, producer: str, other: str
) -> None:
    """Rotation work (services/vault/rotation_work.py): the vault creates and pulls its durable `vault-leavers`
    with exactly the filter `audit.auth.user_updated`, and `vault-break-glass` with exactly
    `audit.clients.access_grant_ended`; the same durable on every event, or another durable, is refused, so the
    vault's user cannot read the rest of the audit stream."""
    await bootstrap(url(nats_server, NATS_OPERATOR), JetStreamSettings())
    publisher = await connect(url(nats_server, producer), allow_reconnect=False)
    try:
        first = await publisher.jetstream().publish(subject, b"first", headers={"Nats-Msg-Id": f"{durable}-1"})
        await publisher.jetstream().publish(other, b"other", headers={"Nats-Msg-Id": f"{durable}-o"})
    finally:
        await publisher.close()
    consumer = work(db=None, nats_url=url(nats_server, "vault"), keys=None, sink=None)
    everything = PullConsumer(
        url(nats_server, "vault"), name="t", durable="vault-everything", subject="audit.>", config=ConsumerConfig()
    )
    widened = PullConsumer(
        url(nats_server, "vault"), name="t", durable=durable, subject="audit.>", config=ConsumerConfig()
    )
    try:
        # Made after the two were published (it starts at new events): a third one is what it gets.
        assert await consumer._pull.fetch(10, 0.5) == []
        publisher = await connect(url(nats_server, producer), allow_reconnect=False)
        try:
            await publisher.jetstream().publish(subject, b"again", headers={"Nats-Msg-Id": f"{durable}-2"})
        finally:
            await publisher.close()
        (msg,) = await consumer._pull.fetch(10, 5)
        assert (msg.subject, msg.data, msg.metadata.sequence.stream > first.seq) == (subject, b"again", True)
        await msg.ack_sync()
        operator = await nats.connect(url(nats_server, NATS_OPERATOR))
        try:  # gone (an operator's clean-up): the vault may make it again only as it was
            await operator.jetstream().delete_consumer(AUDIT_STREAM, durable)
        finally:
            await operator.close()
        for refused in (everything, widened):
            with pytest.raises((TimeoutError, NatsTimeoutError, NotFoundError, APIError)):
                await refused.fetch(10, 1)
    finally:
        for pulled in (consumer._pull, everything, widened):
            await pulled.reset()


DAY_S = 86_400


async def stream_info(nats_url: str, stream: str) -> StreamInfo:
    nc = await nats.connect(nats_url)
    try:
        return await nc.jetstream().stream_info(stream)
    finally:
        await nc.close()


async def test_migrate_brings_the_stream_to_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `clientvault migrate` does with the operator's NATS_URL, read from the environment as the Job sets it:
    the stream is created with the configured max age, and a later run with other limits updates it in place (its
    events kept); a setting NATS cannot honour is refused with NATS's reason, and nothing changes."""
    port = free_port()
    with running_nats(["--jetstream", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path)], port, {}):
        operator = f"nats://127.0.0.1:{port}"
        monkeypatch.setenv("CLIENTVAULT_AUDIT_STREAM_MAX_AGE_S", str(7 * DAY_S))
        await bootstrap(operator, JetStreamSettings())

        created = (await stream_info(operator, AUDIT_STREAM)).config
        assert (created.max_age, created.max_bytes, created.num_replicas) == (7 * DAY_S, -1, 1)
        assert created.discard == DiscardPolicy.NEW, "a full stream refuses new events: they wait in the outbox"
        assert (await stream_info(operator, KV_STREAM)).config.num_replicas == 1

        nc = await nats.connect(operator)
        await nc.jetstream().publish("audit.vault.credential_reveal", b"event", headers={"Nats-Msg-Id": "e1"})
        await nc.close()
        monkeypatch.setenv("CLIENTVAULT_AUDIT_STREAM_MAX_AGE_S", str(90 * DAY_S))
        monkeypatch.setenv("CLIENTVAULT_AUDIT_STREAM_MAX_BYTES", str(2**30))
        await bootstrap(operator, JetStreamSettings())

        updated = await stream_info(operator, AUDIT_STREAM)
        assert (updated.config.max_age, updated.config.max_bytes) == (90 * DAY_S, 2**30)
        assert updated.state.messages == 1, "updated, not made anew"

        monkeypatch.setenv("CLIENTVAULT_NATS_REPLICAS", "3")  # this server is not clustered
        with pytest.raises(BootstrapRefused, match=f"NATS refused the {AUDIT_STREAM} stream's settings: .*replica"):
            await bootstrap(operator, JetStreamSettings())
        assert (await stream_info(operator, AUDIT_STREAM)).config == updated.config


async def test_migrate_shortens_an_earlier_release_s_hour_long_duplicate_window(tmp_path: Path) -> None:
    """A stream made by a release that kept every event id for an hour (nats-server holding them all in memory) is
    brought to the two minutes the relay needs, in place, its events kept; within the new window a republished
    event is still dropped."""
    port = free_port()
    with running_nats(["--jetstream", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path)], port, {}):
        operator = f"nats://127.0.0.1:{port}"
        nc = await nats.connect(operator)
        js = nc.jetstream()
        earlier = replace(stream_config(replicas=1, max_age_s=7 * DAY_S, max_bytes=None), duplicate_window=3600.0)
        await js.add_stream(earlier)
        await js.publish("audit.vault.credential_reveal", b"event", headers={"Nats-Msg-Id": "e1"})

        await bootstrap(operator, JetStreamSettings())

        updated = await js.stream_info(AUDIT_STREAM)
        assert updated.config.duplicate_window == DUPLICATE_WINDOW_S < 3600.0
        assert updated.state.messages == 1, "updated, not made anew"
        again = await js.publish("audit.vault.credential_reveal", b"event", headers={"Nats-Msg-Id": "e1"})
        assert again.duplicate, "the relay's republish within the window is dropped"
        await nc.close()
