"""Under `clientvault up` every process has its own NATS user: only the vault writes audit events, only auth
writes revocations, only the audit service consumes the AUDIT stream, and no process can purge or delete a
stream. So a compromised gateway (the one process facing the internet) cannot forge, steal or erase audit
events, nor lift a revocation. The operator user (system.json, for the CLI) may do anything.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import pytest
from nats.aio.client import Client as NATS

from clientvault.events import STREAM
from clientvault.nats_access import BUCKET, CLIENT_NAME, PERMISSIONS
from services.audit.consumer import DURABLE
from tests.system import Api

# A refused JetStream request gets no answer; it fails when the request times out (nats-py's default: 5 s).
REFUSED_AFTER_S = 2.0

pytestmark = pytest.mark.skipif(bool(os.environ.get("NATS_URL")), reason="an external NATS server's users are its own")


@asynccontextmanager
async def connected_as(api: Api, user: str) -> AsyncIterator[tuple[NATS, list[str]]]:
    """A connection as one of the processes' NATS users, and the errors the server sent it."""
    address = api.system.info()["nats_url"].rsplit("@", 1)[1]
    password = api.system.secrets()[f"nats_{user}_password"]
    refusals: list[str] = []

    async def on_error(error: Exception) -> None:
        refusals.append(str(error))

    # With the user's own inbox prefix, the one its replies may come to (clientvault/nats_access.py).
    nc = await nats.connect(
        f"nats://{user}:{password}@{address}", inbox_prefix=f"_INBOX_{user}", error_cb=on_error, allow_reconnect=False
    )
    try:
        yield nc, refusals
    finally:
        await nc.close()


async def stream_has(api: Api, subject: str) -> bool:
    nc = await nats.connect(api.system.info()["nats_url"])  # the operator
    try:
        await nc.jetstream().get_last_msg(STREAM, subject)
        return True
    except nats.js.errors.NotFoundError:
        return False
    finally:
        await nc.close()


@pytest.mark.parametrize("user", [u for u in PERMISSIONS if u != "vault"])
async def test_only_the_vault_can_write_an_audit_event(api: Api, user: str) -> None:
    subject = f"audit.vault.forged-{uuid.uuid4().hex}"
    async with connected_as(api, user) as (nc, refusals):
        with pytest.raises(nats.errors.TimeoutError):  # refused: no stream ever acknowledges it
            await nc.jetstream(timeout=REFUSED_AFTER_S).publish(subject, b"forged", timeout=1)
        await nc.flush()

    assert any("permissions violation" in r.lower() for r in refusals), refusals
    assert not await stream_has(api, subject)


@pytest.mark.parametrize("user", [u for u in PERMISSIONS if u != "auth"])
async def test_only_auth_can_write_a_revocation(api: Api, user: str) -> None:
    async with connected_as(api, user) as (nc, refusals):
        bucket = await nc.jetstream(timeout=REFUSED_AFTER_S).key_value(BUCKET)
        with pytest.raises(nats.errors.TimeoutError):
            await bucket.put(f"user.{uuid.uuid4()}", b"0")
        await nc.flush()

    assert any("permissions violation" in r.lower() for r in refusals), refusals


@pytest.mark.parametrize("user", list(PERMISSIONS))
async def test_no_process_can_purge_the_audit_stream(api: Api, user: str) -> None:
    async with connected_as(api, user) as (nc, refusals):
        with pytest.raises(nats.errors.TimeoutError):
            await nc.jetstream(timeout=REFUSED_AFTER_S).purge_stream(STREAM)
        await nc.flush()

    assert any("permissions violation" in r.lower() for r in refusals), refusals


@pytest.mark.parametrize("user", [u for u in PERMISSIONS if u != "audit"])
async def test_only_the_audit_service_can_take_events_from_its_consumer(api: Api, user: str) -> None:
    async with connected_as(api, user) as (nc, refusals):
        subscription = await nc.jetstream(timeout=REFUSED_AFTER_S).pull_subscribe_bind(DURABLE, stream=STREAM)
        with pytest.raises(nats.errors.TimeoutError):
            await subscription.fetch(1, timeout=1)
        await nc.flush()

    assert any("permissions violation" in r.lower() for r in refusals), refusals


@pytest.mark.parametrize("user", [u for u in PERMISSIONS if u != "audit"])
async def test_only_the_audit_service_can_read_messages_of_the_audit_stream(api: Api, user: str) -> None:
    async with connected_as(api, user) as (nc, refusals):
        with pytest.raises(nats.errors.TimeoutError):
            await nc.jetstream(timeout=REFUSED_AFTER_S).get_last_msg(STREAM, "audit.vault.credential_reveal")
        await nc.flush()

    assert any("permissions violation" in r.lower() for r in refusals), refusals


@pytest.mark.parametrize("user", list(PERMISSIONS))
async def test_no_process_can_listen_to_the_audit_subjects(api: Api, user: str) -> None:
    async with connected_as(api, user) as (nc, refusals):
        await nc.subscribe("audit.>")
        await nc.flush()
        await asyncio.sleep(0.2)  # the refusal comes asynchronously

    assert any("permissions violation for subscription" in r.lower() for r in refusals), refusals


def test_every_process_works_within_its_allow_list(api: Api) -> None:
    """nats-server logs each refusal with the connection's name: none is a process's own (by now the suite has
    signed in and out, created, revealed and audited; the attack tests' connections are unnamed)."""
    log = (api.system.data_dir / "logs" / "nats.log").read_text()
    violations = [line for line in log.splitlines() if "Violation" in line and f':{CLIENT_NAME}"' in line]
    assert violations == []
