"""Work that must outlive an outage (NATS, PostgreSQL): the revocation watcher, the outbox relay, the audit
consumer, a revocation that did not go out. One backoff for all of them, from `stamina`: exponential from
0.2 s up to 5 s, with up to 0.5 s of random jitter so that replicas do not retry in step after an outage.
"""

from collections.abc import Awaitable, Callable
from typing import Any, Final, NoReturn

import stamina
from nats.errors import Error as NatsError

from clientvault.errors import Unavailable
from clientvault.logging import get_logger

log = get_logger(__name__)

BACKOFF: Final[dict[str, Any]] = {"wait_initial": 0.2, "wait_max": 5.0, "wait_jitter": 0.5}
# What an outage of NATS or PostgreSQL raises: expected, logged as a warning without a traceback.
OUTAGES: Final = (OSError, NatsError, TimeoutError, Unavailable)


async def forever(
    step: Callable[[], Awaitable[object]],
    *,
    outage: str,
    failure: str,
    reset: Callable[[], Awaitable[None]] | None = None,
    expected: tuple[type[Exception], ...] = OUTAGES,
) -> NoReturn:
    """Runs `step` again and again for the life of the process (until cancelled).

    A step that fails is followed by `reset` (drop a connection that may be broken) and a wait that grows
    with each failure in a row; a step that returns starts the backoff over. An `expected` failure (an
    outage) is logged as the event `outage`; any other is logged with its traceback as `failure`, and the
    loop carries on all the same: it must outlive any one bug."""
    while True:
        async for attempt in stamina.retry_context(on=Exception, attempts=None, timeout=None, **BACKOFF):
            with attempt:
                try:
                    await step()
                except Exception as error:
                    if isinstance(error, expected):
                        log.warning(outage, error=type(error).__name__, retry_in_s=attempt.next_wait)
                    else:
                        log.exception(failure, retry_in_s=attempt.next_wait)
                    if reset is not None:
                        await reset()
                    raise
