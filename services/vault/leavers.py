"""Rotation work on leave: when a user is disabled, every credential in their exposure report becomes a task in its
client, "Rotate <label>: revealed by <name>", priority high, assigned to the client's owner, once.

The fact crosses as an event, the work as one RPC:
- The vault consumes auth's `user_updated` events (subject `audit.auth.user_updated` of the AUDIT stream) with a
  durable pull consumer of its own, `vault-leavers` (clientvault/nats_access.py allows the vault exactly that
  consumer with exactly that filter). It acts only on an event that verifies under a key the operator trusts for
  auth (`CLIENTVAULT_EVENT_PUBLIC_KEYS`, the check the audit service makes: clientvault/events.py `verified`) and
  that says the user was disabled (`detail` `{"disabled": {"from": false, "to": true}}`). Anything else
  (unsigned, signed by another key or producer, on a subject that does not name its action: what someone with
  another process's NATS credentials or the operator's could publish) is logged as `leavers.refused` and
  acknowledged, and makes nothing.
- The list is the exposure report's, from the vault's own data (store.leaver_exposure: `vault.reveals` joined
  with the credentials whose secret has not changed since the last reveal; credentials in the trash too).
- Each task is created through Clients/CreateTask by the vault's service identity (role `rotation_tasks`, which
  the policy table allows that call and nothing else), with `assign_to_owner` (the clients service knows the
  owner) and an origin key `leaver:<userId>:<credentialId>:<lastRevealedAt>`: the clients service answers the
  task made the first time for a key it has seen from this identity in that client. So an event delivered twice
  (a redelivery after a crash, a republished copy) adds nothing, and a user disabled again without revealing
  anything since adds nothing either; one who revealed again after being enabled gets new tasks for that.
- The message is acknowledged after every task of it exists. A client that is archived or gone is skipped
  (logged). While the clients or auth service is down, or the identity is refused (disabled by an admin, a wrong
  password), the message waits (`nak` with a delay) and comes back: no rotation task is lost to an outage.

Only the sink (`TaskSink`) touches gRPC: it is made by server.py, so this module imports no transport.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from clientvault import events, fields, retrying
from clientvault.db import Database
from clientvault.errors import Conflict, Forbidden, NotFound, Unavailable
from clientvault.events import AuditAction, Malformed
from clientvault.logging import get_logger
from clientvault.nats_access import LEAVERS_DURABLE, LEAVERS_SUBJECT
from services.vault import store

log = get_logger(__name__)

DURABLE = LEAVERS_DURABLE
SUBJECT = LEAVERS_SUBJECT
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


class TaskSink(Protocol):
    """Creates a rotation task (Clients/CreateTask as the rotation-tasks identity); an existing origin key answers
    the existing task. Raises NotFound (no such client), Conflict (archived), Forbidden (the identity is refused)
    or Unavailable (an outage)."""

    async def create(self, task: RotationTask) -> None: ...


def disabled_user(event: events.Event) -> UUID | None:
    """The user an event says was disabled just now (None: the event says something else)."""
    if event.action != AuditAction.USER_UPDATED or event.target_user_id is None or not event.detail:
        return None
    change = json.loads(event.detail).get("disabled")
    return event.target_user_id if isinstance(change, dict) and change.get("to") is True else None


def origin_key(user_id: UUID, credential_id: UUID, last_revealed_at: datetime) -> str:
    """`leaver:<userId>:<credentialId>:<lastRevealedAt>` (UTC, microseconds): the exposure a task is for."""
    revealed = last_revealed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"leaver:{user_id}:{credential_id}:{revealed}"


def title(label: str, name: str) -> str:
    text = f"Rotate {label}: revealed by {name}"
    return text if len(text) <= fields.TITLE_MAX else text[: fields.TITLE_MAX - 1] + "…"


async def rotation_tasks(db: Database, user_id: UUID, email: str) -> list[RotationTask]:
    """One task per credential the user revealed that nobody changed since. The user is named as at their last
    reveal, or by the event's email when the vault has no name for them (reveals from before migration 0012)."""
    async with db.read() as conn:
        rows = await store.leaver_exposure(conn, user_id)
    made = []
    for row in rows:
        name = row.user_full_name or email or str(user_id)
        when = row.last_revealed_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        description = (
            f"{name} ({email or user_id}) was disabled. They revealed the secret of {row.label} "
            f"{row.reveal_count} time(s), last at {when}, and it has not changed since: change it at its system, "
            "then update the credential's secret in ClientVault."
        )
        made.append(
            RotationTask(
                client_id=row.client_id,
                credential_id=row.credential_id,
                title=title(row.label, name),
                description=description[: fields.DESCRIPTION_MAX],
                origin_key=origin_key(user_id, row.credential_id, row.last_revealed_at),
            )
        )
    return made


async def make_tasks(db: Database, sink: TaskSink, event: events.Event) -> int | None:
    """The rotation tasks of a verified event: how many exist for it now (None: the event disables nobody).
    Raises Unavailable or Forbidden when some could not be made (the event is to come back)."""
    user_id = disabled_user(event)
    if user_id is None:
        return None
    tasks = await rotation_tasks(db, user_id, event.target_user_email)
    made = 0
    for task in tasks:
        try:
            await sink.create(task)
            made += 1
        except (NotFound, Conflict) as error:  # the client is gone or archived: no work to do there
            log.warning(
                "leavers.task_skipped",
                user_id=str(user_id),
                client_id=str(task.client_id),
                credential_id=str(task.credential_id),
                reason=str(error),
            )
    log.info("leavers.rotation_tasks", user_id=str(user_id), event_id=str(event.event_id), tasks=made)
    return made


class Leavers:
    """The `vault-leavers` durable consumer: each verified "user disabled" event → that user's rotation tasks."""

    def __init__(self, db: Database, nats_url: str, keys: events.TrustedKeys, sink: TaskSink) -> None:
        self._db = db
        self._keys = keys
        self._sink = sink
        self._pull = events.PullConsumer(
            nats_url,
            name="leavers",
            durable=DURABLE,
            subject=SUBJECT,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                # Made on the vault's first start: users disabled from then on (not the stream's past).
                deliver_policy=DeliverPolicy.NEW,
                ack_wait=ACK_WAIT_S,
                max_ack_pending=100,
            ),
        )

    async def run(self) -> None:
        await retrying.forever(
            self.consume_batch, outage="leavers.paused", failure="leavers.failed", reset=self._pull.reset
        )

    async def consume_batch(self) -> int:
        """Fetches and handles one batch; the number of messages it handled."""
        msgs = await self._pull.fetch(BATCH, FETCH_WAIT_S)
        await self.handle(msgs)
        return len(msgs)

    async def handle(self, msgs: Sequence[Msg]) -> None:
        for msg in msgs:
            not_delivered = events.delivery_problem(msg, DURABLE)
            if not_delivered is not None:  # nothing of the stream's to act on or acknowledge
                log.warning("leavers.not_a_delivery", subject=msg.subject, reason=not_delivered)
                continue
            checked = events.verified(msg.subject, msg.data, self._keys)
            if isinstance(checked, Malformed):
                log.warning("leavers.refused", stream_seq=msg.metadata.sequence.stream, reason=checked.reason)
                await msg.ack()
                continue
            try:
                await make_tasks(self._db, self._sink, checked)
            except (Unavailable, Forbidden) as error:
                log.warning("leavers.retry_later", event_id=str(checked.event_id), reason=str(error))
                await msg.nak(delay=RETRY_DELAY_S)
                continue
            await msg.ack()
        if msgs:
            await self._pull.flush()

    async def close(self) -> None:
        await self._pull.reset()
