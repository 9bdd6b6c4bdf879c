"""deploy/k8s/monitoring and the metrics port of the base, offline: the objects render and validate, the
ServiceMonitor scrapes every process on the port it serves metrics on, only the scraper may connect to it, and
the alerts, the dashboard and docs/operations.md name the metrics the code exposes (clientvault/metrics.py)."""

import json
import re
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from clientvault import metrics
from tests.deploy.files import METRICS_PORT, PROCESSES, ROOT
from tests.deploy.netpol import Pod, Policies
from tests.deploy.test_k8s import (
    COMPONENTS,
    INGRESS_CONTROLLER,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    STRANGER,
    of_kind,
    ours,
    pod_spec,
    rendered,
    secret_files,
)

SCRAPER = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
# Metrics the alerts may use that others expose: Prometheus' own `up`, kube-state-metrics' pod and job states.
EXTERNAL = frozenset({"up", "kube_job_status_failed", "kube_pod_status_ready"})
# What the issue asks the alerts to catch, by the alert that does.
REQUIRED_ALERTS = {
    "ClientVaultOutboxBacklogGrowing",
    "ClientVaultAuditConsumerLag",
    "ClientVaultAuditDeadLetter",
    "ClientVaultAuditVerifyFailed",
    "ClientVaultReadinessFlapping",
    "ClientVaultHighErrorRatio",
}
OURS = re.compile(r"\bclientvault_[a-z0-9_]+")
PROMQL_NAME = re.compile(r"\b([a-z_][a-z0-9_]*)\s*\{")  # a metric selected with labels: name{...}
DOCS = (ROOT / "docs" / "operations.md").read_text()


def monitoring() -> list[dict[str, Any]]:
    return rendered("monitoring")


def alert_rules() -> list[dict[str, Any]]:
    (rule,) = of_kind(monitoring(), "PrometheusRule").values()
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard() -> dict[str, Any]:
    (config,) = of_kind(monitoring(), "ConfigMap").values()
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    loaded: dict[str, Any] = json.loads(config["data"]["clientvault.json"])
    return loaded


def names_in(expression: str) -> set[str]:
    """The metric names an expression reads (ours by prefix, others as name{...} selectors)."""
    return set(OURS.findall(expression)) | {name for name in PROMQL_NAME.findall(expression) if name not in {"by"}}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_core_objects_are_valid_against_the_kubernetes_schemas(version: str) -> None:
    core = [o for o in monitoring() if not o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {o["kind"] for o in core} == {"ConfigMap", "CronJob"}
    for obj in core:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_prometheus_operator_objects_have_their_shape() -> None:
    objects = monitoring()
    (monitor,) = of_kind(objects, "ServiceMonitor").values()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"jobLabel", "namespaceSelector", "selector", "endpoints"}
    assert set(monitor["spec"]["endpoints"][0]) <= {"port", "path", "interval", "scrapeTimeout"}
    for rule in alert_rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_the_service_monitor_scrapes_every_process_where_it_serves_metrics(name: str) -> None:
    objects = rendered(name)
    (monitor,) = of_kind(monitoring(), "ServiceMonitor").values()
    selector = monitor["spec"]["selector"]["matchLabels"]
    port_name = monitor["spec"]["endpoints"][0]["port"]
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["clientvault"]
    config = of_kind(objects, "ConfigMap")
    settings = next(c["data"] for n, c in config.items() if n.startswith("clientvault-config"))
    assert settings["CLIENTVAULT_METRICS_PORT"] == str(METRICS_PORT)
    assert settings["CLIENTVAULT_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 (in the pod; the NetworkPolicy guards it)
    for process, service in of_kind(objects, "Service").items():
        labels = service["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in selector.items()), process
        assert labels[monitor["spec"]["jobLabel"]] == process  # `job` is the process
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == port_name]
        assert port["port"] == METRICS_PORT
    for process, deployment in of_kind(objects, "Deployment").items():
        (container,) = pod_spec(deployment)["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports[port_name] == METRICS_PORT, process
    ingresses = of_kind(objects, "Ingress").values()
    routed = {str(b) for i in ingresses for r in i["spec"]["rules"] for b in r["http"]["paths"]}
    assert not any(str(METRICS_PORT) in b or port_name in b for b in routed), "the ingress never routes metrics"


@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_only_the_scraper_reaches_the_metrics_ports(name: str) -> None:
    policies = Policies(rendered(name))
    for process in PROCESSES:
        assert policies.allowed(SCRAPER, ours(process), METRICS_PORT), process
        assert not policies.allowed(Pod("monitoring", {"app": "other"}), ours(process), METRICS_PORT)
        assert not policies.allowed(Pod("elsewhere", SCRAPER.labels), ours(process), METRICS_PORT)
        assert not policies.allowed(INGRESS_CONTROLLER, ours(process), METRICS_PORT)
        assert not policies.allowed(STRANGER, ours(process), METRICS_PORT)
        for component in COMPONENTS:
            assert not policies.allowed(ours(component), ours(process), METRICS_PORT), f"{component} -> {process}"
        assert not policies.allowed(SCRAPER, ours(process), METRICS_PORT + 1), "the scraper gets the metrics port only"


def test_the_alerts_catch_what_the_issue_asks_and_read_real_metrics() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    for rule in rules:
        used = names_in(rule["expr"])
        assert used, rule["alert"]
        assert used <= metrics.NAMES | EXTERNAL, (
            f"{rule['alert']} reads unknown metrics {used - metrics.NAMES - EXTERNAL}"
        )


def test_the_dashboard_shows_every_metric_and_only_real_ones() -> None:
    board = dashboard()
    expressions = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    used = set().union(*(names_in(e) for e in expressions))
    assert used <= metrics.NAMES, used - metrics.NAMES
    # Every metric is on the dashboard (a histogram through any of its series).
    shown = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    everything = {re.sub(r"_(bucket|sum|count)$", "", name) for name in metrics.NAMES}
    assert shown == everything, everything - shown
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_the_names_checks_would_catch_a_misspelt_metric() -> None:
    assert not names_in('rate(clientvault_vault_reveal_total{outcome="revealed"}[5m])') <= metrics.NAMES


def test_the_docs_describe_every_metric_and_alert() -> None:
    for name in {re.sub(r"_(bucket|sum|count)$", "", n) for n in metrics.NAMES}:
        assert f"`{name}`" in DOCS, name
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in DOCS, rule["alert"]


def test_the_audit_verify_cronjob_runs_the_check_as_the_operator() -> None:
    (cronjob,) = of_kind(monitoring(), "CronJob").values()
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["args"] == ["audit", "verify"]
    assert secret_files(cronjob) == {
        "DATABASE_URL": {"name": "clientvault-database", "key": "migrate-url"},
        "CLIENTVAULT_EVENT_PUBLIC_KEYS": {"name": "clientvault-event-keys", "key": "public-keys"},
    }
    assert all("valueFrom" not in variable for variable in container["env"]), "no secret in the environment"
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "audit-verify"  # its egress policy
    assert "kube_job_status_failed" in next(
        r["expr"] for r in alert_rules() if r["alert"] == "ClientVaultAuditVerifyFailed"
    )
    assert cronjob["metadata"]["name"] in next(
        r["expr"] for r in alert_rules() if r["alert"] == "ClientVaultAuditVerifyFailed"
    )
