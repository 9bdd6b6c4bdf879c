"""Access-token verification, the same in the gateway and in every service.

Tokens are EdDSA (Ed25519) JWTs signed by the auth service only. The algorithm is pinned, `kid` picks the
public key (fetched from auth and cached), `iss`, `aud`, `exp` and the identity claims are required, and
the deny list (revoked sessions and users, broadcast over NATS) is checked last.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import jwt
import stamina
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clientvault import retrying
from clientvault.errors import Unauthenticated, Unavailable
from clientvault.logging import get_logger
from clientvault.policy import Role
from clientvault.revocation import DenyList

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["sub", "sid", "role", "email", "name", "iss", "aud", "exp", "iat", "jti"]
KEY_REFETCH_INTERVAL_S = 10.0  # an unknown kid refetches the keys at most this often
VERIFIED_CACHE_SIZE = 10_000  # tokens whose signature and claims were checked; expiry and revocation are rechecked

log = get_logger(__name__)
KeyFetcher = Callable[[], Awaitable[dict[str, Ed25519PublicKey]]]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as the verified access token says."""

    user_id: UUID
    role: Role
    email: str
    full_name: str
    session_id: UUID
    issued_at: int
    expires_at: int
    amr: tuple[str, ...] = ("pwd",)  # how the user signed in (RFC 8176): ("pwd",) or ("pwd", "otp")
    auth_time: int = 0  # when they signed in (a refresh keeps it)
    password_change_required: bool = False  # signed in with a temporary password (policy.DURING_PASSWORD_CHANGE)


class TokenVerifier:
    def __init__(
        self, *, issuer: str, audience: str, max_ttl_s: int, fetch_keys: KeyFetcher, denylist: DenyList
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._max_ttl_s = max_ttl_s
        self._fetch_keys = fetch_keys
        self._denylist = denylist
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._tried_at = float("-inf")  # when the last fetch started, whatever came of it
        self._fetching: asyncio.Task[None] | None = None  # the one fetch in flight, shared by every waiter
        self.keys_loaded = asyncio.Event()  # set by the first successful fetch; readiness waits for it
        self._verified: dict[str, Caller] = {}

    async def verify(self, token: str, *, accept_revoked: bool = False) -> Caller:
        """The caller a valid token names. A token seen before skips the signature check (its bytes are
        the cache key), but its expiry and the deny list are checked on every call."""
        caller = self._verified.get(token)
        if caller is None:
            caller = await self._check_signature_and_claims(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = caller
        elif caller.expires_at <= time.time():
            del self._verified[token]
            raise Unauthenticated("access token expired")
        if not accept_revoked and self._denylist.is_revoked(caller.session_id, caller.user_id, caller.issued_at):
            raise Unauthenticated("access token revoked")
        return caller

    async def _check_signature_and_claims(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("invalid access token") from None
        key = await self._key(header.get("kid"))
        if header.get("alg") != ALGORITHM or key is None:
            raise Unauthenticated("invalid access token")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                # `aud` must be the one configured string (RFC 7519 also allows a list, which we never issue)
                options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
            if not isinstance(claims["iat"], int) or claims["exp"] - claims["iat"] > self._max_ttl_s:
                raise Unauthenticated("invalid access token")  # longer-lived than auth ever signs: not ours
            return _caller(claims)
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("access token expired") from None
        except (jwt.InvalidTokenError, ValueError, KeyError, TypeError):
            raise Unauthenticated("invalid access token") from None

    async def _key(self, kid: object) -> Ed25519PublicKey | None:
        """The public key named `kid`. Until a first fetch has succeeded no token can be judged, so a failed
        fetch is `Unavailable` (503, retry), never a 401 that would sign the user out; after that an unknown
        kid refetches at most every KEY_REFETCH_INTERVAL_S."""
        if not isinstance(kid, str):
            return None
        if kid not in self._keys and (
            not self.keys_loaded.is_set() or time.monotonic() - self._tried_at > KEY_REFETCH_INTERVAL_S
        ):
            try:
                await self.fetch_keys()
            except Unavailable:
                if not self.keys_loaded.is_set():
                    raise
                log.warning("tokens.keys_refetch_failed")
        return self._keys.get(kid)

    async def fetch_keys(self) -> None:
        """Fetches the key set, one fetch at a time: callers that arrive while one is in flight share it."""
        if self._fetching is None:
            self._fetching = asyncio.create_task(self._fetch())
        fetching = self._fetching
        try:
            await asyncio.shield(fetching)
        finally:
            if fetching.done() and self._fetching is fetching:
                self._fetching = None

    async def _fetch(self) -> None:
        # Failed refetches count too: tokens with unknown kids must not keep a broken auth busy.
        self._tried_at = time.monotonic()
        self._keys = await self._fetch_keys()
        self.keys_loaded.set()
        log.info("tokens.keys_fetched", kids=sorted(self._keys))

    async def load_keys(self) -> None:
        """Fetches the keys until it succeeds (run at start: a process is ready only once it can verify)."""
        async for attempt in stamina.retry_context(on=Unavailable, attempts=None, timeout=None, **retrying.BACKOFF):
            with attempt:
                await self.fetch_keys()


def _caller(claims: dict[str, Any]) -> Caller:
    return Caller(
        user_id=UUID(claims["sub"]),
        role=Role(claims["role"]),
        email=str(claims["email"]),
        full_name=str(claims["name"]),
        session_id=UUID(claims["sid"]),
        issued_at=int(claims["iat"]),
        expires_at=int(claims["exp"]),
        # Tokens signed before these claims existed: a password, at issue time, no temporary password.
        amr=tuple(str(method) for method in claims.get("amr", ["pwd"])),
        auth_time=int(claims.get("auth_time", claims["iat"])),
        password_change_required=claims.get("pwd_change") is True,
    )


def bearer_token(authorization: str | None) -> str:
    """The token from an `Authorization: Bearer …` value; anything else is unauthenticated."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token")
    return token.strip()


def keys_from_auth(stub: Any, timeout_s: float) -> KeyFetcher:
    """A key fetcher that asks the auth service (`Auth/GetPublicKeys`, public) for its JWKS."""
    import grpc

    from clientvault.v1 import auth_pb2

    async def fetch() -> dict[str, Ed25519PublicKey]:
        try:
            reply = await stub.GetPublicKeys(auth_pb2.GetPublicKeysRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError as error:
            raise Unavailable("the auth service is unavailable") from error
        return {key.kid: Ed25519PublicKey.from_public_bytes(key.ed25519) for key in reply.keys}

    return fetch
