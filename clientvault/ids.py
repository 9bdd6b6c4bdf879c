"""Identifiers: UUIDv7 (time-ordered, so ids sort by creation) and lenient parsing of ids from callers."""

import os
import time
from uuid import UUID

from clientvault.errors import NotFound


def new_id() -> UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then 74 random bits."""
    millis = time.time_ns() // 1_000_000
    value = (millis & 0xFFFF_FFFF_FFFF) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return UUID(int=value)


def parse_id(text: str, what: str) -> UUID:
    """An id from a caller. A malformed one names nothing that exists, so it is a NotFound, never a 500."""
    try:
        return UUID(text)
    except ValueError:
        raise NotFound(f"{what} not found") from None
