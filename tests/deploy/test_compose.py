"""docker-compose.yml: valid against the Compose specification, and deploys every process the right way."""

import json
import re
from typing import Any

import jsonschema
import pytest

from ops.embedded import NATS_OPERATOR, nats_authorization_from_environment, nats_password_variable
from tests.deploy.compose import COMPOSE, RAW, Missing, interpolate
from tests.deploy.files import COMPOSE_SCHEMA, DEPLOY, GATEWAY_PORT, GRPC_PORTS, PROCESSES, SERVICES
from tests.deploy.settings import SECRET_SETTINGS, documented_settings

SERVICES_ = COMPOSE["services"]
NATS_USERS = (NATS_OPERATOR, *PROCESSES)
REQUIRED_ENV = {
    "POSTGRES_PASSWORD": "pg-password",
    **{nats_password_variable(user): f"p-{user}" for user in NATS_USERS},
    "CLIENTVAULT_TOKEN_SIGNING_KEY": "signing-key",
    "CLIENTVAULT_MFA_KEY": "mfa-key",
    "CLIENTVAULT_KEKS": "v1:kek",
    "CLIENTVAULT_KEK_ACTIVE": "v1",
    "CLIENTVAULT_CONTEXT_KEY": "context-key",
    **{f"{service.upper()}_CONTEXT_VERIFY_KEY": f"{service}-context-key" for service in SERVICES},
    **{f"{producer.upper()}_EVENT_SIGNING_KEY": f"{producer}-event-key" for producer in ("vault", "auth", "audit")},
    "CLIENTVAULT_EVENT_PUBLIC_KEYS": "vault:public",
}


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(COMPOSE_SCHEMA.read_text())
    return loaded


def test_schema_is_the_vendored_compose_spec() -> None:
    assert schema()["title"] == "Compose Specification"
    assert (COMPOSE_SCHEMA.parent / "README.md").exists(), "its origin and version are recorded"


def test_valid_against_the_compose_specification() -> None:
    jsonschema.Draft7Validator(schema()).validate(COMPOSE)
    jsonschema.Draft7Validator(schema()).validate(interpolate(COMPOSE, REQUIRED_ENV))


def test_the_schema_check_catches_mistakes() -> None:
    broken = interpolate(COMPOSE, REQUIRED_ENV)
    broken["services"]["gateway"]["depends_on"]["auth"]["condition"] = "service_ready"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema()).validate(broken)


@pytest.mark.parametrize("name", sorted(REQUIRED_ENV))
def test_each_secret_must_be_supplied(name: str) -> None:
    with pytest.raises(Missing, match=name):
        interpolate(COMPOSE, {k: v for k, v in REQUIRED_ENV.items() if k != name})


def test_the_example_env_file_lists_every_required_variable() -> None:
    assert set(re.findall(r"\$\{([A-Z_]+):\?", json.dumps(COMPOSE))) == set(REQUIRED_ENV)
    example = (DEPLOY / "compose.env.example").read_text()
    assert set(REQUIRED_ENV) <= set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))


def test_every_process_postgres_nats_and_the_migration() -> None:
    assert set(SERVICES_) == {*PROCESSES, "postgres", "nats", "migrate"}
    for name in PROCESSES:
        assert SERVICES_[name]["command"] == ["serve", name]
    assert SERVICES_["migrate"]["command"] == ["migrate"]
    assert SERVICES_["migrate"]["restart"] == "no"


def test_one_image_built_from_the_dockerfile() -> None:
    for name in (*PROCESSES, "migrate"):
        service = SERVICES_[name]
        assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
        assert service["image"] == SERVICES_["gateway"]["image"]


def test_services_wait_for_healthy_postgres_and_nats_and_the_finished_migration() -> None:
    healthy = {"condition": "service_healthy"}
    assert SERVICES_["migrate"]["depends_on"] == {"postgres": healthy, "nats": healthy}  # it creates the stream
    for name in SERVICES:
        assert SERVICES_[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
            "nats": {"condition": "service_healthy"},
        }
    gateway = SERVICES_["gateway"]["depends_on"]
    assert gateway == {name: {"condition": "service_healthy"} for name in ("nats", *SERVICES)}


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in SERVICES_.items():
        if name == "migrate":
            continue
        assert service["healthcheck"]["test"][0] == "CMD", name
    for name in SERVICES:
        assert SERVICES_[name]["healthcheck"]["test"][3:] == ["grpc", f"127.0.0.1:{GRPC_PORTS[name]}"]
    assert SERVICES_["gateway"]["healthcheck"]["test"][3:] == ["http", f"http://127.0.0.1:{GATEWAY_PORT}/readyz"]


def test_nats_runs_jetstream_on_a_volume() -> None:
    nats = SERVICES_["nats"]
    config = COMPOSE["configs"]["nats"]["content"]
    assert re.search(r"jetstream \{ store_dir: /data, sync_interval: always \}", config)
    assert "nats-data:/data" in nats["volumes"]
    assert "postgres-data:/var/lib/postgresql" in SERVICES_["postgres"]["volumes"]
    assert set(COMPOSE["volumes"]) == {"postgres-data", "nats-data"}


def test_each_process_is_its_own_nats_user() -> None:
    """As under `clientvault up`: nats-server gets embedded.py's users with each password from its environment,
    and each process connects as its own user with that user's password (and no other's)."""
    resolved = interpolate(COMPOSE, REQUIRED_ENV)
    assert nats_authorization_from_environment() in resolved["configs"]["nats"]["content"]
    passwords = {user: REQUIRED_ENV[nats_password_variable(user)] for user in NATS_USERS}
    assert resolved["services"]["nats"]["environment"] == {
        nats_password_variable(user): password for user, password in passwords.items()
    }
    users = {**{name: name for name in PROCESSES}, "migrate": NATS_OPERATOR}  # the migration creates the stream
    for name, user in users.items():
        assert resolved["services"][name]["environment"]["NATS_URL"] == f"nats://{user}:{passwords[user]}@nats:4222"
    holders = {n for n, s in SERVICES_.items() if "NATS_URL" in s.get("environment", {})}
    assert holders == set(users)


def test_processes_are_locked_down() -> None:
    for name in (*PROCESSES, "migrate"):
        service = SERVICES_[name]
        assert service["user"] == "10001:10001"
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]


def test_addresses_and_listeners() -> None:
    env = {name: SERVICES_[name]["environment"] for name in PROCESSES}
    for name in PROCESSES:
        for target, port in GRPC_PORTS.items():
            assert env[name][f"CLIENTVAULT_{target.upper()}_ADDR"] == f"{target}:{port}"
        assert env[name]["NATS_URL"].endswith("@nats:4222"), "every process watches the revocation bucket"
    for name in SERVICES:
        assert env[name]["CLIENTVAULT_GRPC_LISTEN"] == f"0.0.0.0:{GRPC_PORTS[name]}"
        assert env[name]["DATABASE_URL"].endswith("@postgres:5432/clientvault")
    assert env["gateway"]["CLIENTVAULT_GATEWAY_HOST"] == "0.0.0.0"  # noqa: S104 (in its container)
    assert "DATABASE_URL" not in env["gateway"], "the gateway never touches the database"
    assert SERVICES_["gateway"]["ports"] == ["${CLIENTVAULT_HTTP_BIND:-127.0.0.1}:${CLIENTVAULT_HTTP_PORT:-8000}:8000"]
    assert not any("ports" in SERVICES_[name] for name in SERVICES_ if name != "gateway"), "only the gateway"


def test_only_auth_holds_the_signing_key() -> None:
    holders = [n for n, s in SERVICES_.items() if "CLIENTVAULT_TOKEN_SIGNING_KEY" in s.get("environment", {})]
    assert holders == ["auth"]
    keks = [n for n, s in SERVICES_.items() if "CLIENTVAULT_KEKS" in s.get("environment", {})]
    assert keks == ["vault"]


def test_each_producer_holds_only_its_own_event_signing_key_and_the_audit_service_trusts_the_public_halves() -> None:
    environments = interpolate(COMPOSE, REQUIRED_ENV)["services"]

    holders = {
        name: service["environment"]["CLIENTVAULT_EVENT_SIGNING_KEY"]
        for name, service in environments.items()
        if "CLIENTVAULT_EVENT_SIGNING_KEY" in service.get("environment", {})
    }
    assert holders == {producer: f"{producer}-event-key" for producer in ("vault", "auth", "audit")}
    assert environments["audit"]["environment"]["CLIENTVAULT_EVENT_PUBLIC_KEYS"] == "vault:public"


def test_the_gateway_holds_the_context_key_and_each_service_only_its_own_derived_key() -> None:
    environments = {name: interpolate(COMPOSE, REQUIRED_ENV)["services"][name]["environment"] for name in PROCESSES}

    assert [n for n, env in environments.items() if "CLIENTVAULT_CONTEXT_KEY" in env] == ["gateway"]
    assert {n: env.get("CLIENTVAULT_CONTEXT_VERIFY_KEY") for n, env in environments.items()} == {
        "gateway": None,
        **{service: f"{service}-context-key" for service in SERVICES},
    }


def test_every_variable_set_is_a_setting_of_the_process() -> None:
    known = documented_settings()
    for name in (*PROCESSES, "migrate"):
        unknown = set(SERVICES_[name]["environment"]) - known
        assert not unknown, f"{name} sets variables that no setting reads: {unknown}"


def test_secrets_come_only_from_the_environment() -> None:
    for name, service in SERVICES_.items():
        for key, value in service.get("environment", {}).items():
            secret = key in SECRET_SETTINGS or re.search(r"PASSWORD|TOKEN|SECRET|KEY$|KEKS", key)
            if secret and not key.endswith("_FILE") and key != "CLIENTVAULT_TOKEN_KEY_ID":
                assert re.search(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), f"{name}.{key} is not `${{VAR:?…}}`"
    assert COMPOSE["secrets"] == {"postgres_password": {"environment": "POSTGRES_PASSWORD"}}
    assert SERVICES_["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert not re.search(r"[A-Za-z0-9+/]{40,}={0,2}", RAW), "no key-like literal anywhere in the file"
