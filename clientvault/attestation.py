"""Gateway-attested request context: a service believes the client IP, user agent and request id of a call
only when the gateway vouches for them.

The gateway holds one secret, the context key (CLIENTVAULT_CONTEXT_KEY). Each service's key is derived from
it with HKDF-SHA256 (info: the service's name) and each service holds only its own
(CLIENTVAULT_CONTEXT_VERIFY_KEY), so a process that can read one service's key can vouch for calls to that
service only. On every RPC the gateway sends `x-context-attestation: v1.<unix seconds>.<base64url MAC>`, an
HMAC-SHA256 over the service, the full method, the time, the request id, client IP and user agent it sends,
and a hash of the caller's `authorization` metadata. The service recomputes it with its key and accepts it
within WINDOW_S of its own clock (either way, for skew); otherwise the call is unattested: its client IP is
the gRPC peer's address, its user agent and request id are empty (docs/security.md, section 4.4).
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from urllib.parse import unquote

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from clientvault.context import RequestContext

__all__ = [
    "HEADER",
    "INNOCENT",
    "WINDOW_S",
    "Attester",
    "ContextCheck",
    "derive_key",
    "key_from",
    "new_context_key",
    "peer_address",
    "service_key_setting",
]

HEADER = "x-context-attestation"
VERSION = "v1"
WINDOW_S = 60
KEY_BYTES = 32
NOT_SENT, NO_KEY = "no attestation", "no key configured"
# Why a call may be unattested without anyone forging anything (a direct call, a service without its key,
# which said so at start); any other reason is worth a warning.
INNOCENT = frozenset({NOT_SENT, NO_KEY})
# What the MAC covers besides the service, method and time: what the gateway says, and whose call it is.
VOUCHED = ("x-request-id", "x-client-ip", "x-user-agent")
# Made once: `json.dumps` with separators builds an encoder on every call (a third of a MAC's CPU).
_FIELDS = json.JSONEncoder(separators=(",", ":"))


def derive_key(context_key: bytes, service: str) -> bytes:
    """The key with which `service` checks the gateway's attestations (and the gateway makes them)."""
    return HKDF(algorithm=SHA256(), length=KEY_BYTES, salt=None, info=service.encode()).derive(context_key)


def service_key_setting(context_key: bytes, service: str) -> str:
    """The value of `service`'s CLIENTVAULT_CONTEXT_VERIFY_KEY (base64) for the gateway's context key."""
    return base64.b64encode(derive_key(context_key, service)).decode()


def new_context_key() -> str:
    """A new CLIENTVAULT_CONTEXT_KEY (base64 of 32 random bytes)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def key_from(value: SecretStr | None, setting: str) -> bytes | None:
    """A key setting's bytes (base64 of 32 bytes); None when it is unset or empty. A malformed one stops the
    process at start, naming the setting, never the value."""
    if value is None or not value.get_secret_value():
        return None
    try:
        key = base64.b64decode(value.get_secret_value(), validate=True)
    except binascii.Error:
        key = b""
    if len(key) != KEY_BYTES:
        raise SystemExit(f"{setting} must be the base64 of {KEY_BYTES} bytes")
    return key


def _mac(key: bytes, service: str, method: str, issued_at: int, metadata: Mapping[str, str]) -> bytes:
    authorization = metadata.get("authorization")
    caller = hashlib.sha256(authorization.encode()).hexdigest() if authorization else ""
    # A JSON list of strings: no two different sets of fields encode the same way.
    fields = [VERSION, service, method, str(issued_at), *(metadata.get(name, "") for name in VOUCHED), caller]
    return hmac.digest(key, _FIELDS.encode(fields).encode(), "sha256")


class Attester:
    """The gateway's: vouches for the metadata of its calls to one service."""

    def __init__(self, service: str, key: bytes) -> None:
        self._service = service
        self._key = key

    def attest(self, method: str, metadata: Mapping[str, str], now: float | None = None) -> str:
        issued_at = int(time.time() if now is None else now)
        mac = _mac(self._key, self._service, method, issued_at, metadata)
        return f"{VERSION}.{issued_at}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


class ContextCheck:
    """A service's: the request context of a call, believed only when the gateway's attestation checks out.
    Without a key (CLIENTVAULT_CONTEXT_VERIFY_KEY unset) every call is unattested."""

    def __init__(self, service: str, key: bytes | None) -> None:
        self.service = service
        self._key = key

    def refusal(self, method: str, metadata: Mapping[str, str], now: float | None = None) -> str | None:
        """Why the call's context is not attested (None: it is)."""
        given = metadata.get(HEADER)
        if given is None:
            return NOT_SENT
        if self._key is None:
            return NO_KEY
        version, _, rest = given.partition(".")
        issued, _, mac = rest.partition(".")
        if version != VERSION or not issued.isdigit():
            return "malformed attestation"
        if abs((time.time() if now is None else now) - int(issued)) > WINDOW_S:
            return "stale attestation"
        expected = base64.urlsafe_b64encode(_mac(self._key, self.service, method, int(issued), metadata))
        if not hmac.compare_digest(expected.decode().rstrip("="), mac):
            return "attestation does not match"
        return None

    def context_of(
        self, method: str, metadata: Mapping[str, str], peer: str, now: float | None = None
    ) -> tuple[RequestContext, str | None]:
        """The call's request context, and why it is unattested (None: attested)."""
        refused = self.refusal(method, metadata, now)
        if refused is None:
            request_id, client_ip, user_agent = (metadata.get(name, "") for name in VOUCHED)
            return RequestContext(request_id, client_ip, user_agent, attested=True), None
        return RequestContext("", peer_address(peer), "", attested=False), refused


def peer_address(peer: str) -> str:
    """gRPC's peer string as an address: 'ipv4:127.0.0.1:5555' -> '127.0.0.1', 'ipv6:[::1]:5555' -> '::1'
    (also when percent-encoded); anything else (a Unix socket) as it is."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return unquote(rest).rpartition(":")[0].strip("[]")
    return peer
