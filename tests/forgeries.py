"""Forged access tokens, each made from a real token and the real signing key (kid k1), for the checks that
the gateway (tests/e2e/test_tokens.py) and the services (tests/service/test_auth.py) refuse them all."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

Forgery = Callable[[str, Ed25519PrivateKey], str]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def alg_none(token: str, key: Ed25519PrivateKey) -> str:
    _header, payload, _ = token.split(".")
    return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'}).encode())}.{payload}."


def changed_payload(token: str, key: Ed25519PrivateKey) -> str:
    header, _, signature = token.split(".")
    claims = claims_of(token) | {"role": "admin"}
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


def hs256_with_public_key(token: str, key: Ed25519PrivateKey) -> str:
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    payload = b64(json.dumps(claims_of(token) | {"role": "admin"}).encode())
    signature = hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def resigned(**changes: Any) -> Forgery:
    def make(token: str, key: Ed25519PrivateKey) -> str:
        claims = claims_of(token) | changes
        return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "k1"})

    return make


def another_key(token: str, key: Ed25519PrivateKey) -> str:
    return jwt.encode(claims_of(token), Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "k1"})


def unknown_kid(token: str, key: Ed25519PrivateKey) -> str:
    return jwt.encode(claims_of(token), key, algorithm="EdDSA", headers={"kid": "k-other"})


def missing_claim(token: str, key: Ed25519PrivateKey) -> str:
    claims = claims_of(token)
    del claims["sid"]
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "k1"})


FORGERIES = {
    "alg none": alg_none,
    "changed payload": changed_payload,
    "HS256 signed with the public key": hs256_with_public_key,
    "expired": resigned(iat=int(time.time()) - 3600, exp=int(time.time()) - 60),
    "wrong issuer": resigned(iss="someone-else"),
    "wrong audience": resigned(aud="another-api"),
    "audience as a list": resigned(aud=["clientvault", "another-api"]),
    "lives longer than auth signs": resigned(exp=int(time.time()) + 7 * 24 * 3600),
    "signed by another key": another_key,
    "unknown key id": unknown_kid,
    "no session id": missing_claim,
    "unknown role": resigned(role="root"),
}
