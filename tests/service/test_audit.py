"""The audit log on its own: appending to the chain (as the consumer does), and reading it back by gRPC with
filters, exact totals and pages."""

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from clientvault import ed25519
from clientvault.convert import timestamp
from clientvault.events import PRODUCER_OF, EventSigner, TrustedKeys
from clientvault.v1 import audit_pb2, events_pb2
from services.audit import chain
from tests.service.conftest import AUDIT_SIGNER, Service

# The vault's event key, as the consumer would have checked it before appending; the audit service's, which signs
# the reads.
SIGNER = EventSigner("vault", ed25519.private_key(ed25519.generate(), "test key"))
AUTH_SIGNER = EventSigner("auth", ed25519.private_key(ed25519.generate(), "test key"))
SIGNERS = {signer.producer: signer for signer in (SIGNER, AUTH_SIGNER)}
TRUSTED = TrustedKeys([SIGNER.trusted_entry, AUTH_SIGNER.trusted_entry, AUDIT_SIGNER.trusted_entry])

ACTIONS = {
    "credential_create": events_pb2.AUDIT_ACTION_CREDENTIAL_CREATE,
    "credential_reveal": events_pb2.AUDIT_ACTION_CREDENTIAL_REVEAL,
}


def entry(user_id: uuid.UUID, client_id: uuid.UUID, action: str = "credential_create", **about: object) -> chain.Entry:
    fields: dict[str, object] = {
        "event_id": uuid.uuid4(),
        "action": action,
        "occurred_at": datetime.now(UTC),
        "user_id": user_id,
        "user_email": "someone@example.com",
        "user_full_name": "Some One",
        "credential_id": uuid.uuid4(),
        "credential_label": "Router",
        "client_id": client_id,
        "ip": "203.0.113.9",
        "user_agent": "audit-test/1.0",
        "request_id": "req-1",
    }
    unsigned = chain.Entry(**(fields | about))  # type: ignore[arg-type]
    signer = SIGNERS[PRODUCER_OF[action]]
    return dataclasses.replace(unsigned, key_id=signer.key_id, signature=signer.signature(unsigned))


async def events(audit: Service, **request: Any) -> audit_pb2.ListEventsResponse:
    found: audit_pb2.ListEventsResponse = await audit.stub.ListEvents(
        audit_pb2.ListEventsRequest(**request), metadata=audit.tokens.metadata("admin"), timeout=5
    )
    return found


async def verified(audit: Service) -> chain.Verified:
    return await chain.verify(audit.db, TRUSTED, lambda _done, _total: None)


async def test_an_event_delivered_twice_is_stored_once_and_the_chain_verifies(audit: Service) -> None:
    user, client = uuid.uuid4(), uuid.uuid4()
    first, second = entry(user, client), entry(user, client, "credential_reveal")

    appended = await chain.append(audit.db, [first, first, second])
    redelivered = await chain.append(audit.db, [second])

    assert (appended.stored, appended.duplicates) == (2, 1)
    assert (redelivered.stored, redelivered.duplicates) == (0, 1)
    found = await events(audit, user_id=str(user))
    assert [e.event_id for e in found.items] == [str(second.event_id), str(first.event_id)]  # newest first
    assert found.items[1].user_email == "someone@example.com"
    assert (found.items[1].ip, found.items[1].user_agent) == ("203.0.113.9", "audit-test/1.0")
    assert (await verified(audit)).broken is None


async def test_appenders_at_once_never_fork_the_chain(audit: Service) -> None:
    user = uuid.uuid4()
    batches = [[entry(user, uuid.uuid4()) for _ in range(20)] for _ in range(5)]

    await asyncio.gather(*(chain.append(audit.db, batch) for batch in batches))

    rows = await audit.sql("SELECT seq FROM audit.events ORDER BY seq")
    assert [row[0] for row in rows] == list(range(1, len(rows) + 1))  # no gap, no seq twice
    assert (await events(audit, user_id=str(user))).total == 100
    assert (await verified(audit)).broken is None


async def test_filters_combine_and_totals_are_exact(audit: Service) -> None:
    user, other, client_a, client_b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    before = datetime.now(UTC) - timedelta(seconds=1)
    made = [
        entry(user, client_a),
        entry(user, client_a, "credential_reveal"),
        entry(user, client_a),
        entry(other, client_a),
        entry(user, client_b),
    ]
    await chain.append(audit.db, made)
    after = datetime.now(UTC) + timedelta(seconds=1)

    assert (await events(audit, client_id=str(client_a))).total == 4
    assert (await events(audit, user_id=str(user))).total == 4
    creates = await events(audit, client_id=str(client_a), action=ACTIONS["credential_create"])
    assert {e.event_id for e in creates.items} == {str(made[i].event_id) for i in (0, 2, 3)}
    assert creates.total == 3
    ranged = await events(audit, client_id=str(client_b), from_time=timestamp(before), to_time=timestamp(after))
    assert ([e.event_id for e in ranged.items], ranged.total) == ([str(made[4].event_id)], 1)
    empty = await events(audit, client_id=str(client_a), to_time=timestamp(before))
    assert (list(empty.items), empty.total) == ([], 0)
    by_user = await events(audit, user_id=str(user))
    pages = [await events(audit, user_id=str(user), page=n, page_size=3) for n in (1, 2, 3)]
    assert [p.total for p in pages] == [4, 4, 4]
    assert [len(p.items) for p in pages] == [3, 1, 0]
    assert [e.event_id for p in pages for e in p.items] == [e.event_id for e in by_user.items]  # nothing twice
    combined = [
        await events(audit, user_id=str(user), action=ACTIONS["credential_create"], page=n, page_size=1)
        for n in (1, 2, 3, 4)
    ]
    assert [c.total for c in combined] == [3, 3, 3, 3]
    assert [len(c.items) for c in combined] == [1, 1, 1, 0]
    default = await events(audit)
    assert (default.page, default.page_size) == (1, 50)


@pytest.mark.parametrize("role", ["manager", "read_only"])
async def test_only_admins_read_the_audit_log_even_by_direct_call(audit: Service, role: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await audit.stub.ListEvents(audit_pb2.ListEventsRequest(), metadata=audit.tokens.metadata(role), timeout=5)

    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_events_about_users_count_exactly_by_target_and_leave_the_other_dimensions_whole(audit: Service) -> None:
    actor, target, client = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    about_user = {"credential_id": None, "credential_label": "", "target_user_id": target}
    made = [
        entry(actor, client),
        entry(actor, None, "user_updated", **about_user, detail='{"role":{"from":"manager","to":"admin"}}'),  # type: ignore[arg-type]
        entry(None, None, "sign_in_failed", **about_user),  # type: ignore[arg-type]  # nobody signed in
        entry(actor, None, "user_created", **about_user),  # type: ignore[arg-type]
    ]
    await chain.append(audit.db, made)

    by_target = await events(audit, target_user_id=str(target))
    pages = [await events(audit, target_user_id=str(target), page=n, page_size=2) for n in (1, 2)]
    assert (by_target.total, [e.event_id for e in by_target.items]) == (3, [str(e.event_id) for e in made[:0:-1]])
    assert [p.total for p in pages] == [3, 3]
    assert [e.event_id for p in pages for e in p.items] == [e.event_id for e in by_target.items]
    assert (await events(audit, user_id=str(actor))).total == 3
    assert (await events(audit, client_id=str(client))).total == 1  # the user events name no client
    assert (by_target.items[1].user_id, by_target.items[1].credential_id) == ("", "")
    assert (await verified(audit)).broken is None
    ordinals = await audit.sql(
        "SELECT credential_id_ordinal, client_id_ordinal, target_user_id_ordinal FROM audit.events WHERE event_id = %s",
        made[1].event_id,
    )
    assert list(ordinals[0]) == [None, None, 1]


async def test_every_read_is_recorded_signed_with_who_and_which_filters(audit: Service) -> None:
    looked_for = uuid.uuid4()

    await events(audit, target_user_id=str(looked_for), page_size=5)

    rows = await audit.sql(
        "SELECT user_id, detail, key_id FROM audit.events WHERE action = 'audit_log_read' AND detail LIKE %s",
        f"%{looked_for}%",
    )
    assert len(rows) == 1
    assert rows[0][1] == f'{{"filters":{{"target_user_id":"{looked_for}"}},"page":1,"page_size":5}}'
    assert rows[0][2] == AUDIT_SIGNER.key_id
    assert (await verified(audit)).broken is None
