"""OpenTelemetry traces: off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (then spans go there over OTLP/HTTP,
configured by the standard `OTEL_*` variables: headers, sampler, batch delay).

One trace follows a request through every process: the gateway's HTTP span (FastAPI), its gRPC call and the
service's span (grpc client and server), the service's SQL (SQLAlchemy), and, for an audited operation, the
audit service's append. That last hop crosses NATS after the request has ended: the vault keeps the request's
`traceparent` in its outbox row, the relay sends it as a message header, and the audit consumer continues the
trace from it (`continued`). Every log line carries the trace id of the span it was written in.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span

TRACER_NAME = "clientvault"
TRACEPARENT = "traceparent"  # the W3C header that carries a span's context (in HTTP, gRPC and NATS headers)

_enabled = False


def enabled() -> bool:
    return _enabled


def configure(endpoint: str | None, process: str) -> None:
    """Exports this process's spans when `endpoint` is set, and instruments its gRPC servers and channels (call it
    before the process makes them). The app and the engines are instrumented as they are made (below)."""
    global _enabled
    if not endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer, filters
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"clientvault-{process}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # the endpoint from the environment
    trace.set_tracer_provider(provider)  # flushed and shut down at exit
    # Health checks (every probe, every readiness check) would be most of the spans and say nothing.
    not_health = filters.negate(filters.health_check())
    GrpcAioInstrumentorServer(filter_=not_health).instrument()  # type: ignore[no-untyped-call]
    GrpcAioInstrumentorClient(filter_=not_health).instrument()  # type: ignore[no-untyped-call]
    _enabled = True


def _without_query(span: Span, scope: dict[str, Any]) -> None:
    """The request's URL in a span never carries the query string (a search term), as the access log never does."""
    if span.is_recording() and scope.get("query_string"):
        span.set_attributes({"http.target": scope["path"], "http.url": scope["path"]})


def instrument_app(app: Any) -> None:
    """Spans for the gateway's HTTP requests (not for the probes')."""
    if _enabled:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz", server_request_hook=_without_query)


def instrument_engine(engine: Any) -> None:
    """Spans for the statements of a service's engine (an AsyncEngine)."""
    if _enabled:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # The instrumentation declares SQLAlchemy < 2.1 and would silently do nothing on our 2.1; the engine events
        # it listens to are unchanged, and tests/e2e/test_observability.py checks the SQL spans are there.
        SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, skip_dep_check=True)


@contextmanager
def statement(sql: str) -> Iterator[None]:
    """A span for a statement run outside the engine (clientvault/db.py `fetch_one`), with its text (never its
    values) as the SQLAlchemy instrumentation records it."""
    if not _enabled:
        yield
        return
    attributes = {"db.system": "postgresql", "db.statement": sql}
    with trace.get_tracer(TRACER_NAME).start_as_current_span(sql.split(None, 1)[0], attributes=attributes):
        yield


def trace_id() -> str | None:
    """The current span's trace id, as the tracing backend shows it (32 hex digits); None outside a span."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def traceparent() -> str | None:
    """The current span's context as a W3C `traceparent`, to continue the trace later (None: tracing is off)."""
    if not _enabled:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


def headers(traceparent: str | None) -> dict[str, str]:
    """Message headers that carry a stored `traceparent` on."""
    return {TRACEPARENT: traceparent} if traceparent else {}


@contextmanager
def continued(name: str, carriers: list[Mapping[str, str] | None]) -> Iterator[Span | None]:
    """A span continuing the trace of the first carrier (message headers) that has one, linked to the traces of
    the others: a batch of messages is handled in one transaction, on behalf of all their requests."""
    if not _enabled:
        yield None
        return
    contexts = [propagate.extract(carrier) for carrier in carriers if carrier and TRACEPARENT in carrier]
    parent = contexts[0] if contexts else None
    links = [Link(trace.get_current_span(c).get_span_context()) for c in contexts[1:]]
    with trace.get_tracer(TRACER_NAME).start_as_current_span(name, context=parent, links=links) as span:
        yield span
