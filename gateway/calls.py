"""How a route is declared and calls a service. `operation` names a route's one operation of the policy table
(`clientvault/policy.py`); from that name follow its role check, the roles, errors and operationId in the
OpenAPI document, and a `Call` whose stubs send each RPC with the request's metadata and deadline.

    @operation(router.post, "", "Clients/CreateTask", status_code=201, errors=(404, 409, 422))
    async def create_task(client_id: ClientId, body: TaskIn, call: Call) -> TaskOut:
        '''Create a task for a client.'''  (the summary; the rest of a docstring is the description)
        return TaskOut.from_proto(await call.clients.CreateTask(pb.CreateTaskRequest(...)))
"""

import functools
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Annotated, Any, Generic, TypeVar, cast

import grpc
import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from clientvault import policy
from clientvault.attestation import HEADER, Attester
from clientvault.errors import Forbidden
from clientvault.settings import GatewaySettings
from clientvault.tokens import Caller, TokenVerifier, bearer_token
from clientvault.v1 import audit_pb2_grpc, auth_pb2_grpc, clients_pb2_grpc, vault_pb2_grpc
from gateway.errors import documented

UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
# The scheme the OpenAPI document declares (the docs' "Authorize" button; gateway/openapi.py) and each operation
# that needs a token names; the check itself is `requires`. Not a dependency of the check: FastAPI would solve it
# (and work out its scopes) on every request, ~20 us of CPU for nothing.
BEARER = HTTPBearer(auto_error=False, description="The accessToken from /auth/sign-in or /auth/refresh.")
BEARER_NAME = "HTTPBearer"
# An operationId is the RPC's name in camelCase, unless the public name of what it serves differs.
PUBLIC_NAMES = {"Audit/ListEvents": "listAuditLogs"}
Metadata = tuple[tuple[str, str], ...]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
S = TypeVar("S")


class _Recorder:
    """Stands in for a channel while a generated stub is made once: each attribute becomes its RPC's path."""

    def __init__(self) -> None:
        self.options: dict[str, dict[str, Any]] = {}

    def unary_unary(self, path: str, **options: Any) -> str:
        self.options[path] = options
        return path


class Methods:
    """A service's channel as a generated stub uses it: each RPC method is made once per process and shared.
    With an `attester` (the gateway's context key is set) every call's metadata is vouched for."""

    def __init__(self, channel: grpc.aio.Channel, attester: Attester | None = None) -> None:
        self.channel = channel
        self.attester = attester
        self._rpcs: dict[str, tuple[str, Any]] | None = None

    def rpcs(self, stub: Callable[[Any], Any]) -> dict[str, tuple[str, Any]]:
        """Each RPC of the generated `stub` class by its attribute name: its path and its method on the channel,
        made the first time (a request then binds only the RPC it calls, not the stub's every method)."""
        if self._rpcs is None:
            recorder = _Recorder()
            paths = vars(stub(recorder))
            self._rpcs = {
                name: (path, self.channel.unary_unary(path, **recorder.options[path])) for name, path in paths.items()
            }
        return self._rpcs


@dataclass(frozen=True, slots=True)
class Services:
    """The channel to each service, opened once per process (app.py)."""

    auth: Methods
    clients: Methods
    vault: Methods
    audit: Methods


class _Bound:
    """One request's stub of a service: each RPC, bound when the route first uses it, sends the request's metadata
    and deadline (and, with an attester, an attestation made when it is sent)."""

    def __init__(self, methods: Methods, rpcs: dict[str, tuple[str, Any]], metadata: Metadata, timeout: float):
        self._methods, self._rpcs, self._metadata, self._timeout = methods, rpcs, metadata, timeout

    def __getattr__(self, name: str) -> Any:
        try:
            path, method = self._rpcs[name]
        except KeyError:
            raise AttributeError(name) from None
        metadata, timeout, attester = self._metadata, self._timeout, self._methods.attester
        bound: Callable[..., Any]
        if attester is None:
            bound = functools.partial(method, metadata=metadata, timeout=timeout)
        else:

            def bound(request: Any) -> Any:  # vouched for when sent: the attestation's time is the call's
                attestation = attester.attest(path, dict(metadata))
                return method(request, metadata=(*metadata, (HEADER, attestation)), timeout=timeout)

        setattr(self, name, bound)  # this request's next call of it finds it at once
        return bound


class _Stub(Generic[S]):
    """A `Call`'s stub of one service (the attribute's name), made the first time the route uses it."""

    def __init__(self, make: Callable[[Any], S]) -> None:
        self.make = make

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, call: "Call", owner: type) -> S:
        methods: Methods = getattr(call.services, self.name)
        stub = cast(S, _Bound(methods, methods.rpcs(self.make), call.metadata, call.timeout))
        call.__dict__[self.name] = stub  # the instance's own attribute from now on
        return stub


class Call:
    """One request's operation: the verified caller (None for a public operation) and a stub per service
    whose RPCs carry the token, request id, client IP and user agent, and the deadline."""

    auth = _Stub(auth_pb2_grpc.AuthStub)
    clients = _Stub(clients_pb2_grpc.ClientsStub)
    vault = _Stub(vault_pb2_grpc.VaultStub)
    audit = _Stub(audit_pb2_grpc.AuditStub)

    def __init__(self, caller: Caller | None, services: Services, metadata: Metadata, timeout: float) -> None:
        self.caller = caller
        self.services = services
        self.metadata = metadata
        self.timeout = timeout


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


def requires(operation: str) -> Any:
    """A dependency that lets the request through only if the policy allows `operation` to the caller, and
    gives the route its `Call`. Routes get it through `operation`."""
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
        metadata = tuple(metadata_of(request, settings))
        return Call(None, request.app.state.services, metadata, settings.rpc_timeout_s)

    async def check_token(request: Request) -> Call:
        settings: GatewaySettings = request.app.state.settings
        verifier: TokenVerifier = request.app.state.verifier
        token = bearer_token(request.headers.get("authorization"))
        caller = await verifier.verify(token, accept_revoked=operation in policy.ACCEPTS_REVOKED_TOKEN)
        structlog.contextvars.bind_contextvars(user_id=str(caller.user_id))
        refused = policy.refusal(operation, caller, settings.mfa_required_roles)
        if refused and operation not in policy.REFUSED_BY_SERVICE:  # those the service refuses, and records
            raise Forbidden(refused)
        metadata = (*metadata_of(request, settings), ("authorization", f"Bearer {token}"))
        return Call(caller, request.app.state.services, metadata, settings.rpc_timeout_s)

    check = check_public if policy.is_public(operation) else check_token
    check.operation = operation  # type: ignore[attr-defined]  # read by the policy tests
    return Depends(check)


def default_operation_id(name: str) -> str:
    """'Vault/RevealCredential' -> 'revealCredential': short, and stable while the RPC keeps its name."""
    rpc = name.partition("/")[2]
    return PUBLIC_NAMES.get(name, rpc[:1].lower() + rpc[1:])


def operation(
    route: Callable[..., Callable[[Endpoint], Endpoint]],
    path: str,
    name: str,
    *,
    errors: Iterable[int] = (),
    operation_id: str | None = None,
    **options: Any,
) -> Callable[[Endpoint], Endpoint]:
    """Declares `route(path)` (e.g. `router.post, ""`) as the operation `name` of the policy table: its
    parameter typed `Call` is checked against the policy and carries the RPCs' metadata and deadline. The
    OpenAPI document gets the docstring's first line as the summary, the roles and the rest of it as the
    description, the errors the policy implies (401 without a token, 403 for a role it leaves out or a token
    that may only change its temporary password) besides
    `errors`, `security: []` when public, and the operationId (`operation_id` names a second route of the same
    operation, e.g. the POST reveal that carries a reason)."""
    check = requires(name)
    rule = policy.POLICY[name]
    # Any token may be refused with 403: a role the rule leaves out, or a temporary password's (policy.refusal).
    implied = () if rule == policy.PUBLIC else (401, 403)
    roles = "Public." if rule == policy.PUBLIC else "Roles: " + ", ".join(sorted(rule)) + "."
    declared: dict[str, Any] = {
        "operation_id": operation_id or default_operation_id(name),
        "responses": documented(*errors, *implied),
    }
    security: list[dict[str, list[str]]] = [] if rule == policy.PUBLIC else [{BEARER_NAME: []}]
    declared["openapi_extra"] = {**options.pop("openapi_extra", {}), "security": security}

    def declare(endpoint: Endpoint) -> Endpoint:
        signature = inspect.signature(endpoint)
        calls = [p for p in signature.parameters.values() if p.annotation is Call]
        if len(calls) != 1 or not endpoint.__doc__:
            raise TypeError(f"{endpoint.__qualname__} ({name}) needs a docstring and one parameter typed Call")
        checked = calls[0].replace(annotation=Annotated[Call, check])
        endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined]  # what FastAPI reads
            parameters=[checked if p is calls[0] else p for p in signature.parameters.values()]
        )
        summary, _, details = inspect.cleandoc(endpoint.__doc__).partition("\n")
        description = " ".join([roles, *details.split()])
        return route(path, summary=summary.rstrip("."), description=description, **declared, **options)(endpoint)

    return declare
