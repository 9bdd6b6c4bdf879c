"""TOTP seeds kept with a credential: what a seed may be, and the code it gives now (RFC 6238, through pyotp).

A seed is given as a base32 string (spaces and padding allowed, any case) or an `otpauth://totp/` URI (the
Key Uri Format that authenticator apps read from QR codes: `secret`, and optionally `algorithm` SHA1, SHA256
or SHA512, `digits` 6 to 8, `period` in seconds). It is sealed as given (trimmed; base32 normalized), so an
export hands back what was imported. HOTP and Steam seeds are refused: a counter-based code cannot be computed
without keeping the counter, and Steam's codes are not RFC 6238.

pyotp refuses seeds under 112 bits (its check of seeds it would issue); the vault computes codes for seeds that
other sites issued, and 80-bit seeds (16 base32 characters) are common there, so 80 bits is the floor here.
"""

import hashlib
import time
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import pyotp

from clientvault.errors import Invalid

FIELD = "totpSecret"  # the wire name, for the messages
MAX_SEED = 2048
DIGESTS: dict[str, Any] = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}
PERIODS = range(1, 301)  # seconds


class _Totp(pyotp.TOTP):
    min_secret_length_bits: ClassVar[int] = 80


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    period: int
    expires_in: int  # seconds this code has left
    digits: int


def _bad(why: str) -> Invalid:
    return Invalid(f"{FIELD} {why}", field="totp_secret")


def _totp(secret: str, *, digits: int = 6, algorithm: str = "SHA1", period: int = 30) -> _Totp:
    if algorithm not in DIGESTS:
        raise _bad("has an unknown algorithm: use SHA1, SHA256 or SHA512")
    if not 6 <= digits <= 8:
        raise _bad("must have 6 to 8 digits")
    if period not in PERIODS:
        raise _bad(f"must have a period of 1 to {PERIODS[-1]} seconds")
    try:
        return _Totp(secret, digits=digits, digest=DIGESTS[algorithm], interval=period)
    except (ValueError, TypeError):  # binascii.Error is a ValueError
        raise _bad("is not a valid base32 seed of at least 80 bits") from None


def _from_uri(uri: str) -> _Totp:
    parts = urlsplit(uri)
    if parts.scheme.lower() != "otpauth" or parts.netloc.lower() != "totp":
        raise _bad("must be a base32 seed or an otpauth://totp/ URI (HOTP is not supported)")
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in query:
            raise _bad(f"names {key} twice")
        query[key] = value
    if query.get("encoder"):
        raise _bad("uses an encoder other than RFC 6238 (Steam is not supported)")
    try:
        digits = int(query.get("digits") or 6)
        period = int(query.get("period") or 30)
    except ValueError:
        raise _bad("has digits or a period that is not a number") from None
    secret = query.get("secret", "")
    if not secret:
        raise _bad("is an otpauth URI without a secret")
    return _totp(secret, digits=digits, algorithm=(query.get("algorithm") or "SHA1").upper(), period=period)


def _parse(seed: str) -> _Totp:
    if seed.lower().startswith("otpauth:"):
        return _from_uri(seed)
    return _totp(seed)


def normalized(value: str) -> str:
    """The seed to seal: an otpauth URI as given (trimmed), a base32 seed upper-cased without spaces or padding.
    Invalid (422, naming `totpSecret`) when no code can be computed from it."""
    seed = value.strip()
    if not 1 <= len(seed) <= MAX_SEED:
        raise _bad(f"must be 1 to {MAX_SEED} characters")
    if not seed.lower().startswith("otpauth:"):
        seed = "".join(seed.split()).rstrip("=").upper()
    _parse(seed)
    return seed


def code_now(seed: str, now: float | None = None) -> Code:
    """The code of a sealed seed at `now` (default: the clock)."""
    totp = _parse(seed)
    at = time.time() if now is None else now
    period = int(totp.interval)
    return Code(totp.at(at), period, period - int(at) % period, totp.digits)
