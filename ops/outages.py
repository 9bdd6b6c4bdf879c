"""What an operator command says when it cannot reach the database or NATS: which host, and why (refused,
authentication, timeout, unknown host), in its own words. Never the URL's user info (it holds the password)
and never the driver's message as a whole (a server may quote what it was given)."""

from collections.abc import Iterator
from urllib.parse import urlsplit

from nats.errors import Error as NatsError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from clientvault.errors import Unavailable

# PostgreSQL's SQLSTATEs for a login refused: invalid_password, invalid_authorization_specification.
AUTHENTICATION_STATES = frozenset({"28P01", "28000"})
# What reaching a dependency raises: the kit's Unavailable (the database), the drivers' own, the socket's.
OUTAGES = (Unavailable, DBAPIError, PoolTimeout, NatsError, OSError, TimeoutError)


def where(url: str) -> str:
    """host:port of a URL (of its first server when it lists several), without user or password."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    return netloc.split(",")[0] or "(no host)"


def why(error: BaseException) -> str:
    """The reason, from the error and what caused it."""
    causes = list(_chain(error))
    states = {getattr(getattr(e, "orig", e), "sqlstate", None) for e in causes}
    text = " ".join(str(e) for e in causes).lower()
    if states & AUTHENTICATION_STATES or "authentication failed" in text or "authorization violation" in text:
        return "authentication failed"
    if "3D000" in states:
        return "the database does not exist"
    if "refused" in text or any(isinstance(e, ConnectionRefusedError) for e in causes):
        return "connection refused"
    if "timeout" in text or "timed out" in text or any(isinstance(e, TimeoutError) for e in causes):
        return "timed out"
    if "name or service not known" in text or "nodename nor servname" in text or "translate host name" in text:
        return "unknown host"
    return "no answer"


def unreachable(what: str, url: str, error: BaseException) -> str:
    """`cannot reach the database at db.internal:5432: authentication failed`."""
    return f"cannot reach {what} at {where(url)}: {why(error)}"


def describe(error: BaseException, database_url: str, nats_url: str | None) -> str:
    """What could not be reached, where and why, from an error that `OUTAGES` holds."""
    causes = list(_chain(error))
    if any(isinstance(e, DBAPIError | PoolTimeout) for e in causes):
        return unreachable("the database", database_url, error)
    if nats_url is not None and any(isinstance(e, NatsError) for e in causes):
        return unreachable("NATS", nats_url, error)
    return f"unavailable: {error}" if isinstance(error, Unavailable) else f"unavailable: {type(error).__name__}"


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__
