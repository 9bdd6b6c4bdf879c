"""Prometheus metrics: every metric a ClientVault process exposes is defined here, once, and documented in
docs/operations.md (tests/deploy checks the alerts and the dashboard against `NAMES`).

A process serves them on its own port (`CLIENTVAULT_METRICS_PORT`, 0: off), apart from the public API, so the
ingress never exposes them, and serves only its own (`OF_PROCESS`): the metrics are made unregistered
(`registry=None`), so code a process does not run shows nothing. Labels are bounded sets only: an RPC method, a
route template, a status, an outcome. No label ever carries a user id, an email, or the id of a client or a
credential. The transport metrics of every process share one name, told apart by the scrape's `job`/`pod` labels.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from clientvault.logging import get_logger

if TYPE_CHECKING:  # the gateway and `up` use no database: they do not import SQLAlchemy for a type
    from sqlalchemy.pool import QueuePool

log = get_logger(__name__)

# Latency buckets (seconds) for requests served: from a cached read to a slow reveal under load.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --- transport: every process -----------------------------------------------------------------------------
HTTP_REQUESTS = Histogram(
    "clientvault_http_request_duration_seconds",
    "HTTP requests the gateway answered, by method, route template and status (count: rate; buckets: latency).",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
RPC_SERVED = Histogram(
    "clientvault_rpc_server_duration_seconds",
    "RPCs a service answered, by method (Service/Method) and gRPC status code.",
    ["method", "code"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
DB_POOL_TIMEOUTS = Counter(
    "clientvault_db_pool_timeouts_total",
    "Requests that waited CLIENTVAULT_DB_POOL_TIMEOUT_S for a database connection and got none (answered 503).",
    registry=None,
)
REVOCATION_LAG = Histogram(
    "clientvault_revocation_lag_seconds",
    "From a revocation's publication (sign-out, reuse, disabled user) to this verifier's deny list applying it.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=None,
)

# --- auth -----------------------------------------------------------------------------------------------------
SIGN_INS = Counter(
    "clientvault_auth_sign_ins_total",
    "Sign-in attempts by outcome: succeeded, failed (wrong email or password, disabled), throttled.",
    ["outcome"],
    registry=None,
)

# --- every producer of audit events (vault, auth) -------------------------------------------------------------
OUTBOX_PUBLISHED = Counter(
    "clientvault_outbox_published_total",
    "Audit events this process's outbox relay published to JetStream (acknowledged).",
    registry=None,
)

# --- vault ----------------------------------------------------------------------------------------------------
REVEALS = Counter(
    "clientvault_vault_reveals_total",
    "Reveal attempts that reached the vault's rules, by outcome: revealed, throttled (rate limit), not_found. "
    "Reveals the policy refused are clientvault_rpc_server_duration_seconds_count"
    '{method="Vault/RevealCredential",code="PERMISSION_DENIED"}.',
    ["outcome"],
    registry=None,
)
OUTBOX_UNSENT = Gauge(
    "clientvault_vault_outbox_unsent", "Audit events in vault.outbox not yet in JetStream.", registry=None
)
OUTBOX_OLDEST_AGE = Gauge(
    "clientvault_vault_outbox_oldest_unsent_age_seconds",
    "Age of the oldest unsent outbox event (0: none waiting).",
    registry=None,
)
AUDIT_CONSUMER_PENDING = Gauge(
    "clientvault_audit_consumer_pending",
    "Events in stream AUDIT the audit service's durable consumer has not acknowledged yet (undelivered plus "
    "unacked), as the vault, their producer, sees it: a stuck or frozen audit process cannot report its own lag.",
    registry=None,
)

# --- audit ----------------------------------------------------------------------------------------------------
AUDIT_DEAD_LETTERS = Counter(
    "clientvault_audit_dead_letters_total",
    "Malformed messages parked in audit.dead_letters by this process.",
    registry=None,
)
CHAIN_LENGTH = Gauge(
    "clientvault_audit_chain_length", "Entries in the audit hash chain (the head's seq).", registry=None
)
CHAIN_LAST_APPEND = Gauge(
    "clientvault_audit_chain_last_append_timestamp_seconds",
    "Unix time of this process's last append to the chain.",
    registry=None,
)


# Children resolved once: a reveal or a sign-in then costs one lock and one add, no label lookup.
REVEALS_BY_OUTCOME = {outcome: REVEALS.labels(outcome) for outcome in ("revealed", "throttled", "not_found")}
SIGN_INS_BY_OUTCOME = {outcome: SIGN_INS.labels(outcome) for outcome in ("succeeded", "failed", "throttled")}


class PoolCollector(Collector):
    """A service's connection pool, read at scrape time (no work per request)."""

    def __init__(self, pool: "QueuePool") -> None:
        self._pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_use = GaugeMetricFamily("clientvault_db_pool_connections_in_use", "Pool connections checked out now.")
        in_use.add_metric([], self._pool.checkedout())
        size = GaugeMetricFamily(
            "clientvault_db_pool_size", "The pool's size (CLIENTVAULT_DB_POOL_SIZE): requests beyond it wait."
        )
        size.add_metric([], self._pool.size())
        yield in_use
        yield size


def watch_pool(pool: "QueuePool") -> None:
    REGISTRY.register(PoolCollector(pool))


SERVICE = (RPC_SERVED, DB_POOL_TIMEOUTS, REVOCATION_LAG)  # every service's (and its pool's: `watch_pool`)
OF_PROCESS = {
    "gateway": (HTTP_REQUESTS, REVOCATION_LAG),
    "auth": (*SERVICE, SIGN_INS, OUTBOX_PUBLISHED),
    "clients": (*SERVICE, OUTBOX_PUBLISHED),
    "vault": (*SERVICE, REVEALS, OUTBOX_UNSENT, OUTBOX_OLDEST_AGE, OUTBOX_PUBLISHED, AUDIT_CONSUMER_PENDING),
    "audit": (*SERVICE, AUDIT_DEAD_LETTERS, CHAIN_LENGTH, CHAIN_LAST_APPEND),
}


def serve(process: str, host: str, port: int) -> None:
    """Serves the process's metrics at /metrics on host:port, in a thread of its own (port 0: not at all)."""
    if not port:
        return
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: Prometheus does not need them, and they double the output
    for metric in OF_PROCESS[process]:
        REGISTRY.register(metric)
    start_http_server(port, addr=host)
    log.info("metrics.listening", address=f"{host}:{port}")


HISTOGRAMS = (HTTP_REQUESTS, RPC_SERVED, REVOCATION_LAG)
COUNTERS = (DB_POOL_TIMEOUTS, SIGN_INS, REVEALS, OUTBOX_PUBLISHED, AUDIT_DEAD_LETTERS)
GAUGES = (OUTBOX_UNSENT, OUTBOX_OLDEST_AGE, AUDIT_CONSUMER_PENDING, CHAIN_LENGTH, CHAIN_LAST_APPEND)
# Every series name a scrape can show: a histogram's _bucket, _sum and _count, a counter's _total, the pool's.
NAMES = frozenset(
    {
        *(f"{m._name}{suffix}" for m in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")),
        *(f"{m._name}_total" for m in COUNTERS),
        *(m._name for m in GAUGES),
        "clientvault_db_pool_connections_in_use",
        "clientvault_db_pool_size",
    }
)
