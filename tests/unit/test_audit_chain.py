"""The chain's canonical encoding is a stored format: these bytes and hashes must never change (v1 unsigned, v2
signed, v3 signed with a subject user, a detail or an absent id)."""

import dataclasses
from datetime import UTC, datetime
from uuid import UUID

from clientvault.events import canonical
from services.audit.chain import GENESIS, Entry, link

ENTRY = Entry(
    event_id=UUID("01a20dc8-174c-742c-ad88-3d553e039d55"),
    action="credential_reveal",
    occurred_at=datetime(2026, 11, 24, 13, 39, 6, 698123, tzinfo=UTC),
    user_id=UUID("01a20dc7-d49e-7085-8e8b-345c49565970"),
    user_email="ana@example.com",
    user_full_name='Ana "Lima" Ñ',
    credential_id=UUID("01a20dc8-1721-72fe-b99d-7a02f1bfd604"),
    credential_label="db 🔑",
    client_id=UUID("01a20dc8-1711-7034-91c1-e95204781755"),
    ip="10.0.0.1",
    user_agent="curl/8",
    request_id="r-1",
)


def test_the_canonical_bytes_are_stable() -> None:
    assert (
        canonical(ENTRY)
        == (
            '{"action":"credential_reveal","client_id":"01a20dc8-1711-7034-91c1-e95204781755",'
            '"credential_id":"01a20dc8-1721-72fe-b99d-7a02f1bfd604","credential_label":"db 🔑",'
            '"event_id":"01a20dc8-174c-742c-ad88-3d553e039d55","ip":"10.0.0.1",'
            '"occurred_at":"2026-11-24T13:39:06.698123Z","request_id":"r-1","user_agent":"curl/8",'
            '"user_email":"ana@example.com","user_full_name":"Ana \\"Lima\\" Ñ",'
            '"user_id":"01a20dc7-d49e-7085-8e8b-345c49565970","v":1}'
        ).encode()
    )


def test_a_link_hashes_the_previous_hash_then_the_entry() -> None:
    import hashlib

    first = link(GENESIS, ENTRY)
    assert first == hashlib.sha256(bytes(32) + canonical(ENTRY)).digest()
    assert link(first, ENTRY) != first  # the same event later in the chain has another hash


def test_a_signed_entry_encodes_its_key_id_and_its_link_hashes_the_signature() -> None:
    import hashlib

    signed = dataclasses.replace(ENTRY, key_id="0123456789abcdef", signature=b"\x01" * 64)

    assert (
        canonical(signed, signed.key_id)
        == (
            '{"action":"credential_reveal","client_id":"01a20dc8-1711-7034-91c1-e95204781755",'
            '"credential_id":"01a20dc8-1721-72fe-b99d-7a02f1bfd604","credential_label":"db 🔑",'
            '"event_id":"01a20dc8-174c-742c-ad88-3d553e039d55","ip":"10.0.0.1","key_id":"0123456789abcdef",'
            '"occurred_at":"2026-11-24T13:39:06.698123Z","request_id":"r-1","user_agent":"curl/8",'
            '"user_email":"ana@example.com","user_full_name":"Ana \\"Lima\\" Ñ",'
            '"user_id":"01a20dc7-d49e-7085-8e8b-345c49565970","v":2}'
        ).encode()
    )
    assert link(GENESIS, signed) == hashlib.sha256(bytes(32) + canonical(signed, signed.key_id) + b"\x01" * 64).digest()
    assert link(GENESIS, signed) != link(GENESIS, dataclasses.replace(signed, signature=b"\x02" * 64))


def test_an_event_about_a_user_is_version_3_with_absent_ids_as_null() -> None:
    about_a_user = dataclasses.replace(
        ENTRY,
        action="user_updated",
        user_id=None,
        user_email="",
        user_full_name="operator (clientvault command)",
        credential_id=None,
        credential_label="",
        client_id=None,
        target_user_id=UUID("01a20dc8-1711-7034-91c1-e95204781756"),
        target_user_email="bo@example.com",
        detail='{"disabled":{"from":false,"to":true}}',
    )

    assert canonical(about_a_user, "0123456789abcdef") == (
        b'{"action":"user_updated","client_id":null,"credential_id":null,"credential_label":"",'
        b'"detail":"{\\"disabled\\":{\\"from\\":false,\\"to\\":true}}",'
        b'"event_id":"01a20dc8-174c-742c-ad88-3d553e039d55","ip":"10.0.0.1","key_id":"0123456789abcdef",'
        b'"occurred_at":"2026-11-24T13:39:06.698123Z","request_id":"r-1",'
        b'"target_user_email":"bo@example.com","target_user_id":"01a20dc8-1711-7034-91c1-e95204781756",'
        b'"user_agent":"curl/8","user_email":"","user_full_name":"operator (clientvault command)",'
        b'"user_id":null,"v":3}'
    )


def test_a_credential_event_with_a_detail_is_version_3_and_without_one_stays_version_2() -> None:
    throttled = dataclasses.replace(ENTRY, action="reveal_throttled", detail='{"limits": ["user"]}')

    assert b'"v":3' in canonical(throttled, "0123456789abcdef")
    assert b'"detail":"{\\"limits\\": [\\"user\\"]}"' in canonical(throttled, "0123456789abcdef")
    assert b'"v":2' in canonical(ENTRY, "0123456789abcdef")
    assert b"detail" not in canonical(ENTRY, "0123456789abcdef")
