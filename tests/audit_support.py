"""What the audit tests share: reading the audit log (through the gateway and the table) and waiting for it."""

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any

import psycopg

from clientvault import ed25519
from clientvault.events import EventSigner, decode
from clientvault.v1 import events_pb2
from services.audit.chain import Entry
from tests.system import Api, Session, System


def vault_signer(system: System) -> EventSigner:
    """The running system's vault event key (from its data dir): what an attacker holding the vault pod has."""
    return EventSigner("vault", ed25519.private_key(system.secrets()["vault_event_signing_key"], "secrets.json"))


def signed(event: events_pb2.AuditEvent, signer: EventSigner) -> events_pb2.AuditEvent:
    """The event as its producer publishes it: with its key id and signature."""
    facts = decode(event.SerializeToString())
    assert isinstance(facts, Entry), facts
    return signer.event(facts)


async def record_as_sent(database_url: str, events: Iterable[events_pb2.AuditEvent]) -> None:
    """Puts the events into the vault's outbox as sent, as the vault would have before publishing them itself:
    so `audit verify` finds that a producer sent what a test publishes by hand."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for event in events:
            facts = decode(event.SerializeToString())
            assert isinstance(facts, Entry), facts
            await conn.execute(
                "INSERT INTO vault.outbox (event_id, action, occurred_at, user_id, user_email, user_full_name, "
                "credential_id, credential_label, client_id, ip, user_agent, request_id, sent_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) ON CONFLICT DO NOTHING",
                (
                    facts.event_id, facts.action, facts.occurred_at, facts.user_id, facts.user_email,
                    facts.user_full_name, facts.credential_id, facts.credential_label, facts.client_id,
                    facts.ip, facts.user_agent, facts.request_id,
                ),
            )  # fmt: skip


async def audit_logs(api: Api, admin: Session, **params: Any) -> dict[str, Any]:
    r = await api.raw.get("/audit-logs", headers=admin.headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def stored_event_ids(database_url: str, event_ids: Iterable[str]) -> list[str]:
    """The given event ids as stored in audit.events, once per row (so a duplicate shows twice)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "SELECT event_id FROM audit.events WHERE event_id = ANY(%s)", ([uuid.UUID(e) for e in event_ids],)
            )
        ).fetchall()
    return [str(row[0]) for row in rows]


async def outbox_sent(database_url: str, credential_ids: Iterable[str]) -> dict[str, bool]:
    """The vault's audit events about these credentials (every committed operation has one), each with
    whether the relay has published it."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "SELECT event_id, sent_at IS NOT NULL FROM vault.outbox WHERE credential_id = ANY(%s)",
                ([uuid.UUID(c) for c in credential_ids],),
            )
        ).fetchall()
    return {str(event_id): sent for event_id, sent in rows}


async def outbox_ids(database_url: str, credential_ids: Iterable[str]) -> list[str]:
    """The vault's audit events about these credentials (every committed operation has one)."""
    return list(await outbox_sent(database_url, credential_ids))


async def wait_for_audit(api: Api, admin: Session, credential_id: str, count: int, timeout_s: float = 20) -> Any:
    """The credential's page of the audit log once it has `count` entries (or the timeout passed)."""
    return await wait_for_entries(api, admin, count, timeout_s, credentialId=credential_id)


async def wait_for_entries(api: Api, admin: Session, count: int, timeout_s: float = 20, **params: Any) -> Any:
    """The page of the audit log that `params` filter, once it has `count` entries (or the timeout passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        page = await audit_logs(api, admin, **params)
        if page["total"] >= count or time.monotonic() > deadline:
            return page
        await asyncio.sleep(0.2)
