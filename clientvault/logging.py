"""Structured JSON logs (structlog) with the request id bound, and a redaction net for secrets.

Redaction is a net, not a habit: code logs ids and outcomes, never values. Any event key that names a
secret is replaced, whatever the caller passed.
"""

import logging
import sys
from typing import Any

import stamina
import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor

from clientvault import tracing

NEVER_LOGGED = frozenset(
    {
        "password",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "authorization",
        "ciphertext",
        "key",
        "private_key",
        "dek",
        "kek",
        "nonce",
        "signing_key",
    }
)


def _redact(_logger: object, _method: str, event: EventDict) -> EventDict:
    for name in NEVER_LOGGED & event.keys():
        event[name] = "[redacted]"
    return event


def _add_trace_id(_logger: object, _method: str, event: EventDict) -> EventDict:
    trace_id = tracing.trace_id()
    if trace_id is not None:
        event["trace_id"] = trace_id
    return event


def configure(level: str, process: str, *, trace_ids: bool = False) -> None:
    """JSON lines on stderr; with `trace_ids` (tracing is on), each line written in a span names its trace."""
    threshold = logging.getLevelNamesMapping()[level.upper()]
    traced: list[Processor] = [_add_trace_id] if trace_ids else []
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        *traced,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
        # Tracebacks as data, but never the frames' local variables (structlog's default shows them):
        # they hold data keys, sealed secrets, passwords and tokens, which no redaction of keys can catch.
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
    ]
    # Libraries that log through the standard library (uvicorn, alembic) write the same JSON lines to stderr,
    # with the logger's name, at the same level.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    logging.basicConfig(level=threshold, handlers=[handler], force=True)
    # Alembic says a line per built-in plugin whenever it is imported (every service reads its migrations' head).
    logging.getLogger("alembic.runtime.plugins").setLevel(max(threshold, logging.WARNING))
    structlog.configure(
        processors=[*shared, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process)
    # stamina would log each retry with the exception's repr (which may quote what failed); the retrying loops
    # (clientvault/retrying.py) log their failures themselves, by type.
    stamina.instrumentation.set_on_retry_hooks([])


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


async def log_nats_error(error: Exception) -> None:
    """nats-py's `error_cb`: one structured line per connection error. Its default callback writes a
    multi-line traceback into the JSON log on every broker restart."""
    get_logger("nats").warning("nats.error", error=type(error).__name__, detail=str(error)[:200])
