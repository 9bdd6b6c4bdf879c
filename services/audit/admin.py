"""What operators may do to the audit service in-process (`clientvault audit verify`, `up`): typed functions
with plain arguments. The operator layer (ops/) imports this module and the service's `main()`, nothing else."""

from collections.abc import Callable

from clientvault.db import Database
from services.audit import chain
from services.audit.chain import Broken, Verified
from services.audit.store import WRITER_ROLE

__all__ = ["WRITER_ROLE", "Broken", "Verified", "verify"]


async def verify(
    database_url: str, progress: Callable[[int, int], None], expect_head: tuple[int, bytes] | None = None
) -> tuple[Verified, str | None]:
    """Walks the chain recomputing every hash (`Verified.broken`: the first entry changed, removed or
    reordered), then, when it holds and `expect_head` (seq, hash) is given, whether that head printed by an
    earlier verify is still in it: what is wrong with it, or None."""
    async with Database(database_url, pool_size=1) as db:
        found = await chain.verify(db, progress)
        if expect_head is None or found.broken is not None:
            return found, None
        return found, await chain.check_head(db, *expect_head, found)
