"""What the consumer parks instead of storing: anything that would fail the batch's transaction."""

import uuid

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from clientvault.events import Malformed, decode
from clientvault.v1 import events_pb2
from services.audit.chain import Entry


def an_event() -> events_pb2.AuditEvent:
    return events_pb2.AuditEvent(
        event_id=str(uuid.uuid4()),
        action=events_pb2.AUDIT_ACTION_CREDENTIAL_UPDATE,
        occurred_at=Timestamp(seconds=1_790_000_000, nanos=123_456_789),
        user_id=str(uuid.uuid4()),
        user_email="a@example.com",
        user_full_name="A",
        credential_id=str(uuid.uuid4()),
        credential_label="label",
        client_id=str(uuid.uuid4()),
    )


def test_a_good_event_decodes_to_microseconds() -> None:
    entry = decode(an_event().SerializeToString())

    assert isinstance(entry, Entry)
    assert entry.action == "credential_update"
    assert entry.occurred_at.microsecond == 123_456  # what PostgreSQL keeps, so the hash matches on reread


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: setattr(e, "action", 0), "unknown action 0"),
        (lambda e: e.ClearField("occurred_at"), "no occurred_at"),
        (lambda e: setattr(e.occurred_at, "seconds", 10**12), "occurred_at is out of range"),
        (lambda e: setattr(e, "event_id", ""), "event_id is not a UUID"),
        (lambda e: setattr(e, "user_id", "x"), "user_id is not a UUID"),
        (lambda e: setattr(e, "client_id", "1"), "client_id is not a UUID"),
        (lambda e: setattr(e, "credential_label", "a\x00b"), "a text field contains NUL"),
    ],
)
def test_a_malformed_event_is_parked_with_its_reason(change: object, reason: str) -> None:
    event = an_event()
    change(event)  # type: ignore[operator]

    assert decode(event.SerializeToString()) == Malformed(reason)


def test_bytes_that_are_not_an_event_are_parked() -> None:
    assert decode(b"\xff\x00 junk") == Malformed("not an AuditEvent (undecodable protobuf)")
