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


def canonical_id(text: str) -> UUID | None:
    """The UUID that `text` spells in its one canonical form (lowercase, hyphenated: how the API writes ids),
    else None. `uuid.UUID` also takes braces, no hyphens, `urn:uuid:` and upper case: aliases of one object
    that a cache, a limit or an audit filter keyed by the text would count apart."""
    try:
        value = UUID(text)
    except ValueError:
        return None
    return value if str(value) == text else None


def parse_id(text: str, what: str) -> UUID:
    """An id from a caller. A malformed or non-canonical one names nothing, so it is a NotFound, never a 500."""
    value = canonical_id(text)
    if value is None:
        raise NotFound(f"{what} not found")
    return value
