"""Container health check for every ClientVault process (the image's HEALTHCHECK and compose's).

    python /app/healthcheck.py                      # what this container serves, from its environment
    python /app/healthcheck.py grpc 127.0.0.1:50051 # the standard grpc.health.v1 service
    python /app/healthcheck.py http http://127.0.0.1:8000/readyz

Without arguments: a gRPC service (CLIENTVAULT_GRPC_LISTEN set) is asked over grpc.health.v1 on its
port; otherwise the gateway's /healthz on CLIENTVAULT_GATEWAY_PORT. Exit 0 when healthy, 1 otherwise.
Kubernetes does not use this: it probes gRPC and HTTP natively.
"""

import os
import sys
import urllib.request


def grpc_ok(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str) -> bool:
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise SystemExit("healthcheck: only a local http:// URL is checked")
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310 (scheme checked above)
            return bool(reply.status == 200)
    except OSError:
        return False


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "grpc":
        healthy = grpc_ok(argv[1])
    elif len(argv) == 2 and argv[0] == "http":
        healthy = http_ok(argv[1])
    elif not argv:
        listen = os.environ.get("CLIENTVAULT_GRPC_LISTEN")
        if listen:
            healthy = grpc_ok("127.0.0.1:" + listen.rpartition(":")[2])
        else:
            healthy = http_ok(f"http://127.0.0.1:{os.environ.get('CLIENTVAULT_GATEWAY_PORT', '8000')}/healthz")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
