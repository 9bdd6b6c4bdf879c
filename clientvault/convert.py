"""Conversions between domain values and protobuf values that every service needs."""

import functools
import re
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


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
