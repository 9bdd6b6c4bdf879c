"""TOTP (RFC 6238, pyotp: 6 digits, 30-second steps, SHA-1 as every authenticator app expects) and recovery
codes, the second factor's rules.

The TOTP seed is sealed at rest with AES-256-GCM under CLIENTVAULT_MFA_KEY, bound to its user (the user id is
the associated data, so a sealed seed copied to another row does not open). A code is accepted once: the
time step it belongs to is kept per user, and a code of that step or an earlier one is refused. Recovery
codes are 80 random bits each, stored as SHA-256 (their entropy makes a slow hash unnecessary), used once.
"""

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from datetime import UTC, datetime
from uuid import UUID

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from clientvault.errors import DataLoss, Unavailable

ISSUER = "ClientVault"  # shown by authenticator apps next to the account
VALID_WINDOW = 1  # steps either side of now accepted, for clocks a little off
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread
NONCE_BYTES = 12


class Sealer:
    """Seals and opens TOTP seeds with the auth service's MFA key (None: MFA cannot be used)."""

    def __init__(self, key: SecretStr | None) -> None:
        self._aead = None if key is None else AESGCM(_key_bytes(key))

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            raise Unavailable("MFA is not configured on this server (CLIENTVAULT_MFA_KEY is not set)")
        return self._aead

    def seal(self, user_id: UUID, seed: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._cipher().encrypt(nonce, seed.encode(), _ad(user_id))

    def open(self, user_id: UUID, sealed: bytes) -> str:
        try:
            return self._cipher().decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _ad(user_id)).decode()
        except InvalidTag:
            raise DataLoss("a TOTP seed does not open with CLIENTVAULT_MFA_KEY (a different key?)") from None


def _key_bytes(key: SecretStr) -> bytes:
    try:
        raw = base64.b64decode(key.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise SystemExit("CLIENTVAULT_MFA_KEY must be the base64 of 32 bytes")
    return raw


def _ad(user_id: UUID) -> bytes:
    return b"clientvault/auth/totp/" + user_id.bytes


def new_seed() -> str:
    return pyotp.random_base32()


def otpauth_uri(seed: str, email: str) -> str:
    return pyotp.TOTP(seed).provisioning_uri(name=email, issuer_name=ISSUER)


def matching_step(seed: str, code: str, after_step: int | None, now: float | None = None) -> int | None:
    """The time step whose code `code` is (within VALID_WINDOW of now) if it is later than `after_step`."""
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(seed)
    current = totp.timecode(_utc(now))
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and (after_step is None or step > after_step):
            return step
    return None


def _utc(now: float | None) -> datetime:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC)


def new_recovery_codes() -> list[str]:
    """Ten codes like `K7QM-2XPA-9RTW-C4HN` (16 characters of a 32-letter alphabet: 80 bits)."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def recovery_code_hash(code: str) -> bytes:
    """The stored form; spaces, hyphens and case do not matter when it is typed."""
    normalised = "".join(code.split()).replace("-", "").upper()
    return hashlib.sha256(normalised.encode()).digest()
