"""Conversions between domain values and protobuf values that every service needs."""

import functools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime) -> Timestamp:
    """As `Timestamp.FromDatetime` of the instant in UTC, by arithmetic: that method (Python, over a time tuple)
    cost ~1.7 us against ~0.5, and a page of 20 clients has 40 of them."""
    since = (value if value.tzinfo is not None else value.astimezone(UTC)) - EPOCH
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1_000)


def from_timestamp(stamp: Timestamp) -> datetime:
    """As `stamp.ToDatetime(tzinfo=UTC)` (nanoseconds cut to microseconds), without its detour through a naive
    datetime and `astimezone`."""
    return EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1_000)


@functools.cache  # a few enum descriptors, module singletons; asked for every enum field of every item
def _prefix(enum: Any) -> str:
    """'ClientStatus' -> 'CLIENT_STATUS_', the prefix of its value names (proto style)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def enum_name(enum: Any, number: int) -> str | None:
    """CLIENT_STATUS_IN_PROGRESS (number) -> 'in_progress'; the unspecified zero value -> None."""
    if number == 0 or number not in enum.values_by_number:
        return None
    return str(enum.values_by_number[number].name).removeprefix(_prefix(enum)).lower()


def enum_number(enum: Any, name: str) -> Any:
    """'in_progress' -> the number of TASK_STATUS_IN_PROGRESS (typed Any: each enum has its own int type)."""
    return enum.values_by_name[_prefix(enum) + name.upper()].number
