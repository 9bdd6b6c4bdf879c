"""Run-wide fixtures: one real system (`clientvault up`) for the whole test run, and the accounts most modules
work as. The service tier's fixtures are in tests/service/conftest.py."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.system import HIGH_REVEAL_LIMITS, Api, Session, System, running

ROLES = ("admin", "manager", "read_only")
# The gateway trusts X-Forwarded-For from loopback so that each test can act from its own client IP.
# Reveal limits are on but high: the rotation test reveals thousands of times as one user
# (test_abuse_limits.py runs a system of its own with small limits).
# Break-glass is on (it is off by default) so that the role matrix proves its route; tests/service proves it off.
TEST_ENV = {
    "CLIENTVAULT_TRUSTED_PROXIES": "127.0.0.1/32",
    "CLIENTVAULT_BREAK_GLASS": "on",
    **HIGH_REVEAL_LIMITS,
}


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running(Path(tmp_path_factory.mktemp("clientvault")) / "data", TEST_ENV) as started:
        yield started


@pytest.fixture(scope="session")
async def api(system: System) -> AsyncIterator[Api]:
    async with Api(system) as client:
        yield client


# Per module, on whichever `api` the module uses (test_abuse_limits.py has one of its own).
@pytest.fixture(scope="module")
async def sessions(api: Api) -> dict[str, Session]:
    """A signed-in session of a new account of each role."""
    made = await asyncio.gather(*(api.session(role) for role in ROLES))
    return dict(zip(ROLES, made, strict=True))


@pytest.fixture(scope="module")
async def admin(api: Api) -> Session:
    """A signed-in admin of a new account (e.g. to make the clients and credentials a test works on)."""
    return await api.session("admin")
