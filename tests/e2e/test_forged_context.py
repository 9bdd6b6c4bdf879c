"""Forged request context, tried as an attacker inside the cluster network would: calling a service's gRPC
port directly with a valid token, claiming a client IP, user agent and request id of their choice (none, or
with an attestation made with the wrong key, one made for another RPC or service, an old one), to put a false
IP into the audit trail, to slip past the per-IP reveal limit and sign-in throttle, or to aim them at someone
else's IP. The services believe only what the gateway attests (clientvault/attestation.py); otherwise the
caller is its network address. The system is one of its own, with small per-IP limits.

Each attack runs from a loopback address of its own (a TCP relay whose connections leave from it), so that
what one test does from its address cannot use up another's limits.
"""

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import grpc
import pytest

from clientvault.attestation import HEADER, Attester, derive_key
from clientvault.v1 import auth_pb2, auth_pb2_grpc, vault_pb2, vault_pb2_grpc
from tests.audit_support import wait_for_entries
from tests.system import Api, Session, System, running, unique_ip
from tests.vault_support import create, new_client

REVEAL_IP_MAX, SIGN_IN_IP_MAX = 4, 3
ENV = {
    "CLIENTVAULT_TRUSTED_PROXIES": "127.0.0.1/32",
    "CLIENTVAULT_REVEAL_USER_MAX": "1000",
    "CLIENTVAULT_REVEAL_IP_MAX": str(REVEAL_IP_MAX),
    "CLIENTVAULT_REVEAL_WINDOW_S": "86400",  # no window rolls over during a test
    "CLIENTVAULT_SIGN_IN_IP_MAX_FAILURES": str(SIGN_IN_IP_MAX),
    "CLIENTVAULT_SIGN_IN_IP_WINDOW_S": "86400",
    "CLIENTVAULT_SIGN_IN_EMAIL_MAX_FAILURES": "1000",
}
REVEAL = "/clientvault.v1.Vault/RevealCredential"
FORGED_IP = "198.51.100.66"


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    with running(Path(tmp_path_factory.mktemp("attacked")) / "data", ENV) as attacked:
        async with Api(attacked) as client:
            yield client


@pytest.fixture(scope="module")
async def admin(api: Api) -> Session:
    return await api.session("admin")


@pytest.fixture
async def credential(api: Api, admin: Session) -> tuple[str, str]:
    """A new credential: (client id, credential id)."""
    client_id = await new_client(api, admin)
    return client_id, await create(api, admin, client_id, label="Router", secret="s3cret-router")


def own_address() -> str:
    """A loopback address for one attacker (127.0.0.1 is the gateway's)."""
    value = uuid.uuid4().int
    return f"127.{value % 250 + 1}.{(value >> 8) % 250}.{(value >> 16) % 250 + 2}"


@asynccontextmanager
async def channel_from(source: str, target: str) -> AsyncIterator[grpc.aio.Channel]:
    """A gRPC channel to `target` whose TCP connections come from the address `source` (through a relay)."""
    host, port = target.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.sockets[0].getsockname()[1]}") as channel:
            yield channel
    finally:
        server.close()
        await server.wait_closed()


def claims(session: Session | None, ip: str = FORGED_IP) -> dict[str, str]:
    """What a forger sends: the client IP of their choice, and a user agent and request id to recognise."""
    mark = uuid.uuid4().hex
    sent = {"x-client-ip": ip, "x-user-agent": f"forged-agent/{mark}", "x-request-id": f"forged-{mark}"}
    return sent | ({"authorization": session.headers["Authorization"]} if session else {})


def attested_with(key: bytes, service: str, method: str, metadata: dict[str, str], now: float) -> dict[str, str]:
    return {**metadata, HEADER: Attester(service, key).attest(method, metadata, now)}


def service_key(system: System, service: str) -> bytes:
    """The service's real key, as `up` derived it (what a thief of that key, or of the gateway's, would hold)."""
    return derive_key(base64.b64decode(system.secrets()["context_key"]), service)


async def reveal_directly(
    source: str, api: Api, credential: tuple[str, str], metadata: dict[str, str]
) -> grpc.StatusCode:
    client_id, credential_id = credential
    request = vault_pb2.RevealCredentialRequest(client_id=client_id, credential_id=credential_id)
    async with channel_from(source, api.system.info_address("vault")) as channel:
        try:
            await vault_pb2_grpc.VaultStub(channel).RevealCredential(
                request, metadata=tuple(metadata.items()), timeout=5
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def audited_reveal(api: Api, admin: Session, credential_id: str) -> dict[str, Any]:
    page = await wait_for_entries(api, admin, 1, credentialId=credential_id, action="credential_reveal")
    assert page["total"] == 1, page
    return page["items"][0]  # type: ignore[no-any-return]


async def test_a_direct_reveal_with_a_forged_client_ip_is_audited_from_the_callers_address(
    api: Api, admin: Session, credential: tuple[str, str]
) -> None:
    attacker, source = await api.session("manager"), own_address()
    sent = claims(attacker)

    assert await reveal_directly(source, api, credential, sent) is grpc.StatusCode.OK

    entry = await audited_reveal(api, admin, credential[1])
    assert (entry["ip"], entry["userAgent"]) == (source, "")
    log = (await api.raw.get("/audit-logs", headers=admin.headers, params={"credentialId": credential[1]})).text
    assert FORGED_IP not in log
    assert sent["x-user-agent"] not in log


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda system, sent, now: attested_with(bytes(32), "vault", REVEAL, sent, now), id="wrong key"),
        pytest.param(
            lambda system, sent, now: attested_with(service_key(system, "audit"), "vault", REVEAL, sent, now),
            id="another services key",
        ),
        pytest.param(
            lambda system, sent, now: attested_with(
                service_key(system, "vault"), "vault", "/clientvault.v1.Vault/ListCredentials", sent, now
            ),
            id="made for another method",
        ),
        pytest.param(
            lambda system, sent, now: attested_with(
                service_key(system, "auth"), "auth", "/clientvault.v1.Auth/GetMe", sent, now
            ),
            id="made for another service",
        ),
        pytest.param(
            lambda system, sent, now: attested_with(service_key(system, "vault"), "vault", REVEAL, sent, now - 600),
            id="ten minutes old",
        ),
        pytest.param(
            lambda system, sent, now: {
                **attested_with(service_key(system, "vault"), "vault", REVEAL, {**sent, "authorization": "x"}, now),
                "authorization": sent["authorization"],
            },
            id="made for another caller",
        ),
    ],
)
async def test_a_forged_or_replayed_attestation_is_not_believed(
    api: Api, admin: Session, credential: tuple[str, str], forge: Any
) -> None:
    attacker, source = await api.session("manager"), own_address()
    sent = forge(api.system, claims(attacker), time.time())

    assert await reveal_directly(source, api, credential, sent) is grpc.StatusCode.OK

    entry = await audited_reveal(api, admin, credential[1])
    assert (entry["ip"], entry["userAgent"]) == (source, "")
    # The vault says so in its log: the refused attestation, the caller's address and what it claimed.
    lines = log_lines(api.system, "vault")
    (warning,) = [line for line in lines if line.get("claimed_request_id") == sent["x-request-id"]]
    assert warning["event"] == "rpc.context_unattested"
    assert (warning["context"], warning["peer"]) == ("unattested", source)
    assert warning["reason"] in {"attestation does not match", "stale attestation"}
    assert not [line for line in lines if line.get("request_id") == sent["x-request-id"]]


def log_lines(system: System, process: str) -> list[dict[str, Any]]:
    text = (system.data_dir / "logs" / f"{process}.log").read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_through_the_gateway_the_real_client_ip_and_user_agent_are_audited(
    api: Api, admin: Session, credential: tuple[str, str]
) -> None:
    manager, ip = await api.session("manager"), unique_ip()
    client_id, credential_id = credential
    headers = {**manager.headers, "X-Forwarded-For": ip, "User-Agent": "honest-browser/1.0"}

    assert (await api.raw.get(f"/clients/{client_id}/credentials/{credential_id}", headers=headers)).status_code == 200

    entry = await audited_reveal(api, admin, credential_id)
    assert (entry["ip"], entry["userAgent"]) == (ip, "honest-browser/1.0")


async def test_forging_a_new_client_ip_on_every_reveal_does_not_escape_the_per_ip_limit(
    api: Api, credential: tuple[str, str]
) -> None:
    attacker, source = await api.session("manager"), own_address()

    statuses = [
        await reveal_directly(source, api, credential, claims(attacker, ip=unique_ip()))
        for _ in range(REVEAL_IP_MAX + 1)
    ]

    assert statuses == [grpc.StatusCode.OK] * REVEAL_IP_MAX + [grpc.StatusCode.RESOURCE_EXHAUSTED]


async def test_a_forged_client_ip_cannot_use_up_someone_elses_reveal_limit(
    api: Api, credential: tuple[str, str]
) -> None:
    attacker, victim, victims_ip = await api.session("manager"), await api.session("manager"), unique_ip()
    client_id, credential_id = credential

    for _ in range(REVEAL_IP_MAX + 1):
        await reveal_directly(own_address(), api, credential, claims(attacker, ip=victims_ip))

    r = await api.raw.get(
        f"/clients/{client_id}/credentials/{credential_id}", headers={**victim.headers, "X-Forwarded-For": victims_ip}
    )
    assert r.status_code == 200


async def sign_in_directly(source: str, api: Api, email: str, password: str, ip: str) -> grpc.StatusCode:
    request = auth_pb2.SignInRequest(email=email, password=password)
    async with channel_from(source, api.system.info_address("auth")) as channel:
        try:
            await auth_pb2_grpc.AuthStub(channel).SignIn(request, metadata=tuple(claims(None, ip).items()), timeout=10)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def guess() -> tuple[str, str]:
    return f"ghost-{uuid.uuid4().hex[:12]}@example.com", "wrong-password"


async def test_forging_a_new_client_ip_on_every_guess_does_not_escape_the_sign_in_throttle(api: Api) -> None:
    source = own_address()

    statuses = [await sign_in_directly(source, api, *guess(), ip=unique_ip()) for _ in range(SIGN_IN_IP_MAX + 1)]

    assert statuses == [grpc.StatusCode.UNAUTHENTICATED] * SIGN_IN_IP_MAX + [grpc.StatusCode.RESOURCE_EXHAUSTED]


async def test_a_forged_client_ip_cannot_lock_someone_else_out_of_signing_in(api: Api) -> None:
    victim, victims_ip = await api.new_account("manager"), unique_ip()

    for _ in range(SIGN_IN_IP_MAX + 1):
        await sign_in_directly(own_address(), api, *guess(), ip=victims_ip)

    session = await api.sign_in(victim, ip=victims_ip)  # 200 through the gateway, from the victim's own IP
    assert session.access_token
