"""Access-token signing: Ed25519 (EdDSA) JWTs with `kid`, held by the auth service only."""

import time
from collections.abc import Iterable
from uuid import UUID

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import SecretStr

from clientvault import ed25519
from clientvault.ids import new_id
from clientvault.tokens import ALGORITHM
from services.auth.users import User


def load_private_key(encoded: SecretStr | None) -> Ed25519PrivateKey:
    if encoded is None:
        raise SystemExit("CLIENTVAULT_TOKEN_SIGNING_KEY is not set (base64 of a 32-byte Ed25519 private key)")
    try:
        return ed25519.private_key(encoded.get_secret_value(), "CLIENTVAULT_TOKEN_SIGNING_KEY")
    except ValueError as error:
        raise SystemExit(str(error)) from None


def public_half(private_key: Ed25519PrivateKey) -> str:
    """The base64 of the raw 32-byte public key, as CLIENTVAULT_TOKEN_PREVIOUS_KEYS takes it."""
    return ed25519.encode_public(private_key.public_key())


def load_previous_keys(entries: Iterable[str], current_kid: str) -> dict[str, Ed25519PublicKey]:
    """Public keys of retired signing keys ("kid:base64", from CLIENTVAULT_TOKEN_PREVIOUS_KEYS), still
    published so that tokens they signed keep verifying until they expire."""
    keys = {}
    for entry in entries:
        kid, _, encoded = entry.partition(":")
        try:
            if not kid:
                raise ValueError
            keys[kid] = ed25519.public_key(encoded, "CLIENTVAULT_TOKEN_PREVIOUS_KEYS")
        except ValueError:
            raise SystemExit(
                "CLIENTVAULT_TOKEN_PREVIOUS_KEYS takes kid:<base64 of a 32-byte Ed25519 public key>, comma-separated"
            ) from None
        if kid == current_kid:
            raise SystemExit(
                f"CLIENTVAULT_TOKEN_PREVIOUS_KEYS names {kid}, the current key id: give the new key a new id"
            )
    return keys


class TokenSigner:
    def __init__(
        self,
        key: Ed25519PrivateKey,
        *,
        kid: str,
        issuer: str,
        audience: str,
        ttl_s: int,
        previous: dict[str, Ed25519PublicKey] | None = None,
    ) -> None:
        self._key = key
        self._previous = previous or {}
        self.kid = kid
        self._issuer = issuer
        self._audience = audience
        self.ttl_s = ttl_s

    def sign(self, user: User, session_id: UUID, *, mfa: bool = False, auth_time: int | None = None) -> str:
        """An access token for the user's session: `amr` says whether a second factor was used at sign-in,
        `auth_time` when that was (a refresh keeps it), `pwd_change` marks a temporary password."""
        now = int(time.time())
        claims: dict[str, object] = {
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
            "amr": ["pwd", "otp"] if mfa else ["pwd"],
            "auth_time": now if auth_time is None else auth_time,
        }
        if user.password_change_required:
            claims["pwd_change"] = True
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        return {**self._previous, self.kid: self._key.public_key()}
