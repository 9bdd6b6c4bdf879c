"""deploy/k8s: the base and the production overlay render with kubectl kustomize, every object is valid
against the Kubernetes schemas (offline, strict), and the objects deploy every process the way we mean."""

import functools
import ipaddress
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.files import GATEWAY_PORT, GRPC_PORTS, K8S, METRICS_PORT, PROCESSES, ROOT, SERVICES, tool
from tests.deploy.netpol import Pod, Policies
from tests.deploy.settings import documented_settings

OVERLAYS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}
# What `kubectl kustomize` renders: the overlays, and the monitoring applied on top (tests/deploy/test_monitoring.py).
RENDERABLE = {**OVERLAYS, "monitoring": K8S / "monitoring"}
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")  # the oldest we support and the newest the schemas know
NAMESPACE = "clientvault"
JOBS = sorted((K8S / "jobs").glob("*.yaml"))

# The Secrets an operator creates (deploy/README.md), and the keys each process may read from them.
SECRETS = {
    "clientvault-database": {"auth-url", "clients-url", "vault-url", "audit-url", "migrate-url"},
    "clientvault-nats": {f"{process}-url" for process in PROCESSES},  # one NATS user per process
    "clientvault-nats-operator": {"url"},  # the NATS operator, for the migration Job only
    "clientvault-token-signing": {"signing-key"},
    # Each audit producer's event-signing key (by producer), and the public keys the audit side trusts
    "clientvault-event-keys": {"vault", "auth", "audit", "clients", "public-keys"},
    # The checkpoint key, for the audit checkpoint CronJob only, and its public half for verifying
    "clientvault-audit-checkpoint": {"key", "public-keys"},
    "clientvault-mfa": {"mfa-key"},
    # The vault's rotation-tasks identity's password: the migration issues the account, the vault signs in with it
    "clientvault-rotation-tasks": {"password"},
    # The gateway's request-context key, and each service's own key derived from it
    "clientvault-context": {f"{process}-key" for process in PROCESSES},
    "clientvault-vault-keys": {
        "provider",
        "keks",
        "kek-active",
        "transit-addr",
        "transit-token",
        "transit-rotate-token",
    },
}
# What a workload may set in its own `env:` (the rest is in a ConfigMap or a Secret's file).
INLINE = (
    "CLIENTVAULT_GRPC_LISTEN",
    "CLIENTVAULT_SECRETS_DIR",
    "CLIENTVAULT_NATS_REPLICAS",  # the migration Job's JetStream bootstrap
    "CLIENTVAULT_AUDIT_STREAM_MAX_AGE_S",
)
DATABASE_KEY = {"auth": "auth-url", "clients": "clients-url", "vault": "vault-url", "audit": "audit-url"}
NATS_KEY = {process: f"{process}-url" for process in PROCESSES}


@functools.cache
def rendered(overlay: str) -> list[dict[str, Any]]:
    return render(RENDERABLE[overlay])


def render(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run([tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def job_files() -> list[dict[str, Any]]:
    return [doc for path in JOBS for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    """A Deployment's or Job's pod template, or that of a CronJob's Jobs."""
    spec = workload["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else workload["spec"]
    template: dict[str, Any] = spec["template"]
    return template


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = pod_template(workload)["spec"]
    return spec


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def workloads(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "Job", "CronJob"):
            yield o["metadata"]["name"], o


overlay = pytest.mark.parametrize("name", sorted(OVERLAYS))


@overlay
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(name: str, version: str) -> None:
    objects = rendered(name)
    assert len(objects) > 30
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {error.message} at {list(error.path)}")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_jobs_run_by_hand_are_valid_too(version: str) -> None:
    assert JOBS
    for obj in job_files():
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validation_catches_mistakes() -> None:
    deployment = dict(of_kind(rendered("base"), "Deployment")["auth"])
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["prot"] = 50051
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


@overlay
def test_a_deployment_and_a_service_per_process(name: str) -> None:
    objects = rendered(name)
    deployments, services = of_kind(objects, "Deployment"), of_kind(objects, "Service")
    assert set(deployments) == set(PROCESSES)
    assert set(services) == set(PROCESSES)
    for process in PROCESSES:
        pod = deployments[process]["spec"]["template"]
        assert deployments[process]["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert services[process]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        (container,) = pod["spec"]["containers"]
        assert container["args"] == ["serve", process]
        port = GATEWAY_PORT if process == "gateway" else GRPC_PORTS[process]
        assert [p["containerPort"] for p in container["ports"]] == [port, METRICS_PORT]
        assert [p["port"] for p in services[process]["spec"]["ports"]] == [port, METRICS_PORT]
    for o in objects:
        assert o["metadata"].get("namespace", NAMESPACE) == NAMESPACE


@overlay
def test_every_pod_runs_non_root_on_a_read_only_root_filesystem(name: str) -> None:
    for workload_name, workload in workloads(rendered(name)):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, workload_name
        assert spec["securityContext"]["runAsUser"] >= 10000
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, workload_name
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert not container.get("command"), "the image's ENTRYPOINT (clientvault) runs"


def test_the_namespace_enforces_the_restricted_pod_security_standard() -> None:
    namespace = of_kind(rendered("production"), "Namespace")[NAMESPACE]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@overlay
def test_every_container_has_requests_and_limits(name: str) -> None:
    for workload_name, workload in workloads(rendered(name)):
        for container in pod_spec(workload)["containers"]:
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, f"{workload_name} {bound}"


@overlay
def test_probes_grpc_health_for_services_http_for_the_gateway(name: str) -> None:
    deployments = of_kind(rendered(name), "Deployment")
    for service in SERVICES:
        (container,) = pod_spec(deployments[service])["containers"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": GRPC_PORTS[service]}, f"{service} {probe}"
    (gateway,) = pod_spec(deployments["gateway"])["containers"]
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


@overlay
def test_vault_and_gateway_autoscale(name: str) -> None:
    objects = rendered(name)
    hpas, deployments = of_kind(objects, "HorizontalPodAutoscaler"), of_kind(objects, "Deployment")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == {"vault", "gateway"}
    for hpa in hpas.values():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        assert hpa["spec"]["minReplicas"] >= 2
        assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
        assert "replicas" not in deployments[target["name"]]["spec"], "the HPA owns the replica count"
    for process in ("auth", "clients", "audit"):
        assert deployments[process]["spec"]["replicas"] >= 2, "no single point of failure"


@overlay
def test_a_disruption_budget_per_process(name: str) -> None:
    objects = rendered(name)
    pdbs, deployments = of_kind(objects, "PodDisruptionBudget"), of_kind(objects, "Deployment")
    covered = set()
    for pdb in pdbs.values():
        assert pdb["spec"]["maxUnavailable"] == 1
        for process, deployment in deployments.items():
            if (
                pdb["spec"]["selector"]["matchLabels"].items()
                <= deployment["spec"]["template"]["metadata"]["labels"].items()
            ):
                covered.add(process)
    assert covered == set(PROCESSES)


SECRETS_DIR = "/var/run/secrets/clientvault"


def secret_files(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pod's secret files, by the variable each is named after: {variable: {"name": Secret, "key": key}}."""
    found: dict[str, dict[str, Any]] = {}
    for volume in pod_spec(workload).get("volumes", []):
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                for item in source["secret"]["items"]:
                    found[item["path"]] = {"name": source["secret"]["name"], "key": item["key"]}
    return found


@overlay
def test_secrets_are_only_referenced_never_defined(name: str) -> None:
    objects = rendered(name) + job_files()
    assert not [o for o in objects if o["kind"] == "Secret"], "Secrets are created by the operator, not committed"
    for workload_name, workload in workloads(objects):
        for container in pod_spec(workload)["containers"]:
            assert not any("secretRef" in source for source in container.get("envFrom", [])), "no Secret as env"
            for variable in container.get("env", []):
                assert "valueFrom" not in variable, f"{workload_name}: {variable['name']} from a Secret into env"
                assert variable["name"] in INLINE, f"{workload_name}: {variable['name']} inline"
        for variable, ref in secret_files(workload).items():
            assert ref["key"] in SECRETS[ref["name"]], f"{workload_name}: {variable} from {ref}"
    for config in of_kind(rendered(name), "ConfigMap").values():
        for key in config["data"]:
            assert not re.search(r"URL|KEY$|TOKEN$|KEKS|PASSWORD|SECRET", key), f"{key} belongs in a Secret"


@overlay
def test_secrets_are_files_only_the_process_can_read(name: str) -> None:
    for workload_name, workload in workloads(rendered(name) + job_files()):
        spec = pod_spec(workload)
        (container,) = spec["containers"]
        (volume,) = [v for v in spec["volumes"] if "projected" in v]
        mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
        assert mount == {"name": volume["name"], "mountPath": SECRETS_DIR, "readOnly": True}, workload_name
        assert env_of(container)["CLIENTVAULT_SECRETS_DIR"]["value"] == SECRETS_DIR, workload_name
        assert volume["projected"]["defaultMode"] == 0o440, workload_name
        assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsUser"], workload_name


def test_who_holds_which_secret() -> None:
    readers: dict[str, dict[str, str]] = {}  # variable -> {component: the Secret key it reads}
    secret_keys: dict[str, dict[str, set[str]]] = {}  # Secret -> {component: the keys it reads}
    for _, workload in workloads(rendered("production") + job_files()):
        process = pod_template(workload)["metadata"]["labels"]["app.kubernetes.io/component"]
        for variable, ref in secret_files(workload).items():
            readers.setdefault(variable, {})[process] = ref["key"]
            secret_keys.setdefault(ref["name"], {}).setdefault(process, set()).add(ref["key"])
    assert set(readers["CLIENTVAULT_TOKEN_SIGNING_KEY"]) == {"auth"}
    # The gateway holds the context key; each service only the key derived for it, no one else's.
    assert readers["CLIENTVAULT_CONTEXT_KEY"] == {"gateway": "gateway-key"}
    assert readers["CLIENTVAULT_CONTEXT_VERIFY_KEY"] == {service: f"{service}-key" for service in SERVICES}
    assert secret_keys["clientvault-context"] == {p: {f"{p}-key"} for p in PROCESSES}
    # Each audit producer signs its events with its own key (the vault, auth, the audit service its reads); the audit
    # service and the checkpoint job trust the public keys; only the checkpoint job signs checkpoints.
    assert readers["CLIENTVAULT_EVENT_SIGNING_KEY"] == {
        "vault": "vault",
        "auth": "auth",
        "audit": "audit",
        "clients": "clients",
    }
    # The vault too: it acts on auth's "user disabled" events only when auth's key signed them.
    assert readers["CLIENTVAULT_EVENT_PUBLIC_KEYS"] == {
        "audit": "public-keys",
        "audit-checkpoint": "public-keys",
        "vault": "public-keys",
    }
    assert readers["CLIENTVAULT_ROTATION_TASKS_PASSWORD"] == {"vault": "password", "migrate": "password"}
    assert readers["CLIENTVAULT_AUDIT_CHECKPOINT_KEY"] == {"audit-checkpoint": "key"}
    for variable in ("CLIENTVAULT_KEKS", "CLIENTVAULT_KEK_ACTIVE", "CLIENTVAULT_TRANSIT_TOKEN"):
        assert set(readers[variable]) == {"vault", "vault-rotate-key"}
    # Every verifier watches the revocation bucket, each as its own NATS user; the migration creates the stream and
    # bucket as the operator; the rotation Job needs no NATS.
    assert readers["NATS_URL"] == {**NATS_KEY, "migrate": "url"}, "each process its own NATS user"
    assert secret_keys["clientvault-nats-operator"] == {"migrate": {"url"}}
    assert secret_keys["clientvault-nats"] == {p: {key} for p, key in NATS_KEY.items()}, "and no one else's URL"
    assert readers["DATABASE_URL"] == {
        **DATABASE_KEY,
        "migrate": "migrate-url",
        "vault-rotate-key": "vault-url",
        "audit-checkpoint": "audit-url",
    }
    assert "gateway" not in readers["DATABASE_URL"], "the gateway has no database access"


def test_every_variable_set_is_a_setting() -> None:
    known = documented_settings()
    objects = rendered("production")
    names: set[str] = set()
    for config in of_kind(objects, "ConfigMap").values():
        names |= set(config["data"])
    for _, workload in workloads(objects + job_files()):
        names |= set(secret_files(workload))
        for container in pod_spec(workload)["containers"]:
            names |= set(env_of(container))
    assert names - known == set()


@overlay
def test_the_configured_addresses_are_the_services(name: str) -> None:
    objects = rendered(name)
    services = of_kind(objects, "Service")
    config = next(c for n, c in of_kind(objects, "ConfigMap").items() if n.startswith("clientvault-config"))
    for service, port in GRPC_PORTS.items():
        host, _, address_port = config["data"][f"CLIENTVAULT_{service.upper()}_ADDR"].partition(":")
        assert host in services, f"{service}: no Service named {host}"
        assert services[host]["spec"]["ports"][0]["port"] == int(address_port) == port  # then the metrics port
        (container,) = pod_spec(of_kind(objects, "Deployment")[service])["containers"]
        assert env_of(container)["CLIENTVAULT_GRPC_LISTEN"]["value"] == f"0.0.0.0:{port}"


def test_the_migration_job() -> None:
    job = of_kind(rendered("production"), "Job")["clientvault-migrate-0.1.0"]
    spec = pod_spec(job)
    (container,) = spec["containers"]
    assert container["args"] == ["migrate"]
    assert spec["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1
    assert 0 < job["spec"]["ttlSecondsAfterFinished"] <= 7 * 86400, "a finished Job goes away by itself"


def with_image(tmp_path: Path, overlay: str, **image: str) -> list[dict[str, Any]]:
    """`overlay` rendered after the operator set its `images:` entry to `image` (newTag, digest), as in an upgrade."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, dirs_exist_ok=True)
    kustomization = copy / OVERLAYS[overlay].relative_to(K8S) / "kustomization.yaml"
    document = yaml.safe_load(kustomization.read_text())
    (entry,) = document["images"]
    entry.update(image)
    kustomization.write_text(yaml.safe_dump(document))
    return render(kustomization.parent)


def names(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


@overlay
def test_an_upgrade_is_a_new_migration_job_and_nothing_else_is_renamed(name: str, tmp_path: Path) -> None:
    """`kubectl apply -k` of a new tag creates a Job (a Job's pod template cannot change) and updates the rest in
    place: nothing to delete by hand."""
    before = rendered(name)
    after = with_image(tmp_path, name, newTag="0.2.0-rc.1")
    assert set(of_kind(before, "Job")) == {"clientvault-migrate-0.1.0"}
    assert set(of_kind(after, "Job")) == {"clientvault-migrate-0.2.0-rc.1"}
    assert names(before) - names(after) == {("Job", "clientvault-migrate-0.1.0")}
    (job,) = of_kind(after, "Job").values()
    assert job["metadata"]["labels"]["app.kubernetes.io/version"] == "0.2.0-rc.1"
    assert {c["image"].rsplit(":", 1)[1] for _, w in workloads(after) for c in pod_spec(w)["containers"]} == {
        "0.2.0-rc.1"
    }


def test_an_image_pinned_by_digest_names_the_job_by_its_tag(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    after = with_image(tmp_path, "production", newTag="0.3.0", digest=digest)
    (job,) = of_kind(after, "Job").values()
    assert job["metadata"]["name"] == "clientvault-migrate-0.3.0"
    assert pod_spec(job)["containers"][0]["image"].endswith(f":0.3.0@{digest}")
    kubernetes_validate.validate(job, KUBERNETES_VERSIONS[0], strict=True)


def test_the_production_overlay_names_the_job_as_the_base_does() -> None:
    """An overlay's `images:` run after its base's replacements, so production repeats the base's block."""
    base, production = (yaml.safe_load((path / "kustomization.yaml").read_text()) for path in OVERLAYS.values())
    assert production["replacements"] == base["replacements"]


def test_production_settings() -> None:
    objects = rendered("production")
    gateway_config = next(c for n, c in of_kind(objects, "ConfigMap").items() if n.startswith("clientvault-gateway-"))
    proxies = gateway_config["data"]["CLIENTVAULT_TRUSTED_PROXIES"]
    assert proxies, "the gateway believes X-Forwarded-For from the ingress controller only"
    for cidr in proxies.split(","):
        ipaddress.ip_network(cidr.strip())
    assert gateway_config["data"]["CLIENTVAULT_DOCS_ENABLED"] == "false"
    assert gateway_config["data"]["CLIENTVAULT_GATEWAY_HOST"] == "0.0.0.0"  # noqa: S104 (in its pod)
    (ingress,) = of_kind(objects, "Ingress").values()
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends == [{"name": "gateway", "port": {"name": "http"}}]
    assert ingress["spec"]["tls"]
    for _, workload in workloads(objects):
        image = pod_spec(workload)["containers"][0]["image"]
        assert "/" in image, f"{image}: from the registry the overlay names"


# ---- network policies: the whole connection matrix ----

COMPONENTS = (*PROCESSES, "migrate", "vault-rotate-key", "audit-verify", "audit-checkpoint")
GRPC_CALLS = {  # (caller, service) pairs the code makes
    ("gateway", "auth"),
    ("gateway", "clients"),
    ("gateway", "vault"),
    ("gateway", "audit"),
    ("clients", "auth"),  # Auth/GetUsers (task assignees) and Auth/GetPublicKeys
    ("vault", "auth"),  # Auth/GetPublicKeys
    ("vault", "clients"),  # Clients/GetClient
    ("audit", "auth"),  # Auth/GetPublicKeys
}


def ours(component: str) -> Pod:
    return Pod(NAMESPACE, {"app.kubernetes.io/name": "clientvault", "app.kubernetes.io/component": component})


INGRESS_CONTROLLER = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
POSTGRES = Pod("clientvault-data", {"cnpg.io/cluster": "clientvault-db", "clientvault.io/database": "true"})
NATS = Pod("clientvault-data", {"app.kubernetes.io/name": "nats"})
DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
STRANGER = Pod("default", {"app": "anything"})


@overlay
def test_grpc_only_where_the_code_calls(name: str) -> None:
    policies = Policies(rendered(name))
    for source in COMPONENTS:
        for target, port in GRPC_PORTS.items():
            expected = (source, target) in GRPC_CALLS
            assert policies.allowed(ours(source), ours(target), port) is expected, f"{source} -> {target}:{port}"
            assert not policies.allowed(ours(source), ours(target), port + 1000)


@overlay
def test_only_the_gateway_takes_ingress_and_only_from_the_ingress_controller(name: str) -> None:
    policies = Policies(rendered(name))
    assert policies.allowed(INGRESS_CONTROLLER, ours("gateway"), GATEWAY_PORT)
    assert not policies.allowed(STRANGER, ours("gateway"), GATEWAY_PORT)
    for component in COMPONENTS:
        assert not policies.allowed(ours(component), ours("gateway"), GATEWAY_PORT), "nothing inside calls the gateway"
    for service, port in GRPC_PORTS.items():
        assert not policies.allowed(INGRESS_CONTROLLER, ours(service), port)
        assert not policies.allowed(STRANGER, ours(service), port)


@overlay
def test_egress_to_dns_postgres_and_nats(name: str) -> None:
    policies = Policies(rendered(name))
    with_database = {c for c in COMPONENTS if policies.allowed(ours(c), POSTGRES, 5432)}
    assert with_database == {*SERVICES, "migrate", "vault-rotate-key", "audit-verify", "audit-checkpoint"}
    with_nats = {c for c in COMPONENTS if policies.allowed(ours(c), NATS, 4222)}
    assert with_nats == {*PROCESSES, "migrate"}
    for component in COMPONENTS:
        assert policies.allowed(ours(component), DNS, 53, "UDP")
        assert policies.allowed(ours(component), DNS, 53, "TCP")
        assert not policies.allowed(ours(component), STRANGER, 443), "no other egress"
        assert not policies.allowed(ours(component), NATS, 5432), "only the database's pods on 5432"


def test_transit_only_for_the_vault_in_production() -> None:
    openbao = Pod("openbao", {"app.kubernetes.io/name": "openbao"})
    production, base = Policies(rendered("production")), Policies(rendered("base"))
    reach = {c for c in COMPONENTS if production.allowed(ours(c), openbao, 8200)}
    assert reach == {"vault", "vault-rotate-key"}
    assert not any(base.allowed(ours(c), openbao, 8200) for c in COMPONENTS)


def test_readme_tells_how_to_create_every_secret() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    for secret, keys in SECRETS.items():
        assert f"kubectl -n clientvault create secret generic {secret}" in readme, secret
        for key in keys:
            assert f"--from-literal={key}=" in readme or f"`{key}`" in readme, f"{secret} {key}"
