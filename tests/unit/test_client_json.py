"""A page of clients is answered as `client_json` builds it from the proto, without the response model: it must be
the JSON that `ClientOut` (the documented model, which still checks a single client) answers, key for key."""

import json
import random
from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import TypeAdapter

from clientvault.convert import timestamp
from clientvault.v1 import clients_pb2 as pb
from gateway.schemas import ClientOut, ClientPage, DateTime, WireJSON, client_json, instant, page_json

WIRE_INSTANT: TypeAdapter[datetime] = TypeAdapter(DateTime)
CREATED = datetime(2026, 1, 31, 9, 30, 0, 123_456, tzinfo=UTC)
BARE = pb.Client(
    id="0194b1d2-0000-7000-8000-000000000001",
    name="Lindqvist Logistics",
    status=pb.CLIENT_STATUS_LEAD,
    owner_user_id="0194b1d2-0000-7000-8000-0000000000aa",
    created_at=timestamp(CREATED),
    updated_at=timestamp(datetime(2026, 2, 1, tzinfo=UTC)),
    revision=1,
)
FULL = pb.Client(
    id="0194b1d2-0000-7000-8000-000000000002",
    name='Ström & Søn "Ünïcode" \\ <tag> \u2028 😀',
    company="Ström AB",
    email="it@fileserver",
    phone="+46 (0)8-123 45 ext. 6",
    status=pb.CLIENT_STATUS_ARCHIVED,
    notes="line one\nline two\ttabbed",
    owner_user_id="0194b1d2-0000-7000-8000-0000000000bb",
    created_at=timestamp(datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
    updated_at=timestamp(CREATED),
    archived_at=timestamp(datetime(2026, 3, 1, 12, 0, 0, 1_000, tzinfo=UTC)),
    revision=7,
    reveal_reason_required=True,
)


@pytest.mark.parametrize("client", [BARE, FULL], ids=["optional fields unset", "every field set"])
def test_a_client_is_the_json_of_its_model_key_for_key(client: pb.Client) -> None:
    answered = client_json(client)
    modelled = ClientOut.from_proto(client).model_dump(mode="json", by_alias=True)
    assert list(answered.items()) == list(modelled.items())


def test_a_page_of_clients_is_the_body_the_page_model_answers_byte_for_byte() -> None:
    reply = pb.ListClientsResponse(items=[BARE, FULL], total=41, page=2, page_size=2)
    answered = bytes(WireJSON(page_json(reply, client_json)).body)
    modelled = ClientPage.of(reply, ClientOut.from_proto).model_dump_json(by_alias=True).encode()
    assert answered == modelled
    assert json.loads(answered)["total"] == 41
    assert (json.loads(answered)["page"], json.loads(answered)["pageSize"]) == (2, 2)


def test_each_field_as_the_api_writes_it_instants_in_utc_with_milliseconds_cut_absent_ones_null() -> None:
    assert client_json(FULL) == {
        "id": "0194b1d2-0000-7000-8000-000000000002",
        "name": 'Ström & Søn "Ünïcode" \\ <tag> \u2028 😀',
        "company": "Ström AB",
        "email": "it@fileserver",
        "phone": "+46 (0)8-123 45 ext. 6",
        "status": "archived",
        "notes": "line one\nline two\ttabbed",
        "ownerUserId": "0194b1d2-0000-7000-8000-0000000000bb",
        "createdAt": "1999-12-31T23:59:59.999Z",
        "updatedAt": "2026-01-31T09:30:00.123Z",
        "archivedAt": "2026-03-01T12:00:00.001Z",
        "revealReasonRequired": True,
    }
    bare = client_json(BARE)
    assert [bare[name] for name in ("company", "email", "phone", "notes", "archivedAt")] == [None] * 5
    assert (bare["status"], bare["createdAt"], bare["revealReasonRequired"]) == (
        "lead",
        "2026-01-31T09:30:00.123Z",
        False,
    )


def test_an_instant_is_what_the_models_datetime_answers_for_any_timestamp() -> None:
    rnd = random.Random(22)
    for _ in range(5_000):
        stamp = Timestamp(seconds=rnd.randint(-62_135_596_800, 253_402_300_799), nanos=rnd.randint(0, 999_999_999))
        # the oracle: protobuf's own conversion, written by the models' DateTime
        assert instant(stamp) == WIRE_INSTANT.dump_python(stamp.ToDatetime(tzinfo=UTC), mode="json"), stamp
