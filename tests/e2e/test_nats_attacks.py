"""The attacks on the audit trail and the revocations that a thief of one process's NATS password would try,
each with that process's real credentials against the running system's nats-server; each must be refused
(clientvault/nats_access.py): inject a forged event into the audit consumer's inbox, read the audit deliveries,
copy the AUDIT stream into a stream of one's own, pause or delete the audit consumer, delete the revocation
bucket's watchers (every revoked token would then live seconds longer per deletion)."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig, StreamSource

from clientvault.events import STREAM
from clientvault.nats_access import BUCKET
from services.audit.consumer import DURABLE
from tests.audit_support import stored_event_ids
from tests.deploy.files import PROCESSES
from tests.e2e.test_audit_log import an_event
from tests.e2e.test_nats_permissions import connected_as
from tests.system import Api, Session
from tests.vault_support import create, new_client

pytestmark = pytest.mark.skipif(
    bool(__import__("os").environ.get("NATS_URL")), reason="an external NATS server's users are its own"
)

NOT_AUDIT = [p for p in PROCESSES if p != "audit"]
REVOCATIONS = f"KV_{BUCKET}"


@pytest.fixture
async def admin(api: Api) -> Session:
    return await api.session("admin")


@asynccontextmanager
async def as_operator(api: Api) -> AsyncIterator[NATS]:
    nc = await nats.connect(api.system.info()["nats_url"])
    try:
        yield nc
    finally:
        await nc.close()


def refused(refusals: list[str], subject: str) -> bool:
    """Whether nats-server refused this connection a publish or subscription on `subject`."""
    return any("permissions violation" in r.lower() and f'"{subject.lower()}"' in r.lower() for r in refusals)


async def collect(
    nc: NATS, subject: str, wanted: Callable[[Msg], bool] = lambda _: True
) -> tuple[list[Msg], asyncio.Event]:
    """Every message the server lets this connection see on `subject` from now on, and an event set once a
    wanted one came."""
    seen: list[Msg] = []
    came = asyncio.Event()

    async def keep(msg: Msg) -> None:
        seen.append(msg)
        if wanted(msg):
            came.set()

    await nc.subscribe(subject, cb=keep)
    await nc.flush()
    return seen, came


async def within(came: asyncio.Event, timeout_s: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(came.wait(), timeout_s)


@pytest.mark.parametrize("user", NOT_AUDIT)
async def test_a_forged_event_cannot_be_injected_into_the_audit_consumers_inbox(api: Api, user: str) -> None:
    forged = an_event(credential_label=f"forged by {user}", ip="198.51.100.66")
    async with connected_as(api, user) as (nc, refusals):
        # The audit service asks for its next batch every second; the request's reply subject is its inbox.
        requests, came = await collect(nc, next_requests := f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.>")
        await within(came, 3)
        for request in requests[:3]:
            await nc.publish(request.reply, forged.SerializeToString())
        await nc.flush()
        await asyncio.sleep(0.2)

    await asyncio.sleep(2)  # a batch the consumer took would be chained by now
    assert await stored_event_ids(api.system.info()["database_url"], [forged.event_id]) == []
    assert requests == [], "learnt the audit consumer's reply inbox"
    assert refused(refusals, next_requests), refusals


@pytest.mark.parametrize("user", NOT_AUDIT)
@pytest.mark.parametrize("inbox", ["_INBOX.>", "_INBOX_audit.>"])
async def test_the_audit_deliveries_cannot_be_read(api: Api, admin: Session, user: str, inbox: str) -> None:
    label = f"read by {user} {uuid.uuid4()}"
    async with connected_as(api, user) as (nc, refusals):
        _, came = await collect(nc, inbox, lambda msg: label.encode() in msg.data)
        await create(api, admin, await new_client(api, admin), label=label, secret="s3cret")
        await within(came, 5)

    assert not came.is_set(), "read an audit event on its way to the audit service"
    assert refused(refusals, inbox), refusals


@pytest.mark.parametrize("user", NOT_AUDIT)
@pytest.mark.parametrize("how", ["sources", "mirror"])
async def test_no_stream_can_copy_the_audit_stream(api: Api, user: str, how: str) -> None:
    name = f"COPY_{user}_{uuid.uuid4().hex[:8]}"
    origin = StreamSource(name=STREAM)
    config = StreamConfig(
        name=name, storage=StorageType.MEMORY, **({"sources": [origin]} if how == "sources" else {"mirror": origin})
    )
    async with connected_as(api, user) as (nc, refusals):
        with suppress(nats.errors.TimeoutError):
            await nc.jetstream(timeout=1).add_stream(config)
        await nc.flush()

    async with as_operator(api) as operator:
        names = await operator.jetstream().streams_info()
        copied = name in [stream.config.name for stream in names]
        if copied:
            await operator.jetstream().delete_stream(name)
    assert not copied, f"{user} created a stream that copies {STREAM}"
    assert refused(refusals, f"$JS.API.STREAM.CREATE.{name}"), refusals


async def consumer_state(operator: NATS, stream: str, consumer: str) -> dict[str, Any]:
    reply = await operator.request(f"$JS.API.CONSUMER.INFO.{stream}.{consumer}", b"", timeout=2)
    return json.loads(reply.data)  # type: ignore[no-any-return]


@pytest.mark.parametrize("user", NOT_AUDIT)
async def test_the_audit_consumer_cannot_be_paused(api: Api, user: str) -> None:
    pause = f"$JS.API.CONSUMER.PAUSE.{STREAM}.{DURABLE}"
    async with connected_as(api, user) as (nc, refusals):
        with suppress(nats.errors.TimeoutError):
            await nc.request(pause, json.dumps({"pause_until": "2099-01-01T00:00:00Z"}).encode(), timeout=1)
        await nc.flush()

    async with as_operator(api) as operator:
        paused = (await consumer_state(operator, STREAM, DURABLE)).get("paused", False)
        if paused:
            await operator.request(pause, b"{}", timeout=2)  # resume, for the tests after this one
    assert not paused, f"{user} paused the audit consumer"
    assert refused(refusals, pause), refusals


@pytest.mark.parametrize("user", NOT_AUDIT)
async def test_the_audit_consumer_cannot_be_deleted(api: Api, user: str) -> None:
    async with connected_as(api, user) as (nc, refusals):
        with suppress(nats.errors.TimeoutError):
            await nc.jetstream(timeout=1).delete_consumer(STREAM, DURABLE)
        await nc.flush()

    async with as_operator(api) as operator:
        assert "error" not in await consumer_state(operator, STREAM, DURABLE), f"{user} deleted the audit consumer"
    assert refused(refusals, f"$JS.API.CONSUMER.DELETE.{STREAM}.{DURABLE}"), refusals


async def watchers(api: Api) -> list[str]:
    async with as_operator(api) as operator:
        return [c.name for c in await operator.jetstream().consumers_info(REVOCATIONS)]


@pytest.mark.parametrize("user", PROCESSES)
async def test_the_revocation_watchers_cannot_be_deleted(api: Api, user: str) -> None:
    for _ in range(300):  # every process watches the bucket (again, after an attack on main succeeded)
        before = await watchers(api)  # what the thief could list before: its user may not list them now
        if len(before) >= len(PROCESSES):
            break
        await asyncio.sleep(0.1)
    assert len(before) >= len(PROCESSES), before
    async with connected_as(api, user) as (nc, refusals):
        for name in before:
            with suppress(nats.errors.TimeoutError, nats.js.errors.NotFoundError):
                await nc.jetstream(timeout=1).delete_consumer(REVOCATIONS, name)
        await nc.flush()

    assert set(before) <= set(await watchers(api)), f"{user} deleted revocation watchers"
    assert refused(refusals, f"$JS.API.CONSUMER.DELETE.{REVOCATIONS}.{before[0]}"), refusals
