"""Ed25519 keys as settings and files carry them: base64 of the raw 32 bytes (a private key's seed, or a public
key). Token signing (auth), event signing (each audit producer) and audit checkpoints all use these.

A key id is derived from the public key, never configured: `key_id(public)` is the first 16 hex digits of its
SHA-256, so a verifier that trusts a public key knows its id without another setting to keep in step.

The keys are `cryptography`'s (PyJWT signs and checks tokens with them). Audit events, signed once per event by a
producer and checked once per event by the consumer and by `audit verify`, go through libsodium instead
(`event_signing_key`, `event_verify_key`): its Ed25519 verifies in about half the time of OpenSSL's here (49 against
102 µs), which is most of what ingesting an event costs. Both are the same algorithm on the same raw key bytes.
"""

import base64
import binascii
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from nacl.signing import SigningKey, VerifyKey

__all__ = [
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "encode_public",
    "event_signing_key",
    "event_verify_key",
    "generate",
    "key_id",
    "private_key",
    "public_key",
]


def _raw(encoded: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"{what} must decode to exactly 32 bytes (an Ed25519 key)")
    return raw


def private_key(encoded: str, what: str) -> Ed25519PrivateKey:
    """Raises ValueError naming `what` (e.g. the setting) when it is no key; never echoes the value."""
    return Ed25519PrivateKey.from_private_bytes(_raw(encoded, what))


def public_key(encoded: str, what: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_raw(encoded, what))


def encode_public(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def event_signing_key(key: Ed25519PrivateKey) -> SigningKey:
    """The same key as libsodium's: `.sign(message).signature` is what `key.sign(message)` would give."""
    return SigningKey(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def event_verify_key(key: Ed25519PublicKey) -> VerifyKey:
    """The same key as libsodium's: `.verify(message, signature)` raises nacl's BadSignatureError where
    `key.verify(signature, message)` raises InvalidSignature."""
    return VerifyKey(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def generate() -> str:
    """A new private key, base64-encoded."""
    raw = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(raw).decode()
