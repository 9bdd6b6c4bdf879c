"""NATS frozen and then killed while credentials are used: every audit event reaches JetStream exactly once."""

import asyncio
import os
import signal
import time
from collections import Counter

from tests.audit_support import outbox_sent
from tests.system import Api, Session, frozen, pid_alive
from tests.vault_support import create, new_client, stream_events


async def operate(api: Api, admin: Session, client_id: str, n: int) -> str:
    """create, reveal, update, reveal: four audited operations on a new credential."""
    admin_headers = admin.headers
    credential_id = await create(api, admin, client_id, label=f"outage {n}", secret=f"s{n}")
    base = f"/clients/{client_id}/credentials/{credential_id}"
    assert (await api.raw.get(base, headers=admin_headers)).status_code == 200
    assert (await api.raw.patch(base, headers=admin_headers, json={"label": f"outage {n}b"})).status_code == 200
    assert (await api.raw.get(base, headers=admin_headers)).json()["secret"] == f"s{n}"
    return credential_id


async def wait_ready(api: Api, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await api.raw.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the system did not become ready again")


async def test_events_reach_jetstream_exactly_once_across_a_nats_freeze_and_crash(api: Api) -> None:
    system = api.system
    admin = await api.session("admin")
    client_id = await new_client(api, admin)
    nats_pid = system.pids()["nats"]
    made: list[str] = []

    # Frozen: connections hang, publishes time out. Let go, whatever it had half-received is stored late:
    # redelivered as duplicates.
    with frozen(nats_pid):
        for n in range(5):
            made.append(await operate(api, admin, client_id, n))
        await asyncio.sleep(4)  # the relay tries, times out and backs off
    for n in range(5, 8):
        made.append(await operate(api, admin, client_id, n))

    os.kill(nats_pid, signal.SIGKILL)  # down; the supervisor restarts it on the same port and store
    for n in range(8, 12):
        made.append(await operate(api, admin, client_id, n))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if system.pids().get("nats") not in (None, nats_pid):
            break
        await asyncio.sleep(0.1)
    assert not pid_alive(nats_pid)
    await wait_ready(api)

    database_url, nats_url = system.info()["database_url"], system.info()["nats_url"]
    deadline = time.monotonic() + 30
    while True:
        sent = await outbox_sent(database_url, made)
        if all(sent.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)

    assert len(sent) == 4 * len(made)
    assert all(sent.values()), "some events were never published"
    ours = set(sent)
    in_stream = Counter(msg_id for msg_id, _, event in await stream_events(nats_url) if event.event_id in ours)
    assert set(in_stream) == ours  # every event is in the stream…
    assert set(in_stream.values()) == {1}  # …exactly once
    assert "outbox.unpublished" in (system.data_dir / "logs" / "vault.log").read_text()  # the outage was felt
