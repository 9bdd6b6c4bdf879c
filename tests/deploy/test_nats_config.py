"""The NATS users of the deployment: deploy/README.md carries exactly the block that `clientvault up` runs with
(ops/embedded.py), and the Compose file's nats.conf, run by a real nats-server, denies each
process exactly what the table says (tests/e2e/test_nats_permissions.py proves the same under `up`)."""

import asyncio
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from ops.embedded import (
    NATS_OPERATOR,
    NATS_PUBLISH_DENIED,
    nats_authorization_from_environment,
    nats_password_variable,
)
from ops.supervisor import free_port
from tests.deploy.compose import COMPOSE, interpolate
from tests.deploy.files import DEPLOY, PROCESSES, tool

README = (DEPLOY / "README.md").read_text()
USERS = (NATS_OPERATOR, *NATS_PUBLISH_DENIED)


def test_the_processes_are_the_users() -> None:
    assert set(NATS_PUBLISH_DENIED) == set(PROCESSES)


def test_the_readme_carries_the_users_of_the_code() -> None:
    block = nats_authorization_from_environment()
    assert re.search("```\n" + re.escape(block) + "```\n", README), "deploy/README.md, 3.3: clientvault-users.conf"
    assert "$include: clientvault-users.conf" in README
    for user in USERS:
        variable = nats_password_variable(user)
        assert f'--from-literal={variable}="${variable}"' in README, f"the nats-server Secret lacks {variable}"
    for process in PROCESSES:  # each URL in clientvault-nats names its own user and that user's password
        url = f'nats://{process}:${nats_password_variable(process)}@nats.clientvault-data:4222"'
        assert f'--from-literal={process}-url="{url}' in README, process


def compose_nats_conf(directory: Path, port: int) -> Path:
    """The Compose file's nats.conf as nats-server gets it, on a local port and store."""
    content = interpolate(COMPOSE["configs"]["nats"]["content"], {})
    for old, new in [
        ("port: 4222\n", f'listen: "127.0.0.1:{port}"\n'),
        ("http_port: 8222\n", ""),
        ("store_dir: /data", f'store_dir: "{directory / "jetstream"}"'),
    ]:
        assert content.count(old) == 1, old
        content = content.replace(old, new)
    path = directory / "nats.conf"
    path.write_text(content)
    return path


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, str]]]:
    """nats-server on the Compose config, each password made as deploy/README.md says."""
    passwords = {user: "p" + secrets.token_hex(32) for user in USERS}
    env = {nats_password_variable(user): password for user, password in passwords.items()}
    port = free_port()
    config = compose_nats_conf(tmp_path_factory.mktemp("nats"), port)
    binary = tool("nats-server")
    checked = subprocess.run([binary, "-c", str(config), "-t"], env=env, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    server = subprocess.Popen(
        [binary, "-c", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            assert server.poll() is None, "nats-server exited"
            assert time.monotonic() < deadline, "nats-server does not listen"
            time.sleep(0.05)
        yield port, passwords
    finally:
        server.terminate()
        server.wait(timeout=10)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def denied(user: str, subject: str) -> bool:
    return any(
        subject.startswith(pattern[:-1]) if pattern.endswith(">") else subject == pattern
        for pattern in NATS_PUBLISH_DENIED.get(user, [])
    )


# One concrete subject for every subject pattern that some process is denied.
SUBJECTS = sorted({pattern.replace(">", "x") for patterns in NATS_PUBLISH_DENIED.values() for pattern in patterns})


@pytest.mark.parametrize("user", USERS)
async def test_the_compose_config_denies_each_process_what_the_table_says(
    nats_server: tuple[int, dict[str, str]], user: str
) -> None:
    port, passwords = nats_server
    refused: list[str] = []

    async def on_error(error: Exception) -> None:
        refused.extend(re.findall(r'publish to "([^"]+)"', str(error), re.IGNORECASE))

    nc = await nats.connect(
        f"nats://{user}:{passwords[user]}@127.0.0.1:{port}", error_cb=on_error, allow_reconnect=False
    )
    try:
        for subject in SUBJECTS:
            await nc.publish(subject, b"probe")
        await nc.flush()
        await asyncio.sleep(0.2)  # the refusals' callbacks
    finally:
        await nc.close()

    assert sorted(refused) == sorted(s.lower() for s in SUBJECTS if denied(user, s))  # nats-py lowercases errors
    assert user == NATS_OPERATOR or refused, "every process is denied something"
