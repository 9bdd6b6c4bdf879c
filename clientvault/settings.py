"""Settings, read from the environment once in each process's main() and passed down.

Every field is documented in README.md ("Configuration") with its default. Nothing reads the
environment at import time; tests build settings objects directly.

Any setting can also come from a file, which is how secrets reach a container without being in its
environment (a Kubernetes secret volume, Compose `secrets:`): `<VARIABLE>_FILE` names the file whose content
(one trailing newline dropped) is the value (`CLIENTVAULT_KEKS_FILE=/run/secrets/keks`), or a file named
after the variable sits in the directory `CLIENTVAULT_SECRETS_DIR` (`/var/run/secrets/clientvault/DATABASE_URL`).
The variable itself (even empty) wins over a file in that directory; it may not be set together with its `_FILE`.
"""

import os
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from clientvault import fields
from clientvault.policy import Role

LogLevel = Literal["debug", "info", "warning", "error"]


def _parts(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _split_commas(value: object) -> object:
    """A comma-separated environment value as a list (empty parts dropped)."""
    return _parts(value) if isinstance(value, str) else value


def _split_networks(value: object) -> object:
    """Comma-separated networks; a host address with bits set past its prefix is taken as its network."""
    return [ip_network(part, strict=False) for part in _parts(value)] if isinstance(value, str) else value


# A list field read from one comma-separated environment variable (NoDecode: not parsed as JSON first).
CommaSeparated = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]
Roles = Annotated[list[Role], NoDecode, BeforeValidator(_split_commas)]
Networks = Annotated[list[IPv4Network | IPv6Network], NoDecode, BeforeValidator(_split_networks)]


FILE_SUFFIX = "_FILE"
SECRETS_DIR = "CLIENTVAULT_SECRETS_DIR"


class SecretFileError(SettingsError):
    """A `<VARIABLE>_FILE` that cannot be used: the file is missing or unreadable, or the variable is set too.
    The message names the variable and the path, never the content."""


class FromFiles(PydanticBaseSettingsSource):
    """The settings given as `<VARIABLE>_FILE`: read from the file the variable names."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        secrets_dir = os.environ.get(SECRETS_DIR)
        for name, field in self.settings_cls.model_fields.items():
            variable = variable_of(self.settings_cls, name)
            if path := os.environ.get(variable + FILE_SUFFIX):
                if os.environ.get(variable):
                    raise SecretFileError(f"{variable} and {variable}{FILE_SUFFIX} are both set: keep one")
                given = variable + FILE_SUFFIX
            elif secrets_dir and variable not in os.environ and (Path(secrets_dir) / variable).exists():
                path, given = str(Path(secrets_dir) / variable), SECRETS_DIR
            else:
                continue
            key = field.validation_alias if isinstance(field.validation_alias, str) else name
            found[key] = _read(path, given)
        return found


def _read(path: str, given: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise SecretFileError(f"{given}: cannot read {path}: {reason}") from None
    return text.removesuffix("\n").removesuffix("\r")


def variable_of(settings_cls: type[BaseSettings], name: str) -> str:
    """The environment variable of a field: its alias (DATABASE_URL) or the prefix and its name, upper case."""
    alias = settings_cls.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else (settings_cls.model_config.get("env_prefix", "") + name).upper()


class Settings(BaseSettings):
    """What every process needs: where the database, the broker and the other services are."""

    model_config = SettingsConfigDict(env_prefix="CLIENTVAULT_", frozen=True, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, FromFiles(settings_cls), env_settings

    database_url: str | None = Field(None, validation_alias="DATABASE_URL")
    nats_url: str | None = Field(None, validation_alias="NATS_URL")
    log_level: LogLevel = "info"
    db_pool_size: int = Field(10, ge=1, le=200)
    db_pool_timeout_s: float = Field(5.0, gt=0, le=60)
    rpc_timeout_s: float = Field(5.0, gt=0, le=60)
    # A statement of a service's pool runs at most this long (0: no limit); past the RPC deadline nobody waits.
    db_statement_timeout_s: float = Field(5.0, ge=0, le=3600)
    auth_addr: str = "127.0.0.1:50051"
    clients_addr: str = "127.0.0.1:50052"
    vault_addr: str = "127.0.0.1:50053"
    audit_addr: str = "127.0.0.1:50054"
    grpc_listen: str | None = None  # the serving process's bind address; default: its own *_addr
    grpc_reflection: bool = False
    # RPCs a service process works on at once; past it a call is refused at once (the gateway answers 503)
    # instead of queueing without bound behind a pool of db_pool_size connections.
    grpc_max_concurrent_rpcs: int = Field(200, ge=1, le=100_000)
    token_issuer: str = "clientvault"
    token_audience: str = "clientvault"
    # Auth signs access tokens for this long; every verifier refuses a token whose exp - iat is longer.
    access_token_ttl_s: int = Field(900, ge=60, le=3600)
    # A service's own key for the gateway's context attestations (base64 of 32 bytes, derived from the
    # gateway's context_key for this service: clientvault/attestation.py); unset: every call is unattested.
    context_verify_key: SecretStr | None = None
    # Prometheus /metrics of this process, on a port of its own (never behind the public ingress); 0: off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=0, le=65535)
    # Traces go here over OTLP/HTTP (clientvault/tracing.py); unset: no tracing at all.
    otel_exporter_otlp_endpoint: str | None = Field(None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    # Roles that may reveal (policy.NEEDS_MFA) only with a second factor; every service's edge checks it.
    mfa_required_roles: Roles = []
    # Per-client access: on, a non-admin sees and acts on only the clients they are a member of (the clients and
    # vault services check it); off, everyone sees every client, as before members existed.
    client_scoping: bool = False

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SystemExit("DATABASE_URL is not set: point it at PostgreSQL, or use `clientvault up`")
        return self.database_url

    def require_nats_url(self) -> str:
        if not self.nats_url:
            raise SystemExit("NATS_URL is not set: point it at nats-server with JetStream, or use `clientvault up`")
        return self.nats_url


class EventSigning(Settings):
    """A producer of audit events (clientvault/events.py): its own signing key."""

    # Signs every audit event the process produces (base64 of a 32-byte Ed25519 private key; that producer alone
    # holds it).
    event_signing_key: SecretStr | None = None


class Producer(EventSigning):
    """A producer that publishes through its outbox (clientvault/outbox.py)."""

    # Events per relay transaction, published as one JetStream atomic batch (at most 1000 messages per batch); a
    # larger batch spends less per event on the SELECT, the UPDATE and the batch's one fsync (bench/ingest.py).
    outbox_batch: int = Field(1000, ge=1, le=1000)
    outbox_sweep_s: float = Field(1.0, gt=0, le=60)


class AuthSettings(Producer):
    token_signing_key: SecretStr | None = None  # base64 of a 32-byte Ed25519 private key (seed)
    token_key_id: str = "k1"
    # Retired keys' public halves, "kid:base64,…": published until the tokens they signed have expired.
    token_previous_keys: CommaSeparated = []
    refresh_idle_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    refresh_absolute_ttl_s: int = Field(30 * 24 * 3600, ge=60)
    sign_in_email_max_failures: int = Field(5, ge=1)
    sign_in_email_window_s: int = Field(900, ge=1)
    sign_in_ip_max_failures: int = Field(30, ge=1)
    sign_in_ip_window_s: int = Field(60, ge=1)
    max_sessions_per_user: int = Field(20, ge=1, le=1000)  # a sign-in beyond it ends the least recently used
    # base64 of 32 bytes: seals each user's TOTP seed at rest (AES-256-GCM); unset: MFA cannot be enrolled.
    mfa_key: SecretStr | None = None


class ClientsSettings(Producer):
    """The clients service: a producer of its audit events (member changes, archive, access) through its outbox,
    and the owner of access requests, grants and break-glass (docs/access.md)."""

    # The longest grant an approved access request may give, in minutes (a request asking more is refused, 422).
    grant_max_minutes: int = Field(480, ge=1, le=fields.GRANT_MINUTES_MAX)
    # Break-glass (POST /clients/{clientId}/break-glass): off unless the installation turns it on.
    break_glass: bool = False
    # How often the clients service records the end of grants past their expiry (the `access_grant_ended` event and,
    # for a break-glass, the vault's rotation tasks). Access itself stops at the expiry, without it.
    grant_sweep_interval_s: float = Field(15.0, gt=0, le=300)


class GatewaySettings(Settings):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(8000, ge=0, le=65535)
    trusted_proxies: Networks = []
    cors_origins: CommaSeparated = []
    docs_enabled: bool = True
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    # base64 of 32 bytes: the gateway attests the request context of its calls with keys derived from it.
    context_key: SecretStr | None = None


class RotationIdentity(Settings):
    """The service identity of rotation work on leave (docs/security.md, "The rotation-tasks identity"): an auth
    account of role `rotation_tasks`, which may call Clients/CreateTask and nothing else. The operator issues it
    with this password (`clientvault up` generates one; `clientvault migrate` issues it when the password is set);
    the vault signs in with it."""

    rotation_tasks_email: str = "rotation-tasks@clientvault.internal"
    rotation_tasks_password: SecretStr | None = None  # unset: no rotation tasks on leave (the vault says so once)


class VaultSettings(Producer, RotationIdentity):
    """The vault's key provider and outbox relay. See README.md ("Vault") for the keyring format."""

    key_provider: Literal["env", "transit"] = "env"
    keks: SecretStr | None = None  # env keyring: "v1:<base64 32 bytes>,v2:<base64>"
    kek_active: str | None = None  # the version new data keys are wrapped with; default: the last in the keyring
    kek_file: str | None = None  # a JSON keyring file (keys `vault_keks`, `vault_kek_active`), reloaded on change
    transit_addr: str | None = None  # OpenBao / HashiCorp Vault, e.g. http://127.0.0.1:8200
    transit_token: SecretStr | None = None
    transit_mount: str = "transit"
    transit_key: str = "clientvault"
    dek_cache_ttl_s: float = Field(300.0, ge=0, le=3600)  # unwrapped data keys kept in memory; 0: none
    # Reveal rate limits (services/vault/limits.py): attempts per user / per client IP in a fixed window; 0: off.
    reveal_user_max: int = Field(30, ge=0)
    reveal_ip_max: int = Field(120, ge=0)
    reveal_window_s: int = Field(60, ge=1, le=86_400)
    # Old versions kept per credential when its secret changes (the newest ones); 0: none.
    secret_versions: int = Field(10, ge=0, le=1000)
    # The trash: a deleted credential is purged (with its versions) this many days later, looked for this often.
    trash_days: float = Field(30.0, ge=0, le=36_500)
    trash_purge_interval_s: float = Field(3600.0, gt=0, le=86_400)
    # The public keys the vault trusts for the events it acts on ("producer:base64,…", as the audit service's):
    # auth's, for a user disabled (services/vault/leavers.py). Without auth's key no rotation task is made.
    event_public_keys: CommaSeparated = []
    # How long the vault keeps what the clients service answered about a client (with scoping on, a user's access to
    # it, never past a grant's end; for a reveal, whether it requires a reason). Changes drop it at once, through the
    # revocation bucket; 0: ask on every call.
    client_access_cache_ttl_s: float = Field(30.0, ge=0, le=3600)


class AuditSettings(EventSigning):
    """The audit service's consumer, and the producer of `audit_log_read` events (signed with
    `event_signing_key`). See README.md ("Audit")."""

    audit_batch: int = Field(2000, ge=1, le=5000)  # messages fetched, stored in one transaction and acked
    # The producers' event-signing public keys, "producer:base64,…" (retired keys stay while their entries do).
    event_public_keys: CommaSeparated = []


class JetStreamSettings(Settings):
    """The operator's JetStream bootstrap (`clientvault migrate`, `up`: ops/jetstream.py): what the AUDIT stream
    and the revocation bucket are created with, and brought back to when they differ."""

    nats_replicas: int = Field(1, ge=1, le=5)
    # Events older than this leave the stream, read or not: longer than any audit-service outage to ride out.
    audit_stream_max_age_s: int = Field(30 * 86_400, ge=3600)
    # The stream's size cap (unset: none); when it is full, new events wait in the vault's outbox.
    audit_stream_max_bytes: int | None = Field(None, ge=1024 * 1024)


class MigrateSettings(JetStreamSettings, RotationIdentity):
    """`clientvault migrate`: the schemas, the JetStream bootstrap, and the rotation-tasks identity's issuance."""


class OperatorSettings(AuditSettings):
    """What the operator commands (`clientvault audit …`) read besides the data dir: the producers' event keys to
    verify with (`event_public_keys`), and the audit checkpoint key that signs heads (the CronJob's alone)."""

    audit_checkpoint_key: SecretStr | None = None  # base64 of a 32-byte Ed25519 private key
    # Public halves of the checkpoint keys whose checkpoints `audit verify --checkpoints` trusts, "base64,…".
    audit_checkpoint_public_keys: CommaSeparated = []
