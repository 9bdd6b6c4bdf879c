"""docker-compose.yml: valid against the Compose specification, and deploys every process the right way: each
secret a file (deploy/compose-secrets.sh writes them all) mounted only into the containers that use it, never in
a container's environment."""

import base64
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from clientvault import ed25519
from clientvault.attestation import service_key_setting
from ops.embedded import NATS_OPERATOR, nats_authorization_from_environment, nats_password_variable
from tests.deploy.compose import COMPOSE, RAW, interpolate
from tests.deploy.files import COMPOSE_SCHEMA, DEPLOY, GATEWAY_PORT, GRPC_PORTS, PROCESSES, ROOT, SERVICES
from tests.deploy.settings import SECRET_SETTINGS, documented_settings

SERVICES_ = COMPOSE["services"]
NATS_USERS = (NATS_OPERATOR, *PROCESSES)
SECRETS_DIR = "/run/secrets"
PRODUCERS = ("vault", "auth", "audit", "clients")  # of audit events, each signing with its own key
# What a service may set in `environment` although its name sounds secret: an id and a version, not a key.
NOT_SECRET = frozenset({"CLIENTVAULT_TOKEN_KEY_ID", "CLIENTVAULT_KEK_ACTIVE", "CLIENTVAULT_SECRETS_DIR"})
CREDENTIALS = re.compile(r"://[^/@\s]*:[^/@\s]*@")  # user:password@ in a URL


def mounted(service: str) -> dict[str, str]:
    """The secrets a container gets: variable (the file's name in /run/secrets) -> the Compose secret."""
    return {
        entry["target"]: entry["source"] for entry in SERVICES_[service].get("secrets", []) if isinstance(entry, dict)
    }


def holders(variable: str) -> dict[str, str]:
    """Which containers get `variable` as a secret file, and from which secret."""
    return {name: mounted(name)[variable] for name in SERVICES_ if variable in mounted(name)}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/compose-secrets.sh run as the docs say, with this checkout's `clientvault` in place of the image."""
    directory = tmp_path_factory.mktemp("compose") / "secrets"
    done = subprocess.run(
        ["sh", str(DEPLOY / "compose-secrets.sh"), str(directory)],
        env={**os.environ, "CLIENTVAULT": f"{sys.executable} -m ops"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return directory


def secret(directory: Path, name: str) -> str:
    return (directory / name).read_text()


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(COMPOSE_SCHEMA.read_text())
    return loaded


def test_schema_is_the_vendored_compose_spec() -> None:
    assert schema()["title"] == "Compose Specification"
    assert (COMPOSE_SCHEMA.parent / "README.md").exists(), "its origin and version are recorded"


def test_valid_against_the_compose_specification() -> None:
    jsonschema.Draft7Validator(schema()).validate(COMPOSE)
    jsonschema.Draft7Validator(schema()).validate(interpolate(COMPOSE, {}))


def test_the_schema_check_catches_mistakes() -> None:
    broken = interpolate(COMPOSE, {})
    broken["services"]["gateway"]["depends_on"]["auth"]["condition"] = "service_ready"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema()).validate(broken)


def test_each_secret_is_a_file_the_script_writes(written: Path) -> None:
    """Compose mounts each secret from a file of ./secrets (a missing one stops it, naming the path); the script
    writes exactly those, for the containers' user to read and nobody else on the host."""
    assert COMPOSE["secrets"] == {name: {"file": f"./secrets/{name}"} for name in COMPOSE["secrets"]}
    assert {path.name for path in written.iterdir()} == set(COMPOSE["secrets"])
    used = {source for name in SERVICES_ for source in mounted(name).values()} | {"postgres_password"}
    assert used == set(COMPOSE["secrets"]), "every secret is used, and no service uses an undefined one"
    assert stat.S_IMODE(written.stat().st_mode) == 0o700
    for path in written.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o444, path.name
        assert path.read_text(), f"{path.name} is empty"
    assert "secrets/" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_script_never_overwrites_secrets(written: Path) -> None:
    before = {path.name: path.read_text() for path in written.iterdir()}
    done = subprocess.run(["sh", str(DEPLOY / "compose-secrets.sh"), str(written)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "not overwriting" in done.stderr
    assert {path.name: path.read_text() for path in written.iterdir()} == before


def test_the_example_env_file_holds_settings_not_secrets() -> None:
    assert not re.search(r"\$\{[A-Z_]+:?\?", RAW), "no variable is required: the secrets are files"
    example = (DEPLOY / "compose.env.example").read_text()
    variables = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    assert variables <= set(re.findall(r"\$\{([A-Z_]+)", RAW)), "each of them is used"
    assert not [v for v in variables if re.search(r"PASSWORD|TOKEN|SECRET|KEY$|KEKS|URL", v)]


def test_the_database_url_holds_the_postgres_password(written: Path) -> None:
    postgres = SERVICES_["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == f"{SECRETS_DIR}/postgres_password"
    assert postgres["secrets"] == ["postgres_password"]
    user, database = postgres["environment"]["POSTGRES_USER"], postgres["environment"]["POSTGRES_DB"]
    password = secret(written, "postgres_password")
    assert secret(written, "database_url") == f"postgresql://{user}:{password}@postgres:5432/{database}"


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


def test_each_process_is_its_own_nats_user(written: Path) -> None:
    """As under `clientvault up`: nats-server gets embedded.py's users with each password from its secret file
    (put into its own environment by its entrypoint), and each process connects as its own user with that user's
    password (and no other's)."""
    assert nats_authorization_from_environment() in interpolate(COMPOSE, {})["configs"]["nats"]["content"]
    assert mounted("nats") == {nats_password_variable(user): f"nats_{user}_password" for user in NATS_USERS}
    (entrypoint,) = interpolate(SERVICES_["nats"]["command"], {})
    assert 'for file in /run/secrets/NATS_*_PASSWORD; do export "${file##*/}=$(cat "$file")"; done;' in entrypoint
    assert "environment" not in SERVICES_["nats"]
    users = {**{name: name for name in PROCESSES}, "migrate": NATS_OPERATOR}  # the migration creates the stream
    assert holders("NATS_URL") == {name: f"nats_{user}_url" for name, user in users.items()}
    for user in NATS_USERS:
        password = secret(written, f"nats_{user}_password")
        assert re.fullmatch("p[0-9a-f]{64}", password), "a letter first, then hex (nats-server parses it)"
        assert secret(written, f"nats_{user}_url") == f"nats://{user}:{password}@nats:4222"


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
        assert env[name]["CLIENTVAULT_SECRETS_DIR"] == SECRETS_DIR
    assert set(holders("NATS_URL")) == {*PROCESSES, "migrate"}, "every process watches the revocation bucket"
    for name in SERVICES:
        assert env[name]["CLIENTVAULT_GRPC_LISTEN"] == f"0.0.0.0:{GRPC_PORTS[name]}"
    assert holders("DATABASE_URL") == {name: "database_url" for name in (*SERVICES, "migrate")}
    assert SERVICES_["migrate"]["environment"] == {"CLIENTVAULT_SECRETS_DIR": SECRETS_DIR}
    assert env["gateway"]["CLIENTVAULT_GATEWAY_HOST"] == "0.0.0.0"  # noqa: S104 (in its container)
    assert SERVICES_["gateway"]["ports"] == ["${CLIENTVAULT_HTTP_BIND:-127.0.0.1}:${CLIENTVAULT_HTTP_PORT:-8000}:8000"]
    assert not any("ports" in SERVICES_[name] for name in SERVICES_ if name != "gateway"), "only the gateway"


def test_only_auth_holds_the_signing_key_and_only_the_vault_the_keks() -> None:
    assert holders("CLIENTVAULT_TOKEN_SIGNING_KEY") == {"auth": "token_signing_key"}
    assert holders("CLIENTVAULT_MFA_KEY") == {"auth": "mfa_key"}
    assert holders("CLIENTVAULT_KEKS") == {"vault": "keks"}


def test_each_producer_holds_only_its_own_event_signing_key_and_the_audit_service_trusts_the_public_halves(
    written: Path,
) -> None:
    assert holders("CLIENTVAULT_EVENT_SIGNING_KEY") == {p: f"{p}_event_signing_key" for p in PRODUCERS}
    # The vault too: it acts on auth's "user disabled" events only when auth's key signed them.
    assert holders("CLIENTVAULT_EVENT_PUBLIC_KEYS") == {"audit": "event_public_keys", "vault": "event_public_keys"}
    public_halves = [
        f"{p}:{ed25519.encode_public(ed25519.private_key(secret(written, f'{p}_event_signing_key'), p).public_key())}"
        for p in PRODUCERS
    ]
    assert secret(written, "event_public_keys") == ",".join(public_halves)


def test_only_the_migration_and_the_vault_hold_the_rotation_tasks_password(written: Path) -> None:
    assert holders("CLIENTVAULT_ROTATION_TASKS_PASSWORD") == {
        "migrate": "rotation_tasks_password",
        "vault": "rotation_tasks_password",
    }
    assert len(secret(written, "rotation_tasks_password")) >= 32


def test_the_gateway_holds_the_context_key_and_each_service_only_its_own_derived_key(written: Path) -> None:
    assert holders("CLIENTVAULT_CONTEXT_KEY") == {"gateway": "context_key"}
    assert holders("CLIENTVAULT_CONTEXT_VERIFY_KEY") == {s: f"{s}_context_verify_key" for s in SERVICES}
    context_key = base64.b64decode(secret(written, "context_key"))
    for service in SERVICES:
        assert secret(written, f"{service}_context_verify_key") == service_key_setting(context_key, service)


def test_every_variable_set_is_a_setting_of_the_process() -> None:
    known = documented_settings()
    for name in (*PROCESSES, "migrate"):
        unknown = (set(SERVICES_[name]["environment"]) | set(mounted(name))) - known
        assert not unknown, f"{name} sets variables that no setting reads: {unknown}"


def secrets_in_environment(services: dict[str, Any]) -> list[str]:
    """`service.VARIABLE` of every environment entry that is a secret: by its name, or a URL with credentials."""
    found = []
    for name, service in services.items():
        for key, value in interpolate(service.get("environment", {}), {}).items():
            sounds_secret = key in SECRET_SETTINGS or re.search(r"PASSWORD|TOKEN|SECRET|KEY$|KEKS|URL$", key)
            if (sounds_secret and key not in NOT_SECRET and not key.endswith("_FILE")) or CREDENTIALS.search(value):
                found.append(f"{name}.{key}")
    return found


def test_no_container_has_a_secret_in_its_environment() -> None:
    """`docker inspect` shows a container's environment: no password, key, token or URL with credentials in it."""
    assert secrets_in_environment(SERVICES_) == []
    assert not re.search(r"[A-Za-z0-9+/]{40,}={0,2}", RAW), "no key-like literal anywhere in the file"


def test_the_check_catches_a_secret_in_the_environment() -> None:
    """As this file once had them: a URL with a password, a key."""
    leaky = {
        "migrate": {"environment": {"DATABASE_URL": "postgresql://clientvault:pw@postgres:5432/clientvault"}},
        "auth": {"environment": {"CLIENTVAULT_TOKEN_SIGNING_KEY": "${CLIENTVAULT_TOKEN_SIGNING_KEY:-k}"}},
        "gateway": {"environment": {"CLIENTVAULT_CORS_ORIGINS": "https://user:pw@app.example.com"}},
    }
    assert secrets_in_environment(leaky) == [
        "migrate.DATABASE_URL",
        "auth.CLIENTVAULT_TOKEN_SIGNING_KEY",
        "gateway.CLIENTVAULT_CORS_ORIGINS",
    ]
