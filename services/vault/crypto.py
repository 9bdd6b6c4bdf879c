"""Envelope encryption of credential secrets: AES-256-GCM under the client's data key (DEK).

Each secret is sealed with a fresh 96-bit nonce and associated data naming its client and credential, so a
ciphertext copied to another row (or another client) does not decrypt. Data keys are 256-bit random,
stored only wrapped by the KEK (see keys.py), and cached unwrapped in memory for a short while
(`CLIENTVAULT_DEK_CACHE_TTL_S`) so that a reveal needs no call to the key provider.
"""

import os
import time
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clientvault.errors import DataLoss
from services.vault.keys import KEY_BYTES, NONCE_BYTES, KeyProvider, Wrapped, zero

SECRET_CONTEXT = b"clientvault.v1.secret|"
# A credential's other sealed fields (store.credential_fields): the field's name is bound too, so a TOTP seed's
# ciphertext neither opens as the secret nor as the notes, nor the other way round.
FIELD_CONTEXT = b"clientvault.v1.field|"
CACHE_MAX_KEYS = 10_000


class Undecryptable(DataLoss):
    """A ciphertext that does not open under its row's key: tampering or corruption, never a caller's fault."""


def new_dek() -> bytearray:
    return bytearray(os.urandom(KEY_BYTES))


def dek_context(client_id: UUID, generation: int) -> bytes:
    """What a wrapped data key is bound to: its client and generation."""
    return client_id.bytes + generation.to_bytes(4, "big")


def _secret_ad(client_id: UUID, credential_id: UUID, field: str | None) -> bytes:
    if field is None:
        return SECRET_CONTEXT + client_id.bytes + credential_id.bytes
    return FIELD_CONTEXT + field.encode() + b"|" + client_id.bytes + credential_id.bytes


def seal(
    dek: bytearray, client_id: UUID, credential_id: UUID, secret: str, *, field: str | None = None
) -> tuple[bytes, bytes]:
    """(ciphertext with tag, nonce) of a secret, or with `field` of that other field of the credential ("totp",
    "notes"). The text must be encodable UTF-8 (checked by the caller)."""
    nonce = os.urandom(NONCE_BYTES)
    return AESGCM(dek).encrypt(nonce, secret.encode(), _secret_ad(client_id, credential_id, field)), nonce


def open_sealed(
    dek: bytearray, client_id: UUID, credential_id: UUID, ciphertext: bytes, nonce: bytes, *, field: str | None = None
) -> str:
    try:
        return AESGCM(dek).decrypt(nonce, ciphertext, _secret_ad(client_id, credential_id, field)).decode()
    except (InvalidTag, UnicodeDecodeError):
        raise Undecryptable(
            f"the secret of credential {credential_id} cannot be decrypted (corrupt or tampered with);"
            " an operator must restore it"
        ) from None


class DataKeys:
    """Unwraps data keys through the provider, with a small time-bounded cache of unwrapped keys."""

    def __init__(self, provider: KeyProvider, ttl_s: float) -> None:
        self.provider = provider
        self._ttl_s = ttl_s
        self._cache: dict[tuple[UUID, int], tuple[float, bytearray]] = {}

    async def unwrap(self, client_id: UUID, generation: int, wrapped: Wrapped) -> bytearray:
        """The data key; owned by the cache when caching (do not zero it), else the caller zeroes it."""
        slot = (client_id, generation)
        hit = self._cache.get(slot)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        dek = await self.provider.unwrap(wrapped, dek_context(client_id, generation))
        if self._ttl_s > 0:
            if len(self._cache) >= CACHE_MAX_KEYS:
                self.clear()
            if hit is not None:
                zero(hit[1])
            self._cache[slot] = (now + self._ttl_s, dek)
        return dek

    def release(self, dek: bytearray) -> None:
        """Called when the caller is done with a key from `unwrap`: zeroes it unless the cache keeps it."""
        if self._ttl_s <= 0:
            zero(dek)

    async def wrap_new(self, client_id: UUID, generation: int) -> tuple[bytearray, Wrapped]:
        dek = new_dek()
        return dek, await self.provider.wrap(dek, dek_context(client_id, generation))

    def forget(self, client_id: UUID) -> None:
        """Drops (and zeroes) the client's cached keys: after a shred, nothing of them stays in this process."""
        for slot in [slot for slot in self._cache if slot[0] == client_id]:
            zero(self._cache.pop(slot)[1])

    def clear(self) -> None:
        for _, dek in self._cache.values():
            zero(dek)
        self._cache.clear()
