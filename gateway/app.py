"""The gateway application: middleware, error handlers, routes, and the process's long-lived clients."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clientvault import rpc, tracing
from clientvault.attestation import Attester, derive_key, key_from
from clientvault.logging import get_logger
from clientvault.settings import GatewaySettings
from clientvault.verification import verifier_for
from gateway import errors, openapi
from gateway.calls import Methods, Services
from gateway.middleware import RequestContext
from gateway.routes import access, audit, auth, clients, credentials, reports, tasks, tools, users
from gateway.schemas import ServicesOut, StatusOut

log = get_logger(__name__)

DESCRIPTION = """ClientVault keeps an agency's clients, their tasks and their credentials.

Every error is RFC 9457 `application/problem+json`; 422 adds `errors: [{field, message}]`; 401 carries
`WWW-Authenticate: Bearer`. Every response carries `X-Request-ID`. Send the access token as
`Authorization: Bearer <token>`."""
# Every service is asked at once, so /healthz/services answers within this even with services frozen.
SERVICE_CHECK_TIMEOUT_S = 0.5


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channels = {
            "auth": rpc.channel(settings.auth_addr),
            "clients": rpc.channel(settings.clients_addr),
            "vault": rpc.channel(settings.vault_addr),
            "audit": rpc.channel(settings.audit_addr),
        }
        verifier, denylist = verifier_for(settings, channels["auth"])
        app.state.settings = settings
        context_key = key_from(settings.context_key, "CLIENTVAULT_CONTEXT_KEY")
        if context_key is None:
            log.warning(
                "context.unattested",
                detail="CLIENTVAULT_CONTEXT_KEY is not set: the services believe no client IP, user agent or "
                "request id from this gateway; audit events and limits use the gateway's address",
            )
        app.state.services = Services(
            **{
                name: Methods(channel, Attester(name, derive_key(context_key, name)) if context_key else None)
                for name, channel in channels.items()
            }
        )
        app.state.channels = channels
        app.state.denylist = denylist
        app.state.verifier = verifier
        watching = asyncio.create_task(denylist.run(settings.require_nats_url()))
        loading = asyncio.create_task(verifier.load_keys())
        yield
        watching.cancel()
        loading.cancel()
        await asyncio.gather(*(channel.close() for channel in channels.values()))

    app = FastAPI(
        title="ClientVault API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
        servers=[{"url": "/", "description": "This gateway (relative to where the document was fetched)."}],
        # FastAPI's own OpenTelemetry asks the OTel globals (environment lookups) on every request whether it is
        # on: tracing is ours to turn on (clientvault/tracing.py, instrumented below), metrics and logs never.
        telemetry={"tracing": tracing.enabled(), "metrics": False, "logs": False},
    )
    errors.install(app)
    openapi.install(app)
    # The router of the hottest routes first (a request is matched against the routers in this order, each route's
    # pattern in turn: a reveal ~65 us of CPU less with the credentials ahead of clients, access and tasks). No path
    # is served by two routers (tests/unit/test_routes.py), so the order changes nothing else.
    for routes in (auth, users, credentials, clients, access, tasks, reports, audit, tools):
        app.include_router(routes.router)
    app.include_router(credentials.bulk)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID", "If-Match", "Idempotency-Key"],
            expose_headers=["X-Request-ID", "Retry-After", "ETag"],
        )
    app.add_middleware(
        RequestContext,
        max_body_bytes=settings.max_body_bytes,
        # an import's file may be 10 MiB; the route refuses a larger file (413), the limit here its framing
        large_bodies=(credentials.IMPORT_BODY, credentials.MAX_IMPORT_BYTES + 64 * 1024),
    )
    tracing.instrument_app(app)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers", operation_id="healthz")
    async def healthz() -> StatusOut:
        return StatusOut(status="ok")

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: this gateway can verify tokens and follows revocations",
        description="The probe: ready once the token keys are loaded and the revocation feed (NATS) is followed. "
        "A service that is down does not make the gateway unready: its own routes answer 503.",
        operation_id="readyz",
        response_model=StatusOut,
        responses=errors.documented(),
    )
    async def readyz() -> JSONResponse:
        waiting = [] if app.state.verifier.keys_loaded.is_set() else ["token keys"]
        if not app.state.denylist.synced.is_set():
            waiting.append("revocations")
        if waiting:
            return errors.problem(503, "not ready: " + ", ".join(waiting))
        return JSONResponse({"status": "ready"})

    @app.get(
        "/healthz/services",
        tags=["operations"],
        summary="Each service's gRPC health, checked at once (for operators; not a probe)",
        operation_id="serviceHealth",
        response_model=ServicesOut,
        responses=errors.documented(),
    )
    async def service_health() -> JSONResponse:
        names = list(app.state.channels)
        found = await asyncio.gather(*(_serving(app.state.channels[name]) for name in names))
        services = {name: "serving" if up else "unavailable" for name, up in zip(names, found, strict=True)}
        down = [name for name, state in services.items() if state != "serving"]
        if down:
            return errors.problem(503, "unavailable: " + ", ".join(down))
        return JSONResponse({"status": "ok", "services": services})

    return app


async def _serving(channel: grpc.aio.Channel) -> bool:
    try:
        request = health_pb2.HealthCheckRequest()
        reply = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=SERVICE_CHECK_TIMEOUT_S)
    except grpc.aio.AioRpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(settings: GatewaySettings) -> None:
    import uvicorn

    config = uvicorn.Config(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        server_header=False,
        # The client IP is the gateway's business (CLIENTVAULT_TRUSTED_PROXIES, `calls.client_ip`): uvicorn
        # would otherwise replace the peer with X-Forwarded-For whenever the peer is 127.0.0.1.
        proxy_headers=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()
