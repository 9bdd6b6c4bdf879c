"""The one retry loop (clientvault/retrying.py): a failure resets and backs off, a success starts over."""

import asyncio

import pytest
from structlog.testing import capture_logs

from clientvault import retrying


async def test_it_backs_off_after_failures_and_starts_over_after_a_success() -> None:
    outcomes: list[type[BaseException] | None] = [OSError, OSError, None, ValueError, asyncio.CancelledError]
    calls = 0
    resets = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        outcome = outcomes[calls - 1]
        if outcome is not None:
            raise outcome

    async def reset() -> None:
        nonlocal resets
        resets += 1

    with capture_logs() as logs, pytest.raises(asyncio.CancelledError):
        await retrying.forever(step, expected=(OSError,), outage="t.outage", failure="t.failure", reset=reset)

    assert calls == 5
    assert resets == 3  # two outages and one unexpected failure; never after the success
    # The planned waits (jitter comes on top): exponential from 0.2 s, and from 0.2 s again after the success.
    ours = [e for e in logs if e["event"].startswith("t.")]  # not stamina's own (logging.configure turns it off)
    assert [(e["event"], e["retry_in_s"]) for e in ours] == [("t.outage", 0.2), ("t.outage", 0.4), ("t.failure", 0.2)]
    assert ours[0]["error"] == "OSError"
    assert ours[2]["exc_info"] is True  # unexpected: logged with its traceback
