"""The AUDIT stream's contract, the one both sides import: its producers (today the vault's outbox relay) and its
consumer (the audit service). No service imports another; what they share about an event lives here.

- Stream `AUDIT` on JetStream (file storage, subjects `audit.>`, a duplicate window of an hour, `Nats-Msg-Id`
  = event id), each event on `audit.<producer>.<action>` as a serialized `clientvault.v1.AuditEvent`.
- The action vocabulary (`AuditAction`: the proto enum's names, lower-case; a unit test holds them together).
- The event's fields (`FIELDS`) keep one name from the producer's table through the proto to the audit chain
  (whose canonical encoding pins them); only the HTTP JSON nests them (`userId`, `user.email`).
- `audit_event`, the one place an `AuditEvent` is built.
"""

import contextlib
from datetime import datetime
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from clientvault.convert import enum_number, timestamp
from clientvault.logging import get_logger, log_nats_error
from clientvault.v1 import events_pb2 as pb

log = get_logger(__name__)

STREAM = "AUDIT"
SUBJECTS = ("audit.>",)
DUPLICATE_WINDOW_S = 3600.0


class AuditAction(StrEnum):
    CREDENTIAL_CREATE = "credential_create"
    CREDENTIAL_REVEAL = "credential_reveal"
    CREDENTIAL_UPDATE = "credential_update"
    CREDENTIAL_DELETE = "credential_delete"
    CREDENTIAL_VERSION_REVEAL = "credential_version_reveal"
    CREDENTIAL_RESTORE = "credential_restore"
    CREDENTIAL_PURGE = "credential_purge"
    CLIENT_SHREDDED = "client_shredded"


ACTIONS: tuple[str, ...] = tuple(AuditAction)

# Every field of an event, in the proto's order, with the one name it has everywhere.
FIELDS = (
    "event_id",
    "action",
    "occurred_at",
    "user_id",
    "user_email",
    "user_full_name",
    "credential_id",
    "credential_label",
    "client_id",
    "ip",
    "user_agent",
    "request_id",
)


class AuditFacts(Protocol):
    """Anything with an event's fields by their names: a producer's outbox row, the chain's entry."""

    @property
    def event_id(self) -> UUID: ...
    @property
    def action(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def user_id(self) -> UUID: ...
    @property
    def user_email(self) -> str: ...
    @property
    def user_full_name(self) -> str: ...
    @property
    def credential_id(self) -> UUID: ...
    @property
    def credential_label(self) -> str: ...
    @property
    def client_id(self) -> UUID: ...
    @property
    def ip(self) -> str: ...
    @property
    def user_agent(self) -> str: ...
    @property
    def request_id(self) -> str: ...


def audit_event(facts: AuditFacts) -> pb.AuditEvent:
    """The wire form of an event (never carries a secret, a key or a ciphertext: it has no field for one)."""
    return pb.AuditEvent(
        event_id=str(facts.event_id),
        action=enum_number(pb.AuditAction.DESCRIPTOR, facts.action),
        occurred_at=timestamp(facts.occurred_at),
        user_id=str(facts.user_id),
        user_email=facts.user_email,
        user_full_name=facts.user_full_name,
        credential_id=str(facts.credential_id),
        credential_label=facts.credential_label,
        client_id=str(facts.client_id),
        ip=facts.ip,
        user_agent=facts.user_agent,
        request_id=facts.request_id,
    )


def subject(producer: str, action: str) -> str:
    """`audit.vault.credential_reveal`: where a producer publishes an event."""
    return f"audit.{producer}.{action}"


async def connect(nats_url: str) -> NATS:
    """A connection for a producer or the consumer, as the URL's user with its own inbox prefix
    (clientvault/nats_access.py). It neither creates nor looks up the stream (that user may not: the operator
    creates it, `ensure_stream`); a missing stream shows at the first publish or subscribe. It does not
    reconnect by itself: the caller's retry loop (clientvault/retrying.py) drops it on a failure and connects
    anew."""
    # Imported here: nats_access takes this stream's name from this module.
    from clientvault import nats_access

    return await nats_access.connect(nats_url, allow_reconnect=False, connect_timeout=2, error_cb=log_nats_error)


async def disconnect(nc: NATS | None) -> None:
    """Closes a connection that may be broken already, quietly."""
    if nc is not None and not nc.is_closed:
        with contextlib.suppress(OSError, NatsError, TimeoutError):
            await nc.close()


async def ensure_stream(nc: NATS, replicas: int = 1) -> None:
    """Creates the stream unless it exists: the operator's step (ops/jetstream.py), never a process's (their NATS
    users may not). An existing one is used as it is (a deployment may create it first: deploy/README.md)."""
    js = nc.jetstream()
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=STREAM,
                subjects=list(SUBJECTS),
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_S,
                num_replicas=replicas,
            )
        )
        log.info("audit_stream.created", stream=STREAM, replicas=replicas)
