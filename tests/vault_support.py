"""What the vault tests share: clients to put credentials under, and reading the audit stream back."""

import asyncio
import time
import uuid
from typing import Any

import nats
from google.protobuf.message import DecodeError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from clientvault.v1 import events_pb2
from tests.system import Api, Session


async def new_client(api: Api, admin: Session) -> str:
    """A client (of the clients service) to keep credentials under."""
    r = await api.raw.post("/clients", headers=admin.headers, json={"name": f"Acme {uuid.uuid4()}"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def create(api: Api, session: Session, client_id: str, **body: Any) -> str:
    r = await api.raw.post(f"/clients/{client_id}/credentials", headers=session.headers, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def stream_events(nats_url: str) -> list[tuple[str, str, events_pb2.AuditEvent]]:
    """Every message in the AUDIT stream: (Nats-Msg-Id, subject, event)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("AUDIT")
        total = info.state.messages
        sub = await js.pull_subscribe(
            "audit.>",
            stream="AUDIT",
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30),
        )
        found: list[tuple[str, str, events_pb2.AuditEvent]] = []
        while len(found) < total:
            for msg in await sub.fetch(min(1000, total - len(found)), timeout=5):
                try:
                    event = events_pb2.AuditEvent.FromString(msg.data)
                except DecodeError:  # the audit tests publish garbage on purpose (it gets parked)
                    event = events_pb2.AuditEvent()
                found.append(((msg.headers or {}).get("Nats-Msg-Id", ""), msg.subject, event))
        await sub.unsubscribe()
        return found
    finally:
        await nc.close()


async def events_for(nats_url: str, credential_id: str, count: int, timeout_s: float = 15) -> list[Any]:
    """The stream's events about one credential, once there are `count` of them (or the timeout passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [e for e in await stream_events(nats_url) if e[2].credential_id == credential_id]
        if len(found) >= count or time.monotonic() > deadline:
            return sorted(found, key=lambda e: (e[2].occurred_at.seconds, e[2].occurred_at.nanos))
        await asyncio.sleep(0.3)
