"""What operators may do to the audit service in-process (`clientvault audit verify`, `audit checkpoint`, `up`):
typed functions with plain arguments. The operator layer (ops/) imports this module and the service's `main()`,
nothing else."""

from collections.abc import Callable, Iterable

from clientvault.db import Database
from clientvault.events import TrustedKeys
from services.audit import chain, store
from services.audit.chain import GENESIS, Broken, Verified
from services.audit.store import WRITER_ROLE

__all__ = ["WRITER_ROLE", "Broken", "TrustedKeys", "Verified", "head", "verify"]


async def verify(
    database_url: str,
    keys: TrustedKeys,
    progress: Callable[[int, int], None],
    expect_heads: Iterable[tuple[int, bytes]] = (),
) -> tuple[Verified, str | None]:
    """Walks the chain recomputing every hash and checking every producer's signature (`Verified.broken`: the
    first entry changed, removed, reordered or forged), then, when it holds, whether each head recorded earlier
    (seq, hash: printed by verify or kept as a checkpoint) is still in it: the first that is not, or None."""
    async with Database(database_url, pool_size=1) as db:
        found = await chain.verify(db, keys, progress)
        if found.broken is not None:
            return found, None
        for seq, digest in sorted(expect_heads, reverse=True):  # the newest first: removals show there
            problem = await chain.check_head(db, seq, digest, found)
            if problem is not None:
                return found, problem
        return found, None


async def head(database_url: str) -> tuple[int, bytes]:
    """The chain's newest entry (seq, hash); (0, the genesis hash) for an empty chain."""
    async with Database(database_url, pool_size=1) as db, db.read() as conn:
        newest = await store.head(conn)
    return (newest.seq, newest.hash) if newest is not None else (0, GENESIS)
