"""Restarts under a steady stream of requests, as a frontend sees them.

A valid token must never get a 401 because a process has just started (a frontend that treats 401 as "signed
out" would sign every user out): while a verifier has no keys yet it answers 503, and it reports ready only
once it has them. After a PostgreSQL restart, the first request on each service's pool must succeed.
"""

import asyncio
import os
import signal
import time
from collections import Counter

import httpx
import psycopg

from tests.system import System, all_ready, frozen, pid_alive

AUTH_FROZEN_S = 7.0  # longer than the gateway's key fetch deadline (CLIENTVAULT_RPC_TIMEOUT_S, 5 s)


async def signed_in(http: httpx.AsyncClient, system: System) -> dict[str, str]:
    assert system.admin is not None
    email, password = system.admin
    r = await http.post("/auth/sign-in", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['accessToken']}"}


async def wait_restarted(system: System, name: str, old_pid: int, http: httpx.AsyncClient) -> None:
    """Until the supervisor has restarted `name` and the gateway (which may be the one restarting) is ready."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pid = system.pids().get(name)
        if pid not in (None, old_pid) and pid_alive(pid) and await all_ready(http):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not ready again after {name} restarted")


class Stream:
    """Requests with one valid token, back to back from a few workers, counting what came back."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str], paths: list[str]) -> None:
        self.http, self.headers, self.paths = http, headers, paths
        self.answers: Counter[int | str] = Counter()
        self.stop = asyncio.Event()

    async def worker(self, n: int) -> None:
        while not self.stop.is_set():
            path = self.paths[n % len(self.paths)]
            n += 1
            try:
                r = await self.http.get(path, headers=self.headers)
                self.answers[r.status_code] += 1
            except httpx.TransportError:
                self.answers["connection error"] += 1
                await asyncio.sleep(0.05)

    async def ok_again(self, timeout_s: float = 30) -> None:
        """Waits until every path answers 200 again."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answers = [await self.http.get(path, headers=self.headers) for path in self.paths]
            if all(r.status_code == 200 for r in answers):
                return
            await asyncio.sleep(0.2)
        raise AssertionError("the system did not answer 200 again")


async def test_restarting_the_gateway_and_auth_never_answers_a_valid_token_401(own_system: System) -> None:
    system = own_system
    async with httpx.AsyncClient(base_url=system.url, timeout=15) as http:
        headers = await signed_in(http, system)
        stream = Stream(http, headers, ["/clients", "/users/me"])
        workers = [asyncio.create_task(stream.worker(n)) for n in range(8)]
        try:
            # 1. the gateway restarts while auth is up: requests race its first key fetch
            gateway = system.pids()["gateway"]
            os.kill(gateway, signal.SIGKILL)
            await wait_restarted(system, "gateway", gateway, http)
            await stream.ok_again()
            # 2. the gateway restarts while auth does not answer: its first key fetch fails
            gateway = system.pids()["gateway"]
            with frozen(system.pids()["auth"]):
                os.kill(gateway, signal.SIGKILL)
                await asyncio.sleep(AUTH_FROZEN_S)
            await wait_restarted(system, "gateway", gateway, http)
            await stream.ok_again()
            # 3. auth itself restarts
            auth = system.pids()["auth"]
            os.kill(auth, signal.SIGKILL)
            await wait_restarted(system, "auth", auth, http)
            await stream.ok_again()
            answered_before = stream.answers[200]
            await asyncio.sleep(1)
        finally:
            stream.stop.set()
            await asyncio.gather(*workers)

    print(f"\nrestarts: {dict(stream.answers)}")
    assert stream.answers[401] == 0
    assert stream.answers[200] > answered_before  # still answering after the last restart
    assert set(stream.answers) <= {200, 503, "connection error"}


async def test_after_postgresql_restarts_the_next_request_on_every_service_succeeds(own_system: System) -> None:
    system = own_system
    async with httpx.AsyncClient(base_url=system.url, timeout=15) as http:
        headers = await signed_in(http, system)
        client = (await http.post("/clients", headers=headers, json={"name": "Pool recovery"})).json()["id"]
        credentials = f"/clients/{client}/credentials"
        assert (await http.post(credentials, headers=headers, json={"label": "L", "secret": "s"})).status_code == 201
        one_per_service = ["/users/me", "/clients", credentials, "/audit-logs"]  # auth, clients, vault, audit
        for path in one_per_service * 3:  # every pool holds idle connections
            assert (await http.get(path, headers=headers)).status_code == 200, path

        postgres = system.pids()["postgres"]
        os.kill(postgres, signal.SIGKILL)
        database_url = system.info()["database_url"]
        deadline = time.monotonic() + 90  # the supervisor restarts it with backoff; crash recovery follows
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=1) as conn:
                    await conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "PostgreSQL did not come back"
                await asyncio.sleep(0.2)

        answers = {path: (await http.get(path, headers=headers)).status_code for path in one_per_service}
    assert answers == dict.fromkeys(one_per_service, 200)
