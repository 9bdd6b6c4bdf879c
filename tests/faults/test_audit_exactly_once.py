"""Exactly once under faults: credential operations run through the gateway while nats-server, the audit
process and the vault process are killed with SIGKILL in turn (the supervisor restarts each). Afterwards
every successful operation has exactly one audit entry, and the chain verifies.

An operation whose process died under it may have committed before the caller saw the failure (its 503
is then ambiguous): its entry is the truth about what happened, so failed operations may have an entry,
never more than one, and every successful one must.
"""

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter

import httpx
import psycopg

from tests.system import System, all_ready, pid_alive

VICTIMS = ("nats", "audit", "vault")
RUN_BETWEEN_KILLS_S = 3.0
CONVERGE_TIMEOUT_S = 40.0


class Operator:
    """Runs create → reveal → update → delete cycles, recording what the caller was told."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str], client_id: str) -> None:
        self.http, self.headers, self.client_id = http, headers, client_id
        self.succeeded: Counter[tuple[str, str]] = Counter()  # (credential id, action)
        self.failed: Counter[str] = Counter()  # action
        self.stop = asyncio.Event()

    async def _call(self, action: str, method: str, path: str, expect: int, **kwargs: object) -> httpx.Response | None:
        try:
            r = await self.http.request(method, path, headers=self.headers, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError:
            r = None
        if r is None or r.status_code != expect:
            self.failed[action] += 1
            await asyncio.sleep(0.1)
            return None
        return r

    async def run(self) -> None:
        base = f"/clients/{self.client_id}/credentials"
        n = 0
        while not self.stop.is_set():
            n += 1
            made = await self._call("credential_create", "POST", base, 201, json={"label": f"f{n}", "secret": "s"})
            if made is None:
                continue
            credential_id = made.json()["id"]
            self.succeeded[(credential_id, "credential_create")] += 1
            for action, method, expect, body in (
                ("credential_reveal", "GET", 200, None),
                ("credential_update", "PATCH", 200, {"label": f"f{n}b"}),
                ("credential_reveal", "GET", 200, None),
                ("credential_delete", "DELETE", 204, None),
            ):
                done = await self._call(action, method, f"{base}/{credential_id}", expect, json=body)
                if done is not None:
                    self.succeeded[(credential_id, action)] += 1
                    if action == "credential_delete":
                        break


async def wait_restarted(system: System, name: str, old_pid: int, http: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pid = system.pids().get(name)
        if pid not in (None, old_pid) and pid_alive(pid):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"{name} was not restarted")
    while time.monotonic() < deadline:
        if await all_ready(http):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not ready again after {name} restarted")


async def audit_state(database_url: str, client_id: str) -> tuple[list[str], Counter[str], Counter[tuple[str, str]]]:
    """The vault's event ids for the client, and the audit log's entries for it (ids and per-action counts)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        outbox = [str(r[0]) for r in await (await conn.execute(
            "SELECT event_id FROM vault.outbox WHERE client_id = %s", (uuid.UUID(client_id),))).fetchall()]  # fmt: skip
        rows = await (await conn.execute(
            "SELECT event_id, credential_id, action FROM audit.events WHERE client_id = %s",
            (uuid.UUID(client_id),))).fetchall()  # fmt: skip
    ids = Counter(str(r[0]) for r in rows)
    return outbox, ids, Counter((str(r[1]), r[2]) for r in rows)


async def test_every_successful_operation_is_audited_exactly_once_across_kills(own_system: System) -> None:
    system = own_system
    assert system.admin is not None
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=system.url, timeout=10) as http:
        email, password = system.admin
        token = (await http.post("/auth/sign-in", json={"email": email, "password": password})).json()["accessToken"]
        headers = {"Authorization": f"Bearer {token}"}
        client_id = (await http.post("/clients", headers=headers, json={"name": "Faults"})).json()["id"]
        operator = Operator(http, headers, client_id)
        running = asyncio.create_task(operator.run())
        restarts = 0
        try:
            for victim in VICTIMS:
                await asyncio.sleep(RUN_BETWEEN_KILLS_S)
                pid = system.pids()[victim]
                os.kill(pid, signal.SIGKILL)
                await wait_restarted(system, victim, pid, http)
                restarts += 1
            await asyncio.sleep(RUN_BETWEEN_KILLS_S)
        finally:
            operator.stop.set()
            await running

        database_url = system.info()["database_url"]
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while True:
            outbox, ids, per_action = await audit_state(database_url, client_id)
            if set(ids) == set(outbox) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)

    operations = sum(operator.succeeded.values())
    failed = sum(operator.failed.values())
    lost = len(set(outbox) - set(ids))
    duplicated = sum(n - 1 for n in ids.values() if n > 1)
    entries = sum(ids.values())
    print(
        f"\nfaults: {operations} successful operations, {failed} failed, {restarts} restarts ({', '.join(VICTIMS)}), "
        f"{len(outbox)} events in the vault outbox, {entries} audit entries, lost = {lost}, "
        f"duplicated = {duplicated}, {time.monotonic() - started:.1f}s"
    )
    assert restarts == len(VICTIMS)
    assert operations > 20, "too few operations to prove anything"
    assert lost == 0
    assert duplicated == 0
    assert set(ids) == set(outbox)  # compared by event id: nothing the vault committed is missing or extra
    for key, count in operator.succeeded.items():  # every success has its entry…
        assert per_action[key] >= count, key
    by_action = Counter[str]()
    for (_, action), count in per_action.items():
        by_action[action] += count
    succeeded_by_action = Counter[str]()
    for (_, action), count in operator.succeeded.items():
        succeeded_by_action[action] += count
    for action, count in by_action.items():  # …and only failures whose commit beat the crash add any
        assert succeeded_by_action[action] <= count <= succeeded_by_action[action] + operator.failed[action], action
    for name in ("auth", "clients", "vault", "audit"):  # a broker restart is logged as JSON lines, no traceback
        for line in (system.data_dir / "logs" / f"{name}.log").read_text().splitlines():
            assert isinstance(json.loads(line), dict), (name, line)
    verified = system.cli("audit", "verify")
    assert verified.returncode == 0, verified.stderr
    print(verified.stdout.strip().splitlines()[-1])
