"""gRPC plumbing shared by every service: the server bootstrap, the edge (a guard before every handler), channels.

The edge is the one place where, for every RPC, the request context is taken (believed only when
the gateway attests it, clientvault/attestation.py) and its request id bound, the caller's token is verified
and checked against the policy table, and a `DomainError` becomes a gRPC status.
"""

import asyncio
import inspect
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, cast

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from clientvault import errors, metrics, policy
from clientvault.attestation import INNOCENT, ContextCheck
from clientvault.context import NO_REQUEST, RequestContext
from clientvault.logging import get_logger
from clientvault.policy import Role
from clientvault.settings import Settings
from clientvault.tokens import Caller, TokenVerifier, bearer_token

log = get_logger(__name__)

STATUS: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.Invalid: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Throttled: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DataLoss: grpc.StatusCode.DATA_LOSS,
}
GONE_TRAILER = "gone"  # NOT_FOUND of something destroyed for good (errors.Gone): HTTP 410
PRECONDITION_TRAILER = "precondition-failed"  # FAILED_PRECONDITION of an If-Match (errors.PreconditionFailed): 412
REQUIRED_TRAILER = "precondition-required"  # FAILED_PRECONDITION of a reveal without its reason: 428
# 16 MiB: an import's file (at most 10 MiB, POST /clients/{clientId}/credentials:import) and an export's
# encrypted file travel as one message; every other message stays far below.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# A service's own calls to another carry the caller's token and (as a claim, for the logs) the request id;
# only the gateway can vouch for a client IP or user agent (clientvault/attestation.py).
ONWARD_KEYS = frozenset({"authorization", "x-request-id"})
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    # Spread calls over every address the name resolves to (a headless Service lists every replica).
    ("grpc.lb_policy_name", "round_robin"),
]
# Servers close each connection after a while (gracefully), so clients reconnect and re-resolve: replicas
# added by an autoscaler start taking traffic from gateways that were connected before they existed.
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_connection_age_ms", 300_000),
    ("grpc.max_connection_age_grace_ms", 30_000),
]


# What a service does, besides refusing, when the policy refuses a verified caller an operation (the vault records
# a denied reveal): called with the caller, the request message and its context; a failure is logged, the refusal
# stands.
OnForbidden = Callable[[Caller, Any, RequestContext], Awaitable[None]]

_caller: ContextVar[Caller | None] = ContextVar("caller", default=None)
_onward: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("onward", default=())
_request: ContextVar[RequestContext | None] = ContextVar("request", default=None)
_deadline: ContextVar[float | None] = ContextVar("deadline", default=None)  # monotonic; None: the caller set none


def current_caller() -> Caller:
    """The verified caller of the RPC being served (set by the edge)."""
    caller = _caller.get()
    if caller is None:
        raise errors.Unauthenticated("missing bearer token")
    return caller


def onward_metadata() -> tuple[tuple[str, str], ...]:
    """The metadata to send when this RPC calls another service: the same caller and request."""
    return _onward.get()


def onward_timeout(limit_s: float) -> float:
    """The timeout of a call this RPC makes to another service: at most `limit_s`, and never past the
    deadline of the RPC being served, so the gateway's deadline bounds the whole chain of calls."""
    deadline = _deadline.get()
    if deadline is None:
        return limit_s
    left = deadline - time.monotonic()
    if left <= 0:
        raise errors.Unavailable("the caller's deadline has passed")
    return min(limit_s, left)


def current_request() -> RequestContext:
    """What the gateway vouched for about the HTTP request behind the RPC being served (or, unattested, the
    gRPC peer's address)."""
    return _request.get() or NO_REQUEST


def operation_of(method: str) -> str:
    """'/clientvault.v1.Auth/GetMe' -> 'Auth/GetMe', the key of the policy table."""
    return method.rpartition(".")[2]


def _status_of(error: errors.DomainError) -> grpc.StatusCode:
    kind = next(k for k in type(error).__mro__ if k in STATUS)
    return STATUS[kind]


class Edge:
    """Every call of ours: its context, its caller authorized by the policy, its refusal as a status and trailers,
    its timing. `GuardedServer` puts it in front of each handler once, as the handler is registered."""

    def __init__(
        self,
        verifier: TokenVerifier,
        context: ContextCheck,
        on_forbidden: Mapping[str, OnForbidden] | None = None,
        mfa_required_roles: Sequence[Role] = (),
    ) -> None:
        self._verifier = verifier
        self._context = context
        self._on_forbidden = on_forbidden or {}
        self._mfa_required_roles = frozenset(mfa_required_roles)
        self._guarded: dict[str, Any] = {}  # method -> wrapped handler, built once per method

    def guard(self, method: str, handler: Any) -> Any:
        """The handler of `method` behind the edge (made once per method); health checks and reflection as they are;
        None (UNIMPLEMENTED) for a streaming RPC of ours: only unary ones are guarded, so the others fail closed."""
        guarded = self._guarded.get(method)
        if guarded is not None or handler is None or not method.startswith("/clientvault."):
            return guarded or handler
        if handler.unary_unary is None:
            return None
        guarded = self._guarded[method] = self._guard(method, handler)
        return guarded

    def _guard(self, method: str, handler: Any) -> Any:
        inner, operation = handler.unary_unary, operation_of(method)
        timings: dict[grpc.StatusCode, Any] = {}  # code -> this method's histogram child, made on first use

        def timing(code: grpc.StatusCode) -> Any:
            if code not in timings:
                timings[code] = metrics.RPC_SERVED.labels(operation, code.name)
            return timings[code]

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
            meta, unattested = self._context.context_of(method, metadata, context.peer())
            if unattested is None:
                structlog.contextvars.bind_contextvars(request_id=meta.request_id, rpc=operation)
            else:  # what the caller claims is logged as a claim, never as the request's id
                claimed = metadata.get("x-request-id", "")[:128]
                structlog.contextvars.bind_contextvars(
                    rpc=operation, context="unattested", peer=meta.client_ip, claimed_request_id=claimed
                )
                if unattested not in INNOCENT:
                    log.warning("rpc.context_unattested", reason=unattested)
            _request.set(meta)
            _onward.set(tuple((k, v) for k, v in metadata.items() if k in ONWARD_KEYS))
            remaining = context.time_remaining()
            _deadline.set(None if remaining is None else time.monotonic() + remaining)
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                _caller.set(await self._authorize(operation, metadata.get("authorization"), request, meta))
                return await inner(request, context)
            except errors.DomainError as error:
                refusal: errors.DomainError = error
                code = _status_of(error)
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("rpc.failed")
                await context.abort(code, "internal error")
            finally:
                elapsed = time.perf_counter() - started
                timing(code).observe(elapsed)
                log.debug("rpc.served", ms=round(elapsed * 1000, 2))
            log.info("rpc.refused", error=type(refusal).__name__, detail=str(refusal))
            trailers: Sequence[tuple[str, str]] = ()
            if isinstance(refusal, errors.Throttled):
                trailers = (("retry-after", str(refusal.retry_after_s)),)
            elif isinstance(refusal, errors.Invalid) and refusal.field:
                trailers = (("invalid-field", refusal.field),)
            elif isinstance(refusal, errors.Gone):
                trailers = ((GONE_TRAILER, "true"),)
            elif isinstance(refusal, errors.PreconditionFailed):
                trailers = ((PRECONDITION_TRAILER, "true"),)
            elif isinstance(refusal, errors.PreconditionRequired):
                trailers = ((REQUIRED_TRAILER, "true"),)
            await context.abort(code, str(refusal), trailing_metadata=trailers)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _authorize(
        self, operation: str, authorization: str | None, request: Any, meta: RequestContext
    ) -> Caller | None:
        if policy.is_public(operation):
            return None
        caller = await self._verifier.verify(
            bearer_token(authorization), accept_revoked=operation in policy.ACCEPTS_REVOKED_TOKEN
        )
        refused = policy.refusal(operation, caller, self._mfa_required_roles)
        if refused:
            on_forbidden = self._on_forbidden.get(operation)
            if on_forbidden is not None:
                try:
                    await on_forbidden(caller, request, meta)
                except Exception:
                    log.exception("rpc.refusal_not_recorded")
            raise errors.Forbidden(refused)
        return caller


class _GuardedGeneric(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, inner: grpc.GenericRpcHandler, edge: Edge) -> None:
        self._inner, self._edge = inner, edge

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        return self._edge.guard(details.method, self._inner.service(details))


class GuardedServer:
    """The server as a servicer's generated `add_…_to_server` sees it: the edge wraps each method handler once, as
    it is added, rather than as an interceptor that runs on every call (about 45 us of CPU per call measured on the
    server side of a bare aio echo, bench/README.md)."""

    def __init__(self, server: grpc.aio.Server, edge: Edge) -> None:
        self._server, self._edge = server, edge

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_GuardedGeneric(handler, self._edge) for handler in handlers))

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        guarded = {name: self._edge.guard(f"/{service}/{name}", handler) for name, handler in handlers.items()}
        # a method left out (a streaming one) is looked up among the generic handlers: refused there too
        self._server.add_registered_method_handlers(service, {k: v for k, v in guarded.items() if v is not None})


def channel(address: str) -> grpc.aio.Channel:
    """A client channel; open one per process and target, never one per request."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


async def serve(
    settings: Settings,
    *,
    address: str,
    verifier: TokenVerifier,
    context: ContextCheck,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    ready: Awaitable[None] | None = None,
    background: Sequence[Awaitable[None]] = (),
    on_forbidden: Mapping[str, OnForbidden] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, with the standard health service and, when enabled, reflection.

    Health says NOT_SERVING until `ready` has returned (the schema at the code's version) and the token keys are
    loaded; the `background` jobs start once `ready` has returned. If `ready` raises, the server stops and the
    error ends the process."""
    server = grpc.aio.server(options=SERVER_OPTIONS, maximum_concurrent_rpcs=settings.grpc_max_concurrent_rpcs)
    edge = Edge(verifier, context, on_forbidden, settings.mfa_required_roles)
    register(cast(grpc.aio.Server, GuardedServer(server, edge)))
    health = health_aio.HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # until it can verify tokens
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if settings.grpc_reflection:
        reflection.enable_server_reflection([*service_names, "grpc.health.v1.Health", reflection.SERVICE_NAME], server)
    bind = settings.grpc_listen or address
    if server.add_insecure_port(bind) == 0:
        raise SystemExit(f"cannot listen on {bind}")
    await server.start()

    jobs: list[asyncio.Future[None]] = []

    async def serving_once_ready() -> None:
        if ready is not None:
            await ready
        jobs.extend(asyncio.ensure_future(job) for job in background)
        # A service that cannot verify tokens yet would answer 503s: it reports ready only after its first key
        # fetch from auth has succeeded (auth's own verifier has its keys at once).
        await verifier.load_keys()
        for name in ("", *service_names):
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)

    stop = asyncio.Event()
    starting = asyncio.ensure_future(serving_once_ready())

    def stop_if_failed(done: asyncio.Future[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            stop.set()

    starting.add_done_callback(stop_if_failed)
    log.info("rpc.listening", address=bind)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("rpc.stopping")
    await health.enter_graceful_shutdown()
    for task in (starting, *jobs):
        task.cancel()
    for job in background[len(jobs) :]:  # never started: close it, so that nothing warns it was never awaited
        if inspect.iscoroutine(job):
            job.close()
    await server.stop(grace=3)
    if starting.done() and not starting.cancelled() and (failure := starting.exception()) is not None:
        raise failure
