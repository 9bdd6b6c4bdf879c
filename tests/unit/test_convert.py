"""The kit's timestamp conversions, written as arithmetic, answer what protobuf's own `FromDatetime` and
`ToDatetime` answer, over the whole range a Timestamp holds and any UTC offset."""

import random
from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from clientvault.convert import from_timestamp, timestamp

FIRST, LAST = -62_135_596_800, 253_402_300_799  # 0001-01-01 and 9999-12-31T23:59:59, in seconds since 1970
DAY = 86_400


def test_timestamp_is_protobufs_own_conversion_of_the_instant_in_utc() -> None:
    rnd = random.Random(20)
    for _ in range(5_000):
        instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rnd.randint(FIRST + DAY, LAST - DAY), microseconds=rnd.randint(0, 999_999)
        )
        local = instant.astimezone(timezone(timedelta(minutes=rnd.randint(-14 * 60, 14 * 60))))
        expected = Timestamp()
        expected.FromDatetime(instant)
        assert timestamp(local) == expected, local


def test_a_naive_datetime_is_read_as_local_time_as_before() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5, 6)
    expected = Timestamp()
    expected.FromDatetime(naive.astimezone(UTC))
    assert timestamp(naive) == expected


def test_from_timestamp_is_protobufs_own_in_utc_nanoseconds_cut() -> None:
    rnd = random.Random(21)
    for _ in range(5_000):
        stamp = Timestamp(seconds=rnd.randint(FIRST, LAST), nanos=rnd.randint(0, 999_999_999))
        converted = from_timestamp(stamp)
        assert converted == stamp.ToDatetime(tzinfo=UTC), stamp
        assert converted.tzinfo is UTC
