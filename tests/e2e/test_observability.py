"""What an operator's Prometheus and OpenTelemetry collector see of a working system (issue 19, items 1 and 2).

A system of its own, with tracing on towards an OTLP/HTTP receiver stood up in this test (the collector's
stand-in: it decodes the protobuf `ExportTraceServiceRequest`s the processes send). Every process serves
/metrics on the port `up` chose for it (run/system.json).
"""

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from clientvault import metrics
from tests.conftest import TEST_ENV
from tests.system import Api, Session, System, frozen, running
from tests.vault_support import create, new_client

WAIT_S = 60.0  # how long a test waits for something that happens in the background (a scrape, an export)


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]


class Receiver:
    """An OTLP/HTTP trace receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.take(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: a.value.string_value or a.value.int_value for a in span.attributes}
                    self.spans.append(
                        Span(
                            resource["service.name"],
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            attributes,
                        )
                    )

    def of_trace(self, trace_id: str) -> list[Span]:
        return [span for span in list(self.spans) if span.trace_id == trace_id]

    @contextmanager
    def serving(self) -> Iterator["Receiver"]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver().serving() as serving:
        yield serving


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> AsyncIterator[Api]:
    """A system of this module's own, tracing towards `receiver`."""
    env = {
        **TEST_ENV,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export every 200 ms rather than 5 s: the test waits for spans
    }
    with running(Path(tmp_path_factory.mktemp("observed")) / "data", env) as system:
        async with Api(system) as client:
            yield client


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the series named `name` whose labels include `labels` (0 if there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


async def until(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"never: {what}")


def endpoints(system: System) -> dict[str, str]:
    return dict(system.info()["metrics"])


async def reveal(api: Api, session: Session, client_id: str, credential_id: str) -> None:
    r = await api.raw.get(f"/clients/{client_id}/credentials/{credential_id}", headers=session.headers)
    assert r.status_code == 200, r.text


async def test_every_process_serves_its_metrics_and_the_domain_metrics_move(api: Api) -> None:
    urls = endpoints(api.system)
    assert set(urls) == {"gateway", "auth", "clients", "vault", "audit"}
    admin = await api.session("admin")
    client_id = await new_client(api, admin)
    credential_id = await create(api, admin, client_id, label="metrics", secret="s3cret-metrics")
    before = {name: scrape(url) for name, url in urls.items()}

    await reveal(api, admin, client_id, credential_id)
    missing = await api.raw.get(f"/clients/{client_id}/credentials/{uuid.uuid4()}", headers=admin.headers)
    assert missing.status_code == 404
    r = await api.raw.post("/auth/sign-in", json={"email": admin.account.email, "password": "not it"})
    assert r.status_code == 401
    after = {name: scrape(url) for name, url in urls.items()}

    def grew(process: str, name: str, by: float = 1, **labels: str) -> bool:
        return value(after[process], name, **labels) - value(before[process], name, **labels) >= by

    assert grew("vault", "clientvault_vault_reveals_total", outcome="revealed")
    assert grew("vault", "clientvault_vault_reveals_total", outcome="not_found")
    assert grew("auth", "clientvault_auth_sign_ins_total", outcome="failed")
    route = "/clients/{clientId}/credentials/{credentialId}"
    # The gateway observes a request once its response is sent, so maybe just after the client has it.
    served = "clientvault_http_request_duration_seconds_count"
    gateway = urls["gateway"]

    def gateway_grew(**labels: str) -> bool:
        return value(scrape(gateway), served, **labels) > value(before["gateway"], served, **labels)

    await until(lambda: gateway_grew(method="GET", route=route, status="200"), "the gateway counts the reveal")
    await until(lambda: gateway_grew(route=route, status="404"), "the gateway counts the 404")
    assert grew("vault", "clientvault_rpc_server_duration_seconds_count", method="Vault/RevealCredential", code="OK")
    assert grew("auth", "clientvault_rpc_server_duration_seconds_count", method="Auth/SignIn", code="UNAUTHENTICATED")
    for service in ("auth", "clients", "vault", "audit"):
        assert value(after[service], "clientvault_db_pool_size") > 0, service
    # The audit trail follows in the background: the create's and the reveal's events reach the chain.
    chain = urls["audit"]
    await until(lambda: value(scrape(chain), "clientvault_audit_chain_length") >= 2, "the chain grows")
    assert value(scrape(chain), "clientvault_audit_chain_last_append_timestamp_seconds") > 0
    # The failed sign-in is a security event of auth's outbox: auth's relay counts what it published.
    published = "clientvault_outbox_published_total"
    await until(
        lambda: value(scrape(urls["auth"]), published) > value(before["auth"], published), "auth's relay counts"
    )
    # No label names a user, an email, a client or a credential: only templates, methods, codes, outcomes.
    for samples in after.values():
        for (_name, labels), _value in samples.items():
            for _label, text in labels:
                assert client_id not in text, text
                assert credential_id not in text, text
                assert "@" not in text, text
    # Every series a process shows under our prefix is one the docs and the alerts know (clientvault/metrics.py).
    shown = {name for samples in after.values() for name, _ in samples if name.startswith("clientvault_")}
    assert shown <= metrics.NAMES, shown - metrics.NAMES


async def test_a_sign_out_reaches_every_verifier_and_its_lag_is_measured(api: Api) -> None:
    urls = endpoints(api.system)
    lag = "clientvault_revocation_lag_seconds_count"
    before = {name: value(scrape(url), lag) for name, url in urls.items()}
    session = await api.session("read_only")
    assert (await api.raw.post("/auth/sign-out", headers=session.headers)).status_code == 204

    for name, url in urls.items():  # every verifier applies the revocation, and says how long it took
        await until(lambda url=url, name=name: value(scrape(url), lag) > before[name], f"{name} measures the lag")


async def test_a_frozen_audit_process_shows_as_consumer_lag_then_catches_up(api: Api) -> None:
    vault_metrics = endpoints(api.system)["vault"]
    admin = await api.session("admin")
    client_id = await new_client(api, admin)
    credential_id = await create(api, admin, client_id, label="lag", secret="s3cret-lag")
    audit_pid = api.system.pids()["audit"]
    published_before = value(scrape(vault_metrics), "clientvault_outbox_published_total")

    with frozen(audit_pid):
        for _ in range(5):
            await reveal(api, admin, client_id, credential_id)
        # The vault (the producer) sees the events wait in JetStream for the frozen consumer.
        await until(
            lambda: value(scrape(vault_metrics), "clientvault_audit_consumer_pending") >= 5, "the consumer lag grows"
        )
        # The relay published them (the publish rate moved); they wait in the stream, not in the outbox.
        await until(
            lambda: value(scrape(vault_metrics), "clientvault_outbox_published_total") - published_before >= 5,
            "the relay counts what it published",
        )
    await until(lambda: value(scrape(vault_metrics), "clientvault_audit_consumer_pending") == 0, "the lag drains")


def credential_create_appended(system: System, credential_id: str) -> bool:
    with psycopg.connect(system.info()["database_url"], autocommit=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM audit.events WHERE credential_id = %s AND action = 'credential_create'",
            (uuid.UUID(credential_id),),
        )
        return found.fetchone() is not None


async def test_one_reveal_is_one_trace_from_the_gateway_through_the_vault_and_its_sql_into_the_audit_append(
    api: Api, receiver: Receiver
) -> None:
    admin = await api.session("admin")
    client_id = await new_client(api, admin)
    credential_id = await create(api, admin, client_id, label="traced", secret="s3cret-traced")
    request_id = f"trace-{uuid.uuid4().hex}"
    # The create's event is appended first, and the events before it (the sign-in, the client's) with or before it
    # (nothing else runs in this system now), so the reveal's event is appended in a batch of its own, whose span
    # continues the reveal's trace. (The chain's length would not say which event was appended: the relays and the
    # consumer gather events for up to 20 ms each.)
    await until(lambda: credential_create_appended(api.system, credential_id), "the create is appended")
    r = await api.raw.get(
        f"/clients/{client_id}/credentials/{credential_id}", headers={**admin.headers, "X-Request-ID": request_id}
    )
    assert r.status_code == 200

    trace_id = await trace_of_request(api.system, request_id)  # the gateway's log line names the trace
    names = {"clientvault-gateway", "clientvault-vault", "clientvault-audit"}

    def complete() -> bool:
        spans = receiver.of_trace(trace_id)
        has_root = any(not s.parent_span_id for s in spans)
        return has_root and {s.service for s in spans} >= names and any(s.name == "audit.append" for s in spans)

    await until(complete, "the trace reaches the audit append")
    spans = receiver.of_trace(trace_id)
    by_id = {span.span_id: span for span in spans}
    roots = [span for span in spans if span.parent_span_id not in by_id]
    assert len(roots) == 1, roots  # one trace, begun by the request at the gateway
    assert roots[0].service == "clientvault-gateway"
    rpc = [s for s in spans if s.service == "clientvault-vault" and "RevealCredential" in s.name]
    assert rpc, [s.name for s in spans]
    vault_sql = [s for s in spans if s.service == "clientvault-vault" and "db.statement" in s.attributes]
    assert vault_sql, [(s.service, s.name, sorted(s.attributes)) for s in spans]
    append = next(s for s in spans if s.name == "audit.append")
    audit_sql = [s for s in spans if s.service == "clientvault-audit" and s.parent_span_id == append.span_id]
    assert audit_sql, "the audit append's SQL is in the trace"
    assert not any("grpc.health" in s.name for s in receiver.spans), "probes make no spans"
    # Nothing secret in any span: no statement's values, no revealed secret.
    assert not any("s3cret" in str(s.attributes) for s in receiver.spans)


async def test_a_search_term_never_reaches_the_traces(api: Api, receiver: Receiver) -> None:
    admin = await api.session("admin")
    request_id = f"search-{uuid.uuid4().hex}"
    r = await api.raw.get(
        "/clients", params={"q": "needle-in-query"}, headers={**admin.headers, "X-Request-ID": request_id}
    )
    assert r.status_code == 200
    trace_id = await trace_of_request(api.system, request_id)
    await until(lambda: any(not s.parent_span_id for s in receiver.of_trace(trace_id)), "the request's span")
    assert not any("needle" in str(s.attributes) for s in receiver.spans)


async def trace_of_request(system: System, request_id: str) -> str:
    """The trace id on the gateway's `http.request` line of the request (written just after the response)."""
    found: list[str] = []

    def logged() -> bool:
        for line in (system.data_dir / "logs" / "gateway.log").read_text().splitlines():
            if request_id in line and line.startswith("{"):
                entry = json.loads(line)
                if entry.get("event") == "http.request" and entry.get("request_id") == request_id:
                    found.append(str(entry["trace_id"]))
                    return True
        return False

    await until(logged, f"an http.request line with a trace id for {request_id}")
    return found[0]
