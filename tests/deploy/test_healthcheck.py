"""deploy/healthcheck.py (the image's HEALTHCHECK) against a real gRPC health service and HTTP server."""

import importlib.util
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import ModuleType

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.deploy.files import DEPLOY


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = load()


@pytest.fixture
def grpc_health() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(grace=None)


class Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_grpc_serving_then_not(grpc_health: tuple[str, health.HealthServicer]) -> None:
    address, servicer = grpc_health
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.main(["grpc", address]) == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck.main(["grpc", address]) == 1


def test_grpc_port_from_the_listen_setting(
    grpc_health: tuple[str, health.HealthServicer], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, servicer = grpc_health
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    monkeypatch.setenv("CLIENTVAULT_GRPC_LISTEN", "0.0.0.0:" + address.rpartition(":")[2])
    assert healthcheck.main([]) == 0


def test_nothing_listening_is_unhealthy(http_port: int) -> None:
    closed = "127.0.0.1:1"
    assert healthcheck.main(["grpc", closed]) == 1
    assert healthcheck.main(["http", f"http://{closed}/healthz"]) == 1


def test_gateway_http(http_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLIENTVAULT_GRPC_LISTEN", raising=False)
    monkeypatch.setenv("CLIENTVAULT_GATEWAY_PORT", str(http_port))
    assert healthcheck.main([]) == 0
    assert healthcheck.main(["http", f"http://127.0.0.1:{http_port}/readyz"]) == 1


def test_only_local_urls() -> None:
    with pytest.raises(SystemExit):
        healthcheck.main(["http", "http://example.com/healthz"])
