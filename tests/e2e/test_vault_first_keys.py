"""A client's data key is made once, by whichever of many concurrent writers wins, and every secret is sealed
with the key that is stored: found under load, where concurrent first credentials of a client answered 201
and then never decrypted again (the losers sealed with a key of their own that was never stored)."""

import asyncio
import subprocess
import uuid

from tests.e2e.test_vault_rotation import operator_env, rotate_args
from tests.system import Api, Session
from tests.vault_support import create, new_client

ROUNDS = 4
CLIENTS_PER_ROUND = 4
CREATES_PER_CLIENT = 6  # 24 creates at once per round, 6 racing for each new client's first key

Made = tuple[str, str, str]  # (client id, credential id, secret)


async def create_at_once(api: Api, admin: Session, client_ids: list[str], per_client: int) -> list[Made]:
    """`per_client` credentials for each client, every create sent at the same time."""
    wanted = [(client_id, f"secret-{uuid.uuid4().hex}") for client_id in client_ids for _ in range(per_client)]
    ids = await asyncio.gather(
        *(create(api, admin, client_id, label="Router", secret=secret) for client_id, secret in wanted)
    )
    return [(client_id, credential_id, secret) for (client_id, secret), credential_id in zip(wanted, ids, strict=True)]


async def revealed_wrongly(api: Api, admin: Session, made: list[Made]) -> list[tuple[str, int]]:
    """(credential id, status) of every credential that does not reveal its own secret."""
    wrong = []
    for client_id, credential_id, secret in made:
        r = await api.raw.get(f"/clients/{client_id}/credentials/{credential_id}", headers=admin.headers)
        if r.status_code != 200 or r.json()["secret"] != secret:
            wrong.append((credential_id, r.status_code))
    return wrong


async def test_concurrent_first_credentials_of_new_clients_each_reveal_their_own_secret(api: Api) -> None:
    admin = await api.session("admin")
    made: list[Made] = []
    for _ in range(ROUNDS):
        clients = [await new_client(api, admin) for _ in range(CLIENTS_PER_ROUND)]
        made += await create_at_once(api, admin, clients, CREATES_PER_CLIENT)

    assert len(made) == ROUNDS * CLIENTS_PER_ROUND * CREATES_PER_CLIENT
    assert await revealed_wrongly(api, admin, made) == []


async def test_concurrent_creates_while_a_reencryption_runs_each_reveal_their_own_secret(api: Api) -> None:
    """New clients' first keys, and new secrets of clients whose keys the rotation replaces and deletes."""
    system = api.system
    admin = await api.session("admin")
    existing = [await new_client(api, admin) for _ in range(CLIENTS_PER_ROUND)]
    made = await create_at_once(api, admin, existing, 3)
    rotation = await asyncio.create_subprocess_exec(
        *rotate_args(system, "--reencrypt", "--batch-size", "2"),
        env=operator_env(system),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    rotated = asyncio.create_task(rotation.communicate())
    rounds = 0
    while not rotated.done() or rounds < 2:
        fresh = [await new_client(api, admin) for _ in range(CLIENTS_PER_ROUND // 2)]
        made += await create_at_once(api, admin, [*fresh, *existing], CREATES_PER_CLIENT // 2)
        rounds += 1
    _, errors = await rotated
    assert rotation.returncode == 0, errors.decode()

    assert await revealed_wrongly(api, admin, made) == []
    status = system.cli("vault", "status")
    assert status.returncode == 0, status.stderr
    assert "no data key" not in status.stdout + status.stderr
