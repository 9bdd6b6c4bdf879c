"""Bounds of what people type in, shared by the gateway's wire models (early, per-field 422s) and the
services' rules (which enforce them again: a direct gRPC call gets the same answer)."""

import unicodedata

from clientvault.errors import Invalid

NAME_MAX = 200
TITLE_MAX = 200
COMPANY_MAX = 200
EMAIL_MAX = 320
PHONE_MAX = 50
NOTES_MAX = 10_000
DESCRIPTION_MAX = 10_000
SEARCH_MAX = 200
PAGE_MAX = 1_000_000
PAGE_SIZE_MAX = 100
REASON_MAX = 500  # why someone reveals, asks for access or breaks the glass (kept in the audit event)
TICKET_REF_MAX = 100  # a ticket reference (e.g. "INC-4711")
GRANT_MINUTES_MAX = 43_200  # the most CLIENTVAULT_GRANT_MAX_MINUTES may allow: 30 days
BREAK_GLASS_MINUTES = 60  # a break-glass grant's length

# The services' rules on text as JSON Schema patterns, for the gateway's OpenAPI document (the services check them).
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"  # a search term: a match may not span the newline between columns
PHONE = r"^[0-9+()./ -]*(?:(?:[Ee][Xx][Tt]|[Xx])\.? ?[0-9]+)?$"  # digits, spaces, + ( ) . - and an extension


def said(value: str | None, field: str, max_length: int) -> str | None:
    """A caller's words for the audit trail (a reveal's or an access request's reason, a ticket reference): trimmed,
    bounded, one line of printable characters (the gateway's `ONE_LINE`: a newline or an escape sequence in an
    event's detail would mislead whoever reads the log as lines); blank or absent: none."""
    value = (value or "").strip()
    if len(value) > max_length:
        raise Invalid(f"{field} must be at most {max_length} characters", field)
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        raise Invalid(f"{field} must not contain control characters", field)
    return value or None
