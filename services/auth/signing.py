"""Access-token signing: Ed25519 (EdDSA) JWTs with `kid`, held by the auth service only."""

import base64
import binascii
import time
from uuid import UUID

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import SecretStr

from clientvault.ids import new_id
from clientvault.tokens import ALGORITHM
from services.auth.users import User


def load_private_key(encoded: SecretStr | None) -> Ed25519PrivateKey:
    if encoded is None:
        raise SystemExit("CLIENTVAULT_TOKEN_SIGNING_KEY is not set (base64 of a 32-byte Ed25519 private key)")
    try:
        raw = base64.b64decode(encoded.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise SystemExit("CLIENTVAULT_TOKEN_SIGNING_KEY is not valid base64") from None
    if len(raw) != 32:
        raise SystemExit("CLIENTVAULT_TOKEN_SIGNING_KEY must decode to exactly 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def generate_private_key() -> str:
    """A new signing key, base64-encoded, for `clientvault up` and for operators."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    raw = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(raw).decode()


class TokenSigner:
    def __init__(self, key: Ed25519PrivateKey, *, kid: str, issuer: str, audience: str, ttl_s: int) -> None:
        self._key = key
        self.kid = kid
        self._issuer = issuer
        self._audience = audience
        self.ttl_s = ttl_s

    def sign(self, user: User, session_id: UUID) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user.id),
            "sid": str(session_id),
            "role": user.role.value,
            "email": user.email,
            "name": user.full_name,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": str(new_id()),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        return {self.kid: self._key.public_key()}
