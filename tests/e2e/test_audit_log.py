"""The audit service end to end: every vault operation in GET /audit-logs once, filters, totals, the
append-only grant, duplicates and malformed messages on the stream."""

import asyncio
import os
import uuid
from collections import Counter
from datetime import UTC, datetime

import nats
import psycopg
import pytest

from clientvault.convert import timestamp
from clientvault.v1 import events_pb2
from tests.audit_support import (
    audit_logs,
    outbox_ids,
    record_as_sent,
    signed,
    stored_event_ids,
    vault_signer,
    wait_for_audit,
)
from tests.system import Api, Session
from tests.vault_support import create, new_client

PROBLEM = "application/problem+json"


async def four_operations(api: Api, session: Session, client_id: str, label: str, admin: Session) -> str:
    """create, reveal, update (a rename) by `session`; delete by the admin (only admins delete)."""
    credential_id = await create(api, session, client_id, label=label, secret="s3cret")
    base = f"/clients/{client_id}/credentials/{credential_id}"
    assert (await api.raw.get(base, headers=session.headers)).status_code == 200
    assert (await api.raw.patch(base, headers=session.headers, json={"label": label + " renamed"})).status_code == 200
    assert (await api.raw.delete(base, headers=admin.headers)).status_code == 204
    return credential_id


async def test_every_operation_appears_once_as_it_was(api: Api, admin: Session) -> None:
    manager = await api.session("manager")
    client_id = await new_client(api, admin)
    credential_id = await four_operations(api, manager, client_id, "Router", admin)

    page = await wait_for_audit(api, admin, credential_id, 4)

    assert page["total"] == 4
    assert [e["action"] for e in page["items"]] == [
        "credential_delete",
        "credential_update",
        "credential_reveal",
        "credential_create",
    ]  # newest first
    database_url = api.system.info()["database_url"]
    expected = sorted(await outbox_ids(database_url, [credential_id]))
    assert sorted(e["id"] for e in page["items"]) == expected  # the vault's own event ids, each once
    assert sorted(await stored_event_ids(database_url, expected)) == expected
    me = (await api.raw.get("/users/me", headers=manager.headers)).json()
    create_entry = page["items"][3]
    assert set(create_entry) == {
        "id", "action", "occurredAt", "userId", "user", "credentialId", "credential", "clientId", "ip", "userAgent",
    }  # fmt: skip
    assert create_entry["userId"] == me["id"]
    assert create_entry["user"] == {"fullName": me["fullName"], "email": me["email"]}
    assert create_entry["credential"] == {"label": "Router", "clientId": client_id}  # the label back then
    assert page["items"][0]["credential"]["label"] == "Router renamed"
    assert create_entry["credentialId"] == credential_id
    assert create_entry["clientId"] == client_id
    assert create_entry["ip"] == "127.0.0.1"
    assert create_entry["userAgent"].startswith("python-httpx")
    assert create_entry["occurredAt"].endswith("Z")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"credentialId": "not-a-uuid"}, "credentialId"),
        ({"userId": "42"}, "userId"),
        ({"clientId": "zz"}, "clientId"),
        ({"action": "credential_steal"}, "action"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-01-01T00:00:00"}, "to"),  # no offset: not RFC 3339
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"pageSize": "101"}, "pageSize"),
        ({"page": "0"}, "page"),
    ],
)
async def test_bad_filters_are_422_with_a_reason(api: Api, admin: Session, params: dict[str, str], field: str) -> None:
    r = await api.raw.get("/audit-logs", headers=admin.headers, params=params)

    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert r.json()["errors"][0]["message"]


@pytest.mark.parametrize("role", ["manager", "read_only"])
async def test_only_admins_read_the_audit_log(api: Api, role: str) -> None:
    session = await api.session(role)

    r = await api.raw.get("/audit-logs", headers=session.headers)

    assert r.status_code == 403
    assert (await api.raw.get("/audit-logs")).status_code == 401


async def test_the_store_is_append_only_for_the_audit_role(api: Api, admin: Session) -> None:
    client_id = await new_client(api, admin)
    credential_id = await create(api, admin, client_id, label="grant", secret="x")
    await wait_for_audit(api, admin, credential_id, 1)
    database_url = api.system.info()["database_url"]

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("SET ROLE clientvault_audit_writer")
        count = (await (await conn.execute("SELECT count(*) FROM audit.events")).fetchone() or [0])[0]
        assert count >= 1  # it reads
        for statement in (
            "UPDATE audit.events SET credential_label = 'forged' WHERE credential_id = %s",
            "DELETE FROM audit.events WHERE credential_id = %s",
            "UPDATE audit.dead_letters SET reason = 'forged' WHERE msg_id = %s::text",
            "DELETE FROM audit.dead_letters WHERE msg_id = %s::text",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(statement, (uuid.UUID(credential_id),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("TRUNCATE audit.events")
    page = await audit_logs(api, admin, credentialId=credential_id)
    assert page["items"][0]["credential"]["label"] == "grant"


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="an external database's roles are the operator's")
async def test_under_up_the_audit_service_connects_as_the_append_only_role(api: Api) -> None:
    async with await psycopg.AsyncConnection.connect(api.system.info()["database_url"], autocommit=True) as conn:
        logins = await (
            await conn.execute(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name = 'clientvault-audit'"
            )
        ).fetchall()
        member = await (
            await conn.execute("SELECT pg_has_role('clientvault_audit', 'clientvault_audit_writer', 'MEMBER')")
        ).fetchone()
        superuser = await (
            await conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'clientvault_audit'")
        ).fetchone()

    assert logins == [("clientvault_audit",)]
    assert member == (True,)
    assert superuser == (False,)


def an_event(**overrides: object) -> events_pb2.AuditEvent:
    event = events_pb2.AuditEvent(
        event_id=str(uuid.uuid4()),
        action=events_pb2.AUDIT_ACTION_CREDENTIAL_REVEAL,
        occurred_at=timestamp(datetime.now(UTC)),
        user_id=str(uuid.uuid4()),
        user_email="e@example.com",
        user_full_name="E",
        credential_id=str(uuid.uuid4()),
        credential_label="direct",
        client_id=str(uuid.uuid4()),
        ip="10.0.0.1",
        user_agent="test",
        request_id="r1",
    )
    for name, value in overrides.items():
        setattr(event, name, value)
    return event


async def test_duplicates_are_stored_once_and_malformed_messages_are_parked_without_blocking(
    api: Api, admin: Session
) -> None:
    info = api.system.info()
    vault = vault_signer(api.system)
    duplicated, after = signed(an_event(), vault), signed(an_event(), vault)
    unknown_action = an_event(action=99)
    bad_id = an_event(credential_id="nope")
    await record_as_sent(info["database_url"], [duplicated, after])
    nc = await nats.connect(info["nats_url"])
    try:
        js = nc.jetstream()
        # Different Nats-Msg-Ids, so JetStream keeps both copies: the audit service must drop one.
        for _ in range(3):
            await js.publish("audit.vault.credential_reveal", duplicated.SerializeToString(),
                             headers={"Nats-Msg-Id": str(uuid.uuid4())})  # fmt: skip
        garbage = await js.publish("audit.vault.credential_reveal", b"\xff\x00 not protobuf")
        unknown = await js.publish("audit.vault.credential_reveal", unknown_action.SerializeToString())
        no_uuid = await js.publish("audit.vault.credential_reveal", bad_id.SerializeToString())
        await js.publish("audit.vault.credential_reveal", after.SerializeToString(),
                         headers={"Nats-Msg-Id": after.event_id})  # fmt: skip
    finally:
        await nc.close()

    page = await wait_for_audit(api, admin, after.credential_id, 1)
    assert [e["id"] for e in page["items"]] == [after.event_id]  # not blocked by the malformed ones
    once = await wait_for_audit(api, admin, duplicated.credential_id, 1)
    await asyncio.sleep(1)
    assert [e["id"] for e in (await audit_logs(api, admin, credentialId=duplicated.credential_id))["items"]] == [
        duplicated.event_id
    ]
    assert once["total"] == 1
    assert Counter(await stored_event_ids(info["database_url"], [duplicated.event_id])) == {duplicated.event_id: 1}
    async with await psycopg.AsyncConnection.connect(info["database_url"], autocommit=True) as conn:
        parked = await (
            await conn.execute(
                "SELECT stream_seq, reason, data FROM audit.dead_letters WHERE stream_seq = ANY(%s)",
                ([garbage.seq, unknown.seq, no_uuid.seq],),
            )
        ).fetchall()
    reasons = {seq: (reason, bytes(data)) for seq, reason, data in parked}
    assert set(reasons) == {garbage.seq, unknown.seq, no_uuid.seq}
    assert reasons[garbage.seq] == ("not an AuditEvent (undecodable protobuf)", b"\xff\x00 not protobuf")
    assert reasons[unknown.seq][0] == "unknown action 99"
    assert reasons[no_uuid.seq][0] == "credential_id is not a UUID"
