"""Rotation work on leave: when a user is disabled, every credential in their exposure report becomes a task in its
client, "Rotate <label>: revealed by <name>", priority high, assigned to the client's owner, once.

The machinery (a durable consumer of signed events, the tasks made through Clients/CreateTask as the rotation-tasks
identity, retried through outages) is rotation_work.py's; what is a leaver's:
- The vault's durable pull consumer `vault-leavers` reads auth's `user_updated` events (subject
  `audit.auth.user_updated`) and acts on one that verifies under auth's key and says the user was disabled
  (`detail` `{"disabled": {"from": false, "to": true}}`).
- The list is the exposure report's, ever, in every client.
- The origin key is `leaver:<userId>:<credentialId>:<lastRevealedAt>`: a user disabled again without revealing
  anything since adds nothing; one who revealed again after being enabled gets new tasks for that.
"""

import json
from datetime import UTC
from uuid import UUID

from clientvault import events
from clientvault.db import Database
from clientvault.events import AuditAction
from clientvault.nats_access import LEAVERS_DURABLE, LEAVERS_SUBJECT
from services.vault import store
from services.vault.rotation_work import RotationTask, RotationWork, TaskSink, instant

DURABLE = LEAVERS_DURABLE
SUBJECT = LEAVERS_SUBJECT


def disabled_user(event: events.Event) -> UUID | None:
    """The user an event says was disabled just now (None: the event says something else)."""
    if event.action != AuditAction.USER_UPDATED or event.target_user_id is None or not event.detail:
        return None
    change = json.loads(event.detail).get("disabled")
    return event.target_user_id if isinstance(change, dict) and change.get("to") is True else None


async def rotation_tasks(db: Database, user_id: UUID, email: str) -> list[RotationTask]:
    """One task per credential the user revealed that nobody changed since. The user is named as at their last
    reveal, or by the event's email when the vault has no name for them (reveals from before migration 0012)."""
    async with db.read() as conn:
        rows = await store.rotation_exposure(conn, user_id)
    made = []
    for row in rows:
        name = row.user_full_name or email or str(user_id)
        when = row.last_revealed_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        description = (
            f"{name} ({email or user_id}) was disabled. They revealed the secret of {row.label} "
            f"{row.reveal_count} time(s), last at {when}, and it has not changed since: change it at its system, "
            "then update the credential's secret in ClientVault."
        )
        origin = f"leaver:{user_id}:{row.credential_id}:{instant(row.last_revealed_at)}"
        made.append(RotationTask.of(row, f"revealed by {name}", description, origin))
    return made


async def tasks_of(db: Database, event: events.Event) -> list[RotationTask] | None:
    user_id = disabled_user(event)
    return None if user_id is None else await rotation_tasks(db, user_id, event.target_user_email)


class Leavers(RotationWork):
    """The `vault-leavers` durable consumer: each verified "user disabled" event → that user's rotation tasks."""

    def __init__(self, db: Database, nats_url: str, keys: events.TrustedKeys, sink: TaskSink) -> None:
        super().__init__(db, nats_url, keys, sink, kind="leavers", durable=DURABLE, subject=SUBJECT, tasks_of=tasks_of)
