"""The operator's JetStream bootstrap: the `AUDIT` stream (clientvault/events.py) and the revocation bucket
(clientvault/revocation.py), created as the operator user before any process starts (`clientvault up` after
nats-server is up; `clientvault migrate` when NATS_URL is set: the deployment's migration step). The processes'
NATS users may not create, change or source a stream (clientvault/nats_access.py): they only bind to these, and
say so in their log when one is missing, so nothing is ever created implicitly with a process's defaults.

The settings (`JetStreamSettings`: replicas, the stream's max age and size) are the truth: an existing stream or
bucket whose editable limits differ (one created by hand, or by an earlier version) is updated to them.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import nats
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from clientvault import events
from clientvault.errors import DomainError
from clientvault.logging import get_logger
from clientvault.nats_access import KV_STREAM
from clientvault.revocation import create_bucket
from clientvault.settings import JetStreamSettings

log = get_logger(__name__)

# What the operator may change on a stream that exists (storage, retention and the name are fixed at creation).
EDITABLE = ("num_replicas", "max_age", "max_bytes", "discard", "duplicate_window", "allow_atomic")


class BootstrapRefused(DomainError):
    """NATS refused to create or update a stream (e.g. 3 replicas on a server that is not clustered)."""


async def bootstrap(operator_url: str, settings: JetStreamSettings) -> None:
    audit = events.stream_config(
        replicas=settings.nats_replicas,
        max_age_s=settings.audit_stream_max_age_s,
        max_bytes=settings.audit_stream_max_bytes,
    )
    nc = await nats.connect(operator_url, connect_timeout=5, allow_reconnect=False)
    try:
        js = nc.jetstream()
        await _ensure(js, events.STREAM, lambda: js.add_stream(audit), {f: getattr(audit, f) for f in EDITABLE})
        await _ensure(
            js,
            KV_STREAM,
            lambda: create_bucket(nc, settings.nats_replicas),
            {"num_replicas": settings.nats_replicas},
        )
    finally:
        await nc.close()


async def _ensure(
    js: JetStreamContext, stream: str, create: Callable[[], Awaitable[object]], wanted: Mapping[str, Any]
) -> None:
    """Creates `stream` unless it exists; else updates the `wanted` fields that differ, and logs what changed."""
    try:
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            await create()
            log.info("jetstream.stream_created", stream=stream, **_loggable(wanted))
            return
        differ = {field: value for field, value in wanted.items() if getattr(info.config, field) != value}
        if differ:
            await js.update_stream(replace(info.config, **differ))
            was = {field: getattr(info.config, field) for field in differ}
            log.info("jetstream.stream_updated", stream=stream, now=_loggable(differ), was=_loggable(was))
    except APIError as error:
        raise BootstrapRefused(f"NATS refused the {stream} stream's settings: {error.description}") from None


def _loggable(config: Mapping[str, object]) -> dict[str, object]:
    return {field: getattr(value, "value", value) for field, value in config.items()}
