"""The one list of ClientVault's processes. `serve`, `up`, `migrate`, the data dir's secrets, the pid files,
which secret reaches which child all derive from it: a new service is one entry here (and its
`services/<name>/` with `server.main` and `migrations/`, and its NATS allow-lists in
clientvault/nats_access.py, whose users tests/deploy/test_nats_config.py holds equal to these names).
"""

import asyncio
import importlib
import inspect
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import uvloop

from clientvault import logging, metrics, tracing
from clientvault.errors import Misconfigured
from clientvault.settings import AuditSettings, AuthSettings, ClientsSettings, GatewaySettings, Settings, VaultSettings

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Process:
    name: str
    settings: type[Settings]
    module: str  # the module whose `main(settings)` runs the process
    schema: str | None = None  # its own PostgreSQL schema and login; None: no database access at all
    secrets: tuple[str, ...] = ()  # environment variables only this process may see (blanked for the others)

    @property
    def migrations(self) -> Path:
        """Its Alembic tree (services with a schema only)."""
        return ROOT / "services" / self.name / "migrations"

    def serve(self, settings: Settings) -> None:
        """Runs the process in the foreground with its settings (read from the environment: what a container runs)."""
        tracing.configure(settings.otel_exporter_otlp_endpoint, self.name)  # before the process makes its clients
        logging.configure(settings.log_level, self.name, trace_ids=tracing.enabled())
        metrics.serve(self.name, settings.metrics_host, settings.metrics_port)
        main = importlib.import_module(self.module).main
        try:
            if inspect.iscoroutinefunction(main):
                # uvloop, as the gateway's uvicorn: a service's event loop (gRPC's callbacks, psycopg's waits) costs
                # less CPU per request than asyncio's own (bench/README.md, "Hot paths").
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    runner.run(main(settings))
            else:
                main(settings)
        except Misconfigured as error:
            print(f"{self.name}: cannot start: {error}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None


# The gateway's context key, from which each service's own key is derived (clientvault/attestation.py; `up`
# gives each service only its own).
CONTEXT_KEY, CONTEXT_VERIFY_KEY = "CLIENTVAULT_CONTEXT_KEY", "CLIENTVAULT_CONTEXT_VERIFY_KEY"
GATEWAY = Process("gateway", GatewaySettings, "gateway.app", secrets=(CONTEXT_KEY,))
PROCESSES: tuple[Process, ...] = (
    GATEWAY,
    Process(
        "auth",
        AuthSettings,
        "services.auth.server",
        schema="auth",
        secrets=(
            "CLIENTVAULT_TOKEN_SIGNING_KEY",
            "CLIENTVAULT_EVENT_SIGNING_KEY",
            "CLIENTVAULT_MFA_KEY",
            CONTEXT_VERIFY_KEY,
        ),
    ),
    Process(
        "clients",
        ClientsSettings,
        "services.clients.server",
        schema="clients",
        secrets=("CLIENTVAULT_EVENT_SIGNING_KEY", CONTEXT_VERIFY_KEY),
    ),
    Process(
        "vault",
        VaultSettings,
        "services.vault.server",
        schema="vault",
        secrets=(
            "CLIENTVAULT_KEKS",
            "CLIENTVAULT_KEK_FILE",
            "CLIENTVAULT_TRANSIT_TOKEN",
            "CLIENTVAULT_EVENT_SIGNING_KEY",
            "CLIENTVAULT_ROTATION_TASKS_PASSWORD",
            CONTEXT_VERIFY_KEY,
        ),
    ),
    Process(
        "audit",
        AuditSettings,
        "services.audit.server",
        schema="audit",
        secrets=("CLIENTVAULT_EVENT_SIGNING_KEY", CONTEXT_VERIFY_KEY),
    ),
)
BY_NAME: Mapping[str, Process] = MappingProxyType({process.name: process for process in PROCESSES})
# The services: each a gRPC server with its own schema, migrations and database login.
SERVICES: tuple[Process, ...] = tuple(process for process in PROCESSES if process.schema is not None)

# Children of `up` inherit its environment; a secret there reaches only the processes that use it (blanked
# for the others). The gateway has no database access at all.
SECRET_HOLDERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "DATABASE_URL": tuple(service.name for service in SERVICES),
        **{
            secret: tuple(holder.name for holder in PROCESSES if secret in holder.secrets)
            for process in PROCESSES
            for secret in process.secrets
        },
    }
)
