"""Rotation work: a signed audit event that says someone's access ended becomes one task per credential they revealed,
"Rotate <label>: …", priority high, assigned to the client's owner, once. Two kinds use it: a user disabled
(leavers.py, auth's `user_updated`) and a break-glass grant ended (break_glass.py, the clients service's
`access_grant_ended`).

The fact crosses as an event, the work as one RPC:
- The vault consumes each kind's subject of the AUDIT stream with a durable pull consumer of its own
  (clientvault/nats_access.py allows the vault exactly those consumers with exactly those filters). It acts only on
  an event that verifies under a key the operator trusts for its producer (`CLIENTVAULT_EVENT_PUBLIC_KEYS`, the
  check the audit service makes: clientvault/events.py `verified`) and that says what the kind acts on. Anything
  else (unsigned, signed by another key or producer, on a subject that does not name its action: what someone with
  another process's NATS credentials or the operator's could publish) is logged as `<kind>.refused` and
  acknowledged, and makes nothing.
- The list is the exposure report's, from the vault's own data (store.rotation_exposure: `vault.reveals` joined
  with the credentials whose secret has not changed since the last reveal; credentials in the trash too).
- Each task is created through Clients/CreateTask by the vault's service identity (role `rotation_tasks`, which
  the policy table allows that call and nothing else), with `assign_to_owner` (the clients service knows the
  owner) and an origin key naming what it is for: the clients service answers the task made the first time for a
  key it has seen from this identity in that client. So an event delivered twice (a redelivery after a crash, a
  republished copy) adds nothing.
- The message is acknowledged after every task of it exists. A client that is archived or gone is skipped
  (logged). While the clients or auth service is down, or the identity is refused (disabled by an admin, a wrong
  password), the message waits (`nak` with a delay) and comes back: no rotation task is lost to an outage.

Only the sink (`TaskSink`) touches gRPC: it is made by server.py, so this module imports no transport.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from clientvault import events, fields, retrying
from clientvault.db import Database
from clientvault.errors import Conflict, Forbidden, NotFound, Unavailable
from clientvault.events import Malformed
from clientvault.logging import get_logger

log = get_logger(__name__)

FETCH_WAIT_S = 1.0
ACK_WAIT_S = 120.0  # one event's tasks are made within this, or the event comes back
RETRY_DELAY_S = 30.0  # an event whose tasks could not all be made (an outage, the identity refused) comes back then
BATCH = 10


@dataclass(frozen=True, slots=True)
class RotationTask:
    """One task to create: in `client_id`, high priority, assigned to the client's owner, once per `origin_key`."""

    client_id: UUID
    credential_id: UUID
    title: str
    description: str
    origin_key: str

    @classmethod
    def of(cls, row: Any, why: str, description: str, origin_key: str) -> "RotationTask":
        """The task for an exposure row (store.rotation_exposure): `Rotate <label>: <why>`."""
        return cls(
            client_id=row.client_id,
            credential_id=row.credential_id,
            title=title(row.label, why),
            description=description[: fields.DESCRIPTION_MAX],
            origin_key=origin_key,
        )


class TaskSink(Protocol):
    """Creates a rotation task (Clients/CreateTask as the rotation-tasks identity); an existing origin key answers
    the existing task. Raises NotFound (no such client), Conflict (archived), Forbidden (the identity is refused)
    or Unavailable (an outage)."""

    async def create(self, task: RotationTask) -> None: ...


def title(label: str, why: str) -> str:
    """`Rotate <label>: <why>`, cut to a task title's length."""
    text = f"Rotate {label}: {why}"
    return text if len(text) <= fields.TITLE_MAX else text[: fields.TITLE_MAX - 1] + "…"


def instant(value: datetime) -> str:
    """A time as a task's text and origin key write it: UTC, `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# The tasks a verified event asks for (None: the event is not one this kind acts on).
TasksOf = Callable[[Database, events.Event], Awaitable[list[RotationTask] | None]]


async def make_tasks(sink: TaskSink, tasks: list[RotationTask], kind: str, event: events.Event) -> int:
    """Creates the tasks: how many exist now. Raises Unavailable or Forbidden when some could not be made (the event
    is to come back)."""
    made = 0
    for task in tasks:
        try:
            await sink.create(task)
            made += 1
        except (NotFound, Conflict) as error:  # the client is gone or archived: no work to do there
            log.warning(
                f"{kind}.task_skipped",
                client_id=str(task.client_id),
                credential_id=str(task.credential_id),
                reason=str(error),
            )
    log.info(f"{kind}.rotation_tasks", event_id=str(event.event_id), tasks=made)
    return made


class RotationWork:
    """A durable consumer of one subject: each verified event → the rotation tasks `tasks_of` says."""

    def __init__(
        self,
        db: Database,
        nats_url: str,
        keys: events.TrustedKeys,
        sink: TaskSink,
        *,
        kind: str,
        durable: str,
        subject: str,
        tasks_of: TasksOf,
    ) -> None:
        self._db = db
        self._keys = keys
        self._sink = sink
        self._kind = kind
        self._durable = durable
        self._tasks_of = tasks_of
        self._pull = events.PullConsumer(
            nats_url,
            name=kind,
            durable=durable,
            subject=subject,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                # Made on the vault's first start: events from then on (not the stream's past).
                deliver_policy=DeliverPolicy.NEW,
                ack_wait=ACK_WAIT_S,
                max_ack_pending=100,
            ),
        )

    async def run(self) -> None:
        await retrying.forever(
            self.consume_batch, outage=f"{self._kind}.paused", failure=f"{self._kind}.failed", reset=self._pull.reset
        )

    async def consume_batch(self) -> int:
        """Fetches and handles one batch; the number of messages it handled."""
        msgs = await self._pull.fetch(BATCH, FETCH_WAIT_S)
        await self.handle(msgs)
        return len(msgs)

    async def handle(self, msgs: Sequence[Msg]) -> None:
        for msg in msgs:
            not_delivered = events.delivery_problem(msg, self._durable)
            if not_delivered is not None:  # nothing of the stream's to act on or acknowledge
                log.warning(f"{self._kind}.not_a_delivery", subject=msg.subject, reason=not_delivered)
                continue
            checked = events.verified(msg.subject, msg.data, self._keys)
            if isinstance(checked, Malformed):
                log.warning(f"{self._kind}.refused", stream_seq=msg.metadata.sequence.stream, reason=checked.reason)
                await msg.ack()
                continue
            try:
                tasks = await self._tasks_of(self._db, checked)
                if tasks is not None:
                    await make_tasks(self._sink, tasks, self._kind, checked)
            except (Unavailable, Forbidden) as error:
                log.warning(f"{self._kind}.retry_later", event_id=str(checked.event_id), reason=str(error))
                await msg.nak(delay=RETRY_DELAY_S)
                continue
            await msg.ack()
        if msgs:
            await self._pull.flush()

    async def close(self) -> None:
        await self._pull.reset()
