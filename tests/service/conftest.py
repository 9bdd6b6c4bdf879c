"""The service tier: one service in-process on a real PostgreSQL, served on port 0 behind the kit's edge
(registered as `rpc.serve` registers it), called through a real gRPC channel.

Each service gets its schema migrated (its own migrations only) in one database of the run, and tokens
minted in-process with the auth service's signing code, verified by the kit's verifier as in production.
Nothing here needs NATS: the vault's relay is not running (its outbox rows stay unsent), the deny list is
empty.
"""

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

import grpc
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import SecretStr

from clientvault import ed25519, logging, rpc
from clientvault.attestation import HEADER, Attester, ContextCheck, derive_key
from clientvault.db import Database
from clientvault.events import EventSigner
from clientvault.ids import new_id
from clientvault.policy import Role
from clientvault.revocation import DenyList
from clientvault.tokens import TokenVerifier
from clientvault.v1 import audit_pb2_grpc, auth_pb2_grpc, clients_pb2_grpc, vault_pb2_grpc
from services.auth.signing import TokenSigner
from services.auth.users import User
from tests import postgres

ISSUER = AUDIENCE = "clientvault"
# Small sign-in limits, so that the throttle tests need few password checks (argon2id, on purpose slow).
SIGN_IN_EMAIL_MAX, SIGN_IN_IP_MAX = 3, 4
CONTEXT_KEY = os.urandom(32)  # the tier's gateway context key; each service is served with its derived key
VAULT_KEK = os.urandom(32)  # the tier's KEK v1: every vault served here shares the database's data keys


@pytest.fixture(scope="session", autouse=True)
def json_logs() -> None:
    """The services' logs as in production (JSON, tracebacks without locals), not the console renderer, whose
    pretty tracebacks take seconds to draw."""
    logging.configure("info", "service-tier")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with (
        postgres.server(tmp_path_factory.mktemp("service-pg")) as admin_url,
        postgres.fresh_database(admin_url, drop=postgres.external()) as url,  # an embedded one goes as a whole
    ):
        yield url


class Tokens:
    """Access tokens as the auth service signs them, and the verifier every service builds from its keys."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.signer = TokenSigner(self.key, kid="k1", issuer=ISSUER, audience=AUDIENCE, ttl_s=300)
        self.denylist = DenyList()
        self.verifier = TokenVerifier(
            issuer=ISSUER, audience=AUDIENCE, max_ttl_s=300, fetch_keys=self._keys, denylist=self.denylist
        )

    async def _keys(self) -> dict[str, Ed25519PublicKey]:
        return self.signer.public_keys()

    def user(self, role: str, user_id: UUID | None = None) -> User:
        uid = user_id or new_id()
        return User(uid, f"{role}-{uid.hex[:8]}@example.com", f"Test {role}", Role(role), datetime.now(UTC), None)

    def metadata(self, role: str | User, **extra: str) -> tuple[tuple[str, str], ...]:
        """gRPC metadata with the caller's token, plus e.g. x_client_ip="10.0.0.1" (believed once `Service.vouched`)."""
        user = role if isinstance(role, User) else self.user(role)
        token = self.signer.sign(user, new_id())
        return (("authorization", f"Bearer {token}"), *((k.replace("_", "-"), v) for k, v in extra.items()))


@pytest.fixture(scope="session")
def tokens() -> Tokens:
    return Tokens()


@asynccontextmanager
async def serving(
    register: Callable[[grpc.aio.Server], None], verifier: TokenVerifier, name: str
) -> AsyncIterator[str]:
    """A gRPC server on 127.0.0.1, port 0, its handlers behind the kit's edge as `rpc.serve` puts them, with `name`'s
    own context key (derived from the tier's, as `up` does): its address."""
    context = ContextCheck(name, derive_key(CONTEXT_KEY, name))
    server = grpc.aio.server()
    register(cast(grpc.aio.Server, rpc.GuardedServer(server, rpc.Edge(verifier, context))))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


@dataclass
class Service:
    """One service being served: a stub on a real channel to it, its database, and the tier's tokens."""

    name: str
    address: str
    stub: Any
    db: Database
    database_url: str
    tokens: Tokens

    def vouched(self, rpc_name: str, metadata: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """`metadata` as the gateway sends it to this service for `rpc_name` (e.g. "SignIn"): attested."""
        method = f"/clientvault.v1.{self.name.capitalize()}/{rpc_name}"
        attestation = Attester(self.name, derive_key(CONTEXT_KEY, self.name)).attest(method, dict(metadata))
        return (*metadata, (HEADER, attestation))

    async def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """A statement straight on the database (autocommit), e.g. to read a row or break one."""
        async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
            cursor = await conn.execute(statement, params)
            return await cursor.fetchall() if cursor.description else []


Register = Callable[[grpc.aio.Server], None]


@asynccontextmanager
async def service(
    database_url: str, tokens: Tokens, name: str, stub: Callable[[Any], Any], build: Callable[[Database], Register]
) -> AsyncIterator[Service]:
    """Migrates `name`'s schema, serves what `build(db)` registers, and yields a `stub` on a channel to it."""
    await asyncio.to_thread(postgres.migrate, database_url, name)
    db = Database(database_url, pool_size=10, statement_timeout_s=5)  # a service's defaults
    try:
        async with serving(build(db), tokens.verifier, name) as address, rpc.channel(address) as channel:
            yield Service(name, address, stub(channel), db, database_url, tokens)
    finally:
        await db.dispose()


@pytest.fixture(scope="session")
async def auth(database_url: str, tokens: Tokens) -> AsyncIterator[Service]:
    """The auth service, signing with the tier's key. Its NATS (revocations) is an address nobody listens on:
    no test here revokes."""
    from clientvault.revocation import Revoker
    from clientvault.settings import AuthSettings
    from services.auth.factors import Factors
    from services.auth.mfa import Sealer
    from services.auth.server import AuthServicer
    from services.auth.sessions import Sessions

    settings = AuthSettings(
        sign_in_email_max_failures=SIGN_IN_EMAIL_MAX,
        sign_in_ip_max_failures=SIGN_IN_IP_MAX,
        mfa_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
    )
    revoker = Revoker("nats://127.0.0.1:9")

    def build(db: Database) -> Register:
        factors = Factors(db, Sealer(settings.mfa_key))
        sessions = Sessions(db, tokens.signer, revoker, settings, factors)
        servicer = AuthServicer(db, sessions, tokens.signer, factors, revoker)
        return lambda server: auth_pb2_grpc.add_AuthServicer_to_server(servicer, server)

    try:
        async with service(database_url, tokens, "auth", auth_pb2_grpc.AuthStub, build) as served:
            yield served
    finally:
        await revoker.close()


async def unannounced(client_id: UUID, user_id: UUID | None) -> None:
    """Where a clients service here announces access changes: nowhere (no NATS in this tier)."""


@pytest.fixture(scope="session")
async def clients(database_url: str, tokens: Tokens) -> AsyncIterator[Service]:
    """The clients service. It asks auth only about task assignees: here at an address nobody listens on."""
    from services.clients.server import ClientsServicer

    async with rpc.channel("127.0.0.1:9") as no_auth:

        def build(db: Database) -> Register:
            servicer = ClientsServicer(db, auth_pb2_grpc.AuthStub(no_auth), 5, access_changed=unannounced)
            return lambda server: clients_pb2_grpc.add_ClientsServicer_to_server(servicer, server)

        async with service(database_url, tokens, "clients", clients_pb2_grpc.ClientsStub, build) as served:
            yield served


@pytest.fixture(scope="session")
async def vault(database_url: str, tokens: Tokens, clients: Service) -> AsyncIterator[Service]:
    """The vault (env keys, limits high), asking this tier's clients service about clients."""
    from clientvault.settings import VaultSettings
    from services.vault.credentials import Credentials
    from services.vault.crypto import DataKeys
    from services.vault.keys import EnvKeys
    from services.vault.limits import RevealLimiter
    from services.vault.rotation import check_keys
    from services.vault.server import ClientsDirectory, VaultServicer

    keys = EnvKeys({"v1": bytearray(VAULT_KEK)}, "v1")
    settings = VaultSettings(reveal_user_max=1_000_000, reveal_ip_max=1_000_000)
    async with rpc.channel(clients.address) as to_clients:

        def build(db: Database) -> Register:
            servicer = VaultServicer(
                db,
                Credentials(db, DataKeys(keys, 0), lambda: None, RevealLimiter(db, settings)),
                ClientsDirectory(clients_pb2_grpc.ClientsStub(to_clients), 5),
            )
            return lambda server: vault_pb2_grpc.add_VaultServicer_to_server(servicer, server)

        async with service(database_url, tokens, "vault", vault_pb2_grpc.VaultStub, build) as served:
            await check_keys(served.db, keys)
            yield served


# The audit service's own event key: it signs the `audit_log_read` entries of the reads tests make.
AUDIT_SIGNER = EventSigner("audit", ed25519.private_key(ed25519.generate(), "test"))


@pytest.fixture(scope="session")
async def audit(database_url: str, tokens: Tokens) -> AsyncIterator[Service]:
    """The audit service's log; tests append to the chain as the consumer does (services.audit.chain). Its reads
    are signed with a key of its own."""
    from services.audit.server import AuditServicer

    def build(db: Database) -> Register:
        return lambda server: audit_pb2_grpc.add_AuditServicer_to_server(AuditServicer(db, AUDIT_SIGNER), server)

    async with service(database_url, tokens, "audit", audit_pb2_grpc.AuditStub, build) as served:
        yield served
