"""What a route needs to call a service: the stubs (channels opened once per process), and `requires`,
which checks the token and the policy for one operation and builds the call's metadata.
"""

import re
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request, Security
from fastapi.security import HTTPBearer

from clientvault import policy
from clientvault.errors import Forbidden
from clientvault.settings import GatewaySettings
from clientvault.tokens import Caller, TokenVerifier, bearer_token
from clientvault.v1 import audit_pb2_grpc, auth_pb2_grpc, clients_pb2_grpc, vault_pb2_grpc

UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
# Declares the scheme in OpenAPI (the docs' "Authorize" button); the check itself is `requires`.
BEARER = HTTPBearer(auto_error=False, description="The accessToken from /auth/sign-in or /auth/refresh.")


@dataclass
class Stubs:
    auth: auth_pb2_grpc.AuthStub
    clients: clients_pb2_grpc.ClientsStub
    vault: vault_pb2_grpc.VaultStub
    audit: audit_pb2_grpc.AuditStub


@dataclass(frozen=True, slots=True)
class Call:
    """A verified caller (None for public operations) and the metadata to send with the RPC."""

    caller: Caller | None
    metadata: tuple[tuple[str, str], ...]
    timeout: float


def client_ip(request: Request, settings: GatewaySettings) -> str:
    """The TCP peer, or the nearest untrusted address in X-Forwarded-For when the peer is a trusted proxy."""
    peer = request.client.host if request.client else ""
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    address = peer
    while hops and _trusted(address, settings):
        hop = hops.pop()
        if not _is_address(hop):
            break  # a trusted proxy passed on something that is no address: that proxy is the client we know
        address = hop
    return address


def _trusted(address: str, settings: GatewaySettings) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in settings.trusted_proxies)


def _is_address(value: str) -> bool:
    try:
        ip_address(value)
    except ValueError:
        return False
    return True


def metadata_text(value: str) -> str:
    """gRPC metadata is printable ASCII: a header's other characters (a tab, UTF-8 that Starlette read as
    Latin-1) are sent escaped, `é` as `\\xe9`, rather than failing the call."""
    text = value.encode("latin-1").decode("utf-8", "replace")
    return UNPRINTABLE.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


async def stubs(request: Request) -> Stubs:  # async: a plain def would run in a thread pool per request
    return request.app.state.stubs  # type: ignore[no-any-return]


def requires(operation: str) -> Any:
    """A dependency that lets the request through only if the policy allows `operation` to the caller."""
    if operation not in policy.POLICY:
        raise LookupError(f"{operation} has no entry in the policy table")

    def metadata_of(request: Request, settings: GatewaySettings) -> list[tuple[str, str]]:
        ip = client_ip(request, settings)
        structlog.contextvars.bind_contextvars(client_ip=ip)  # for the access log line
        return [
            ("x-request-id", request.scope["state"]["request_id"]),
            ("x-client-ip", ip),
            ("x-user-agent", metadata_text(request.headers.get("user-agent", ""))[:512]),
        ]

    async def check_public(request: Request) -> Call:
        settings: GatewaySettings = request.app.state.settings
        return Call(None, tuple(metadata_of(request, settings)), settings.rpc_timeout_s)

    async def check_token(request: Request, _scheme: Annotated[object, Security(BEARER)] = None) -> Call:
        settings: GatewaySettings = request.app.state.settings
        verifier: TokenVerifier = request.app.state.verifier
        token = bearer_token(request.headers.get("authorization"))
        caller = await verifier.verify(token, accept_revoked=operation in policy.ACCEPTS_REVOKED_TOKEN)
        structlog.contextvars.bind_contextvars(user_id=str(caller.user_id))
        if not policy.allows(operation, caller.role):
            raise Forbidden("your role does not allow this operation")
        metadata = [*metadata_of(request, settings), ("authorization", f"Bearer {token}")]
        return Call(caller, tuple(metadata), settings.rpc_timeout_s)

    check = check_public if policy.is_public(operation) else check_token
    check.operation = operation  # type: ignore[attr-defined]  # read by the policy test
    return Depends(check)


def roles(operation: str) -> str:
    """The route's roles for its OpenAPI description, read from the policy table."""
    rule = policy.POLICY[operation]
    return "Public." if rule == policy.PUBLIC else "Roles: " + ", ".join(sorted(rule)) + "."


StubsDep = Annotated[Stubs, Depends(stubs)]
