"""The AUDIT stream's contract (clientvault/events.py): one vocabulary, one name per field, one builder."""

import dataclasses
import json
import uuid

import pytest

from clientvault import ed25519, events
from clientvault.convert import enum_name
from clientvault.errors import Misconfigured
from clientvault.events import decode
from clientvault.v1 import events_pb2
from services.audit.chain import Entry
from services.vault.store import outbox
from tests.unit.test_audit_chain import ENTRY


def test_the_actions_are_the_protos() -> None:
    numbers = [v.number for v in events_pb2.AuditAction.DESCRIPTOR.values if v.number]

    assert [enum_name(events_pb2.AuditAction.DESCRIPTOR, n) for n in numbers] == list(events.ACTIONS)


def test_a_field_has_one_name_from_the_outbox_through_the_proto_to_the_chain() -> None:
    proto = [f.name for f in events_pb2.AuditEvent.DESCRIPTOR.fields if not f.GetOptions().deprecated]

    assert sorted(proto) == sorted(events.FIELDS + events.SIGNATURE_FIELDS)
    assert [f.name for f in dataclasses.fields(Entry)] == list(events.FIELDS + events.SIGNATURE_FIELDS)
    relay_only = ("sent_at", "traceparent")  # the relay's bookkeeping, not the event's
    assert [c.name for c in outbox.columns if c.name not in relay_only] == list(events.FIELDS)


def test_an_entry_survives_the_wire_with_its_signature() -> None:
    signer = events.EventSigner("vault", ed25519.private_key(ed25519.generate(), "test"))
    signed = decode(signer.event(ENTRY).SerializeToString())

    assert isinstance(signed, Entry)
    assert dataclasses.replace(signed, key_id=None, signature=None) == ENTRY
    assert signed.key_id == signer.key_id
    assert events.TrustedKeys([signer.trusted_entry]).problem(signed, signer.key_id, signed.signature or b"") is None


def test_a_chain_signed_with_openssl_verifies_after_the_switch_to_libsodium_and_the_other_way() -> None:
    """Entries stored before events were signed with libsodium carry OpenSSL's signatures (and an operator's
    `audit verify` may run either): the same Ed25519, byte for byte, on the same key."""
    key = ed25519.private_key(ed25519.generate(), "test")
    signer = events.EventSigner("vault", key)
    encoded = events.canonical(ENTRY, signer.key_id)
    trusted = events.TrustedKeys([signer.trusted_entry])

    by_openssl = key.sign(encoded)

    assert signer.signature(ENTRY) == by_openssl  # deterministic: the same bytes from both libraries
    assert trusted.problem(ENTRY, signer.key_id, by_openssl) is None
    key.public_key().verify(signer.signature(ENTRY), encoded)  # raises if OpenSSL disagreed
    assert (
        trusted.problem(ENTRY, signer.key_id, by_openssl[:-1]) == f"signature does not verify with key {signer.key_id}"
    )


def test_every_action_has_exactly_one_producer() -> None:
    assert set(events.PRODUCER_OF) == set(events.ACTIONS)
    assert events.PRODUCER_OF["sign_in"] == "auth"
    assert events.PRODUCER_OF["reveal_denied"] == "vault"
    assert events.PRODUCER_OF["audit_log_read"] == "audit"


LIFECYCLE_ACTIONS = ("credential_version_reveal", "credential_restore", "credential_purge", "client_shredded")


def test_the_secret_lifecycles_actions_are_the_vaults_numbered_after_the_others() -> None:
    numbers = {
        enum_name(events_pb2.AuditAction.DESCRIPTOR, v.number): v.number
        for v in events_pb2.AuditAction.DESCRIPTOR.values
    }

    assert [numbers[action] for action in LIFECYCLE_ACTIONS] == [21, 22, 23, 24]
    assert (numbers["credential_delete"], numbers["audit_log_read"]) == (4, 20)  # numbers already sent never move
    assert {events.PRODUCER_OF[action] for action in LIFECYCLE_ACTIONS} == {"vault"}


def test_a_purge_by_no_user_and_a_shred_of_no_credential_verify_under_the_vaults_key_alone() -> None:
    vault, auth = (events.EventSigner(p, ed25519.private_key(ed25519.generate(), "test")) for p in ("vault", "auth"))
    trusted = events.TrustedKeys([vault.trusted_entry, auth.trusted_entry])
    purge = dataclasses.replace(
        ENTRY, action="credential_purge", user_id=None, user_email="", user_full_name="vault (trash purge)"
    )
    shred = dataclasses.replace(
        ENTRY,
        action="client_shredded",
        credential_id=None,
        credential_label="",
        detail=events.detail_text({"credentials": 3, "versions": 2, "data_keys": 1, "generations": [1]}),
    )

    for entry in (purge, shred):
        assert json.loads(events.canonical(entry, vault.key_id))["v"] == events.SUBJECT_VERSION
        assert trusted.problem(entry, vault.key_id, vault.signature(entry)) is None
        assert trusted.problem(entry, auth.key_id, auth.signature(entry)) == f"auth may not sign {entry.action} events"
    assert shred.detail == '{"credentials":3,"data_keys":1,"generations":[1],"versions":2}'


def test_every_outbox_has_the_kits_shape() -> None:
    from services.auth.store import outbox as auth_outbox

    assert [c.name for c in auth_outbox.columns] == [c.name for c in outbox.columns]


def test_subjects_name_the_producer_and_the_action() -> None:
    assert events.subject("vault", events.AuditAction.CREDENTIAL_REVEAL) == "audit.vault.credential_reveal"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("action", "credential_delete"),
        ("user_email", "ceo@example.com"),
        ("ip", "198.51.100.66"),
        ("credential_label", "other"),
        ("request_id", "r2"),
        ("user_id", uuid.uuid4()),
        ("occurred_at", ENTRY.occurred_at.replace(microsecond=0)),
        ("target_user_id", uuid.uuid4()),
        ("target_user_email", "ceo@example.com"),
        ("detail", '{"role":"admin"}'),
        ("credential_id", None),
    ],
)
def test_a_field_changed_after_signing_fails_the_signature(field: str, value: object) -> None:
    signer = events.EventSigner("vault", ed25519.private_key(ed25519.generate(), "test"))
    trusted = events.TrustedKeys([signer.trusted_entry])
    signature = signer.signature(ENTRY)

    assert trusted.problem(ENTRY, signer.key_id, signature) is None
    changed = dataclasses.replace(ENTRY, **{field: value})  # type: ignore[arg-type]
    assert trusted.problem(changed, signer.key_id, signature) == f"signature does not verify with key {signer.key_id}"


def test_a_producer_signs_only_its_own_actions_and_under_its_own_subject() -> None:
    signer = events.EventSigner("vault", ed25519.private_key(ed25519.generate(), "test"))
    trusted = events.TrustedKeys([signer.trusted_entry])
    signature = signer.signature(ENTRY)

    assert trusted.problem(ENTRY, signer.key_id, signature, producer="auth") == (
        f"published as auth but signed by vault's key {signer.key_id}"
    )
    assert trusted.problem(ENTRY, "", b"") == "unsigned"


@pytest.mark.parametrize("entry", ["vault", "nobody:AAAA", "vault:not base64!", "vault:" + "A" * 8])
def test_a_bad_trusted_key_setting_is_refused_with_its_reason(entry: str) -> None:
    with pytest.raises(Misconfigured) as refused:
        events.TrustedKeys.from_setting([entry])
    assert "CLIENTVAULT_EVENT_PUBLIC_KEYS" in str(refused.value)
    assert "AAAA" not in str(refused.value)


def test_no_trusted_key_at_all_is_refused() -> None:
    with pytest.raises(Misconfigured, match="CLIENTVAULT_EVENT_PUBLIC_KEYS is not set"):
        events.TrustedKeys.from_setting([])


def test_a_detail_leaves_out_the_keys_without_a_value() -> None:
    assert events.detail_text({"reason": None, "version": 3, "grantId": None}) == '{"version":3}'
    assert events.detail_text({"reason": None}) == ""
    assert events.detail_text(None) == ""
