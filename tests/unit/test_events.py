"""The AUDIT stream's contract (clientvault/events.py): one vocabulary, one name per field, one builder."""

import dataclasses

from clientvault import events
from clientvault.convert import enum_name
from clientvault.v1 import events_pb2
from services.audit.chain import Entry
from services.audit.consumer import decode
from services.vault.store import outbox
from tests.unit.test_audit_chain import ENTRY


def test_the_actions_are_the_protos() -> None:
    numbers = [v.number for v in events_pb2.AuditAction.DESCRIPTOR.values if v.number]

    assert [enum_name(events_pb2.AuditAction.DESCRIPTOR, n) for n in numbers] == list(events.ACTIONS)


def test_a_field_has_one_name_from_the_outbox_through_the_proto_to_the_chain() -> None:
    proto = [f.name for f in events_pb2.AuditEvent.DESCRIPTOR.fields if not f.GetOptions().deprecated]

    assert sorted(proto) == sorted(events.FIELDS)
    assert [f.name for f in dataclasses.fields(Entry)] == list(events.FIELDS)
    relay_only = ("sent_at", "traceparent")  # the relay's bookkeeping, not the event's
    assert [c.name for c in outbox.columns if c.name not in relay_only] == list(events.FIELDS)


def test_an_entry_survives_the_wire() -> None:
    assert decode(events.audit_event(ENTRY).SerializeToString()) == ENTRY


def test_an_event_published_before_the_rename_still_decodes() -> None:
    legacy = events.audit_event(ENTRY)
    legacy.ClearField("user_id")
    legacy.ClearField("user_email")
    legacy.ClearField("user_full_name")
    legacy.actor.CopyFrom(
        events_pb2.LegacyActor(user_id=str(ENTRY.user_id), email=ENTRY.user_email, full_name=ENTRY.user_full_name)
    )

    assert decode(legacy.SerializeToString()) == ENTRY


def test_subjects_name_the_producer_and_the_action() -> None:
    assert events.subject("vault", events.AuditAction.CREDENTIAL_REVEAL) == "audit.vault.credential_reveal"
