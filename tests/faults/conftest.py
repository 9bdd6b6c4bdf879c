"""One system for all the fault tests, on embedded servers of its own: killing its processes must not disturb
the run-wide one. Each test makes its own data (a client of its own) and leaves the system whole again (every
killed process restarted and answering), so the tests share it as they would share production."""

from collections.abc import Iterator

import pytest

from tests.system import EMBEDDED, HIGH_REVEAL_LIMITS, System, running


@pytest.fixture(scope="package")
def own_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running(tmp_path_factory.mktemp("faults") / "data", {**EMBEDDED, **HIGH_REVEAL_LIMITS}) as system:
        yield system
