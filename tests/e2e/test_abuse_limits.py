"""Abuse limits on a system of its own with small limits: reveals per user and per client IP (429 with
Retry-After, enforced by the vault itself), a statement timeout that turns a stuck query into a 503, a
bound on the RPCs a service works on at once, and a frozen service two calls away. Sign-in throttling is
in test_auth.py.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import psycopg
import pytest

from clientvault.v1 import vault_pb2, vault_pb2_grpc
from tests.audit_support import wait_for_entries
from tests.system import Api, Session, System, frozen, me, running, unique_ip
from tests.vault_support import create, new_client

PROBLEM = "application/problem+json"
USER_MAX, IP_MAX = 3, 5
# A day-long window: the limits cannot roll over in the middle of a test (unless it runs across midnight UTC).
WINDOW_S = 86_400
LIMITED_ENV = {
    "CLIENTVAULT_TRUSTED_PROXIES": "127.0.0.1/32",
    "CLIENTVAULT_REVEAL_USER_MAX": str(USER_MAX),
    "CLIENTVAULT_REVEAL_IP_MAX": str(IP_MAX),
    "CLIENTVAULT_REVEAL_WINDOW_S": str(WINDOW_S),
    "CLIENTVAULT_DB_STATEMENT_TIMEOUT_S": "1",
    "CLIENTVAULT_RPC_TIMEOUT_S": "3",
    "CLIENTVAULT_GRPC_MAX_CONCURRENT_RPCS": "4",
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running(Path(tmp_path_factory.mktemp("limited")) / "data", LIMITED_ENV) as started:
        yield started


@pytest.fixture(scope="module")
async def api(limited: System) -> AsyncIterator[Api]:
    async with Api(limited) as client:
        yield client


@pytest.fixture(scope="module")
async def secret_path(api: Api) -> str:
    admin = await api.session("admin")
    client_id = await new_client(api, admin)
    credential_id = await create(api, admin, client_id, label="Router", secret="s3cret-router")
    return f"/clients/{client_id}/credentials/{credential_id}"


async def manager_at(api: Api, ip: str) -> Session:
    return await api.sign_in(await api.new_account("manager"), ip=ip)


async def reveal(api: Api, session: Session, path: str, ip: str) -> int:
    r = await api.raw.get(path, headers={**session.headers, "X-Forwarded-For": ip})
    if r.status_code == 429:
        assert r.headers["content-type"] == PROBLEM
        assert "s3cret" not in r.text
        assert 1 <= int(r.headers["retry-after"]) <= WINDOW_S
        assert r.json()["detail"] == "too many reveals; try again later"
    return r.status_code


async def test_a_user_over_the_reveal_limit_gets_429_and_other_users_do_not(api: Api, secret_path: str) -> None:
    ip = unique_ip()
    greedy, other = await manager_at(api, ip), await manager_at(api, unique_ip())

    statuses = [await reveal(api, greedy, secret_path, ip) for _ in range(USER_MAX + 2)]

    assert statuses == [200] * USER_MAX + [429, 429]
    assert await reveal(api, greedy, secret_path, unique_ip()) == 429  # another IP does not reset a user's limit
    assert await reveal(api, other, secret_path, unique_ip()) == 200


async def test_an_ip_over_the_reveal_limit_gets_429_whoever_asks(api: Api, secret_path: str) -> None:
    shared_ip = unique_ip()
    first, second, third = [await manager_at(api, shared_ip) for _ in range(3)]

    statuses = [await reveal(api, first, secret_path, shared_ip) for _ in range(USER_MAX)]
    statuses += [await reveal(api, second, secret_path, shared_ip) for _ in range(IP_MAX - USER_MAX)]
    statuses.append(await reveal(api, third, secret_path, shared_ip))

    assert statuses == [200] * IP_MAX + [429]
    assert await reveal(api, third, secret_path, unique_ip()) == 200  # the user has reveals left elsewhere


async def test_guessing_credential_ids_counts_against_the_limit(api: Api, secret_path: str) -> None:
    ip = unique_ip()
    guesser = await manager_at(api, ip)
    client_path = secret_path.rsplit("/", 1)[0]

    statuses = [await reveal(api, guesser, f"{client_path}/{uuid.uuid4()}", ip) for _ in range(USER_MAX + 1)]

    assert statuses == [404] * USER_MAX + [429]
    assert await reveal(api, guesser, secret_path, ip) == 429  # a real id does not get through either


async def test_refused_reveals_are_not_audited(api: Api, secret_path: str) -> None:
    ip = unique_ip()
    manager, admin = await manager_at(api, ip), await api.session("admin")
    statuses = [await reveal(api, manager, secret_path, ip) for _ in range(USER_MAX + 3)]
    assert statuses.count(200) == USER_MAX

    query = {"userId": await me(api, manager), "action": "credential_reveal"}
    # The events travel outbox -> NATS -> audit; wait for the three that were revealed.
    await wait_for_entries(api, admin, USER_MAX, timeout_s=15, **query)
    await asyncio.sleep(1)  # had a refused reveal been recorded, it would be there by now as well
    assert (await api.raw.get("/audit-logs", params=query, headers=admin.headers)).json()["total"] == USER_MAX


async def test_the_vault_enforces_the_limit_on_direct_calls_too(api: Api, secret_path: str) -> None:
    manager = await manager_at(api, unique_ip())
    _, client_id, _, credential_id = secret_path.split("/")[1:]
    request = vault_pb2.RevealCredentialRequest(client_id=client_id, credential_id=credential_id)
    # Unattested (not through the gateway): limited per user, and per IP on the caller's own address.
    metadata = (("authorization", manager.headers["Authorization"]),)

    async with grpc.aio.insecure_channel(api.system.info_address("vault")) as channel:
        stub = vault_pb2_grpc.VaultStub(channel)
        for _ in range(USER_MAX):
            assert (await stub.RevealCredential(request, metadata=metadata, timeout=5)).secret == "s3cret-router"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RevealCredential(request, metadata=metadata, timeout=5)

    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 1 <= int(dict(refused.value.trailing_metadata() or ())["retry-after"]) <= WINDOW_S


async def test_a_statement_stuck_on_a_lock_is_cancelled_into_a_503_and_the_pool_recovers(api: Api) -> None:
    reader = await api.session("read_only")
    assert (await api.raw.get("/clients", headers=reader.headers)).status_code == 200

    async with await psycopg.AsyncConnection.connect(api.system.info()["database_url"]) as blocker:
        await blocker.execute("LOCK TABLE clients.clients IN ACCESS EXCLUSIVE MODE")  # held until rollback
        started = time.monotonic()
        stuck = await api.raw.get("/clients", headers=reader.headers)
        took = time.monotonic() - started
        await blocker.rollback()

    assert stuck.status_code == 503
    assert stuck.headers["content-type"] == PROBLEM
    assert int(stuck.headers["retry-after"]) > 0
    assert took < 3  # the 1 s statement timeout, before the gateway's 3 s deadline
    assert (await api.raw.get("/clients", headers=reader.headers)).status_code == 200


async def test_a_frozen_service_two_calls_away_is_a_503_and_nothing_stays_stuck(api: Api, secret_path: str) -> None:
    """Creating a credential makes the vault ask the clients service. With clients frozen, the request ends
    at the deadline (3 s here) and the next one, once clients is back, succeeds."""
    manager = await manager_at(api, unique_ip())
    client_path = secret_path.rsplit("/", 1)[0]

    with frozen(api.system.pids()["clients"]):
        started = time.monotonic()
        r = await api.raw.post(client_path, headers=manager.headers, json={"label": "Frozen", "secret": "x"})
        took = time.monotonic() - started

    assert r.status_code == 503
    assert r.headers["content-type"] == PROBLEM
    assert took < 6
    assert (
        await api.raw.post(client_path, headers=manager.headers, json={"label": "Thawed", "secret": "x"})
    ).status_code == 201


async def test_a_service_at_its_concurrency_bound_refuses_more_at_once_with_503(api: Api) -> None:
    """Four list calls wait on a locked table (the bound is 4); the others are refused at once, not queued."""
    reader = await api.session("read_only")

    async def timed_list() -> tuple[int, str, float]:
        started = time.monotonic()
        r = await api.raw.get("/clients", headers=reader.headers)
        return r.status_code, r.headers["content-type"], time.monotonic() - started

    async with await psycopg.AsyncConnection.connect(api.system.info()["database_url"]) as blocker:
        await blocker.execute("LOCK TABLE clients.clients IN ACCESS EXCLUSIVE MODE")
        answers = await asyncio.gather(*(timed_list() for _ in range(10)))
        await blocker.rollback()

    assert {(status, kind) for status, kind, _ in answers} == {(503, PROBLEM)}
    refused_at_once = [took for _, _, took in answers if took < 0.9]  # the others waited out the 1 s timeout
    assert len(refused_at_once) >= 5, sorted(took for _, _, took in answers)
    assert (await api.raw.get("/clients", headers=reader.headers)).status_code == 200


async def test_a_throttled_reveal_is_audited_with_the_limit_it_hit(api: Api, secret_path: str) -> None:
    ip = unique_ip()
    greedy = await manager_at(api, ip)

    statuses = [await reveal(api, greedy, secret_path, ip) for _ in range(USER_MAX + 1)]

    assert statuses == [200] * USER_MAX + [429]
    admin = await api.session("admin")
    page = await wait_for_entries(api, admin, 1, action="reveal_throttled", actorUserId=await me(api, greedy))
    assert page["total"] == 1
    entry = page["items"][0]
    client_id, credential_id = secret_path.split("/")[2::2]
    assert (entry["credentialId"], entry["clientId"], entry["credential"]["label"]) == (
        credential_id,
        client_id,
        "Router",
    )
    assert entry["detail"] == {"limits": ["user"]}
    assert entry["ip"] == ip
