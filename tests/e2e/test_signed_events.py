"""Signed audit events, tried as an attacker who holds the vault's NATS password (or the operator's): whatever they
publish on the vault's subjects, only events signed by the vault's own key reach the chain; everything else is a
dead letter with its reason. And as one who also holds the vault's signing key: the made-up event is chained (it
is genuinely signed), but `audit verify` reports it as an entry the vault never sent."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import psycopg
import pytest
from nats.aio.client import Client as NATS

from clientvault import ed25519
from clientvault.events import EventSigner
from tests.audit_support import record_as_sent, signed, stored_event_ids, vault_signer, wait_for_audit
from tests.e2e.test_audit_log import an_event
from tests.e2e.test_nats_permissions import connected_as
from tests.system import Api
from tests.vault_support import create, new_client

pytestmark = pytest.mark.skipif(
    bool(__import__("os").environ.get("NATS_URL")), reason="an external NATS server's users are its own"
)

REVEAL = "audit.vault.credential_reveal"


@asynccontextmanager
async def publisher(api: Api, who: str) -> AsyncIterator[NATS]:
    if who == "operator":
        nc = await nats.connect(api.system.info()["nats_url"])
        try:
            yield nc
        finally:
            await nc.close()
    else:
        async with connected_as(api, who) as (nc, _):
            yield nc


async def dead_letter_reasons(database_url: str, stream_seqs: list[int]) -> dict[int, str]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "SELECT stream_seq, reason FROM audit.dead_letters WHERE stream_seq = ANY(%s)", (stream_seqs,)
            )
        ).fetchall()
    return dict(rows)


@pytest.mark.parametrize("who", ["vault", "operator"])
async def test_an_unsigned_or_forged_event_never_reaches_the_chain(api: Api, who: str) -> None:
    info = api.system.info()
    vault = vault_signer(api.system)
    own_key = EventSigner("vault", ed25519.private_key(ed25519.generate(), "attacker"))
    unsigned = an_event(credential_label="unsigned", ip="198.51.100.66")
    self_signed = signed(an_event(credential_label="self-signed", ip="198.51.100.66"), own_key)
    edited = signed(an_event(credential_label="genuine"), vault)
    edited.ip, edited.user_email = "198.51.100.66", "ceo@example.com"  # changed after the vault signed it
    misfiled = signed(an_event(credential_label="on another action's subject"), vault)
    genuine = signed(an_event(credential_label="genuine, after them"), vault)
    await record_as_sent(info["database_url"], [genuine])

    async with publisher(api, who) as nc:
        js = nc.jetstream()
        acks = {
            "unsigned": await js.publish(REVEAL, unsigned.SerializeToString()),
            "self-signed": await js.publish(REVEAL, self_signed.SerializeToString()),
            "edited": await js.publish(REVEAL, edited.SerializeToString()),
            "misfiled": await js.publish("audit.vault.credential_delete", misfiled.SerializeToString()),
        }
        await js.publish(REVEAL, genuine.SerializeToString(), headers={"Nats-Msg-Id": genuine.event_id})

    admin = await api.session("admin")
    await wait_for_audit(api, admin, genuine.credential_id, 1)  # consumed after the others: they were handled
    forged = [unsigned, self_signed, edited, misfiled]
    assert await stored_event_ids(info["database_url"], [e.event_id for e in forged]) == []
    reasons = await dead_letter_reasons(info["database_url"], [ack.seq for ack in acks.values()])
    assert reasons[acks["unsigned"].seq] == "unsigned"
    assert reasons[acks["self-signed"].seq] == f"signed by unknown key {own_key.key_id}"
    assert reasons[acks["edited"].seq] == f"signature does not verify with key {vault.key_id}"
    assert reasons[acks["misfiled"].seq] == (
        "subject audit.vault.credential_delete does not name its action credential_reveal"
    )


async def test_a_signed_event_the_vault_never_sent_is_reported_by_verify(api: Api) -> None:
    """The worst case short of the database: the vault pod's signing key and NATS password both stolen."""
    info = api.system.info()
    made_up = signed(an_event(credential_label="made up", ip="198.51.100.66"), vault_signer(api.system))
    async with connected_as(api, "vault") as (nc, _):
        await nc.jetstream().publish(REVEAL, made_up.SerializeToString(), headers={"Nats-Msg-Id": made_up.event_id})
    await wait_for_audit(api, await api.session("admin"), made_up.credential_id, 1)

    done = api.system.cli("audit", "verify")
    await record_as_sent(info["database_url"], [made_up])  # so the run's later verifies pass again

    assert done.returncode == 1
    assert "audit log has entries no producer sent: 1 within the outbox's retention" in done.stderr
    assert f"(first: event {made_up.event_id}" in done.stderr
    assert api.system.cli("audit", "verify").returncode == 0


async def test_the_vault_signs_what_it_publishes_and_the_chain_keeps_the_signature(api: Api) -> None:
    admin = await api.session("admin")
    credential_id = await create(api, admin, await new_client(api, admin), label="signed", secret="s")
    await wait_for_audit(api, admin, credential_id, 1)
    async with await psycopg.AsyncConnection.connect(api.system.info()["database_url"], autocommit=True) as conn:
        row = await (
            await conn.execute(
                "SELECT key_id, length(signature) FROM audit.events WHERE credential_id = %s", (credential_id,)
            )
        ).fetchone()
    assert row == (vault_signer(api.system).key_id, 64)
