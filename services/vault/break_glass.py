"""Rotation work after a break-glass: when a break-glass grant ends (revoked, or expired and noticed by the clients
service's sweep), every credential its holder revealed in that client since the grant started, and that nobody
changed since, becomes a task in the client: "Rotate <label>: revealed under break-glass by <name>", priority
high, assigned to the client's owner, once.

The machinery is rotation_work.py's; what is a break-glass's:
- The vault's durable pull consumer `vault-break-glass` reads the clients service's `access_grant_ended` events
  (subject `audit.clients.access_grant_ended`) and acts on one that verifies under the clients service's key and
  whose `detail` says `"breakGlass": true` (with `grantId` and `startedAt`); the event names the client
  (`client_id`) and the holder (`target_user_id`). Other grants' ends are acknowledged and make nothing.
- The origin key is `breakglass:<grantId>:<credentialId>`: the end delivered twice (or replayed) adds nothing.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from clientvault import events
from clientvault.db import Database
from clientvault.events import AuditAction
from clientvault.nats_access import BREAK_GLASS_DURABLE, BREAK_GLASS_SUBJECT
from services.vault import store
from services.vault.rotation_work import RotationTask, RotationWork, TaskSink, instant


@dataclass(frozen=True, slots=True)
class BreakGlassEnd:
    grant_id: UUID
    client_id: UUID
    user_id: UUID
    started_at: datetime


def break_glass_end(event: events.Event) -> BreakGlassEnd | None:
    """The break-glass grant an event says ended (None: the event says something else)."""
    if event.action != AuditAction.ACCESS_GRANT_ENDED or not event.detail:
        return None
    if event.client_id is None or event.target_user_id is None:
        return None
    detail = json.loads(event.detail)
    if detail.get("breakGlass") is not True:
        return None
    try:
        return BreakGlassEnd(
            UUID(detail["grantId"]), event.client_id, event.target_user_id, datetime.fromisoformat(detail["startedAt"])
        )
    except (KeyError, TypeError, ValueError):
        return None


async def tasks_of(db: Database, event: events.Event) -> list[RotationTask] | None:
    ended = break_glass_end(event)
    if ended is None:
        return None
    async with db.read() as conn:
        rows = await store.rotation_exposure(conn, ended.user_id, client_id=ended.client_id, since=ended.started_at)
    made = []
    for row in rows:
        name = row.user_full_name or str(ended.user_id)
        description = (
            f"{name} broke the glass on this client at {instant(ended.started_at)} and revealed the secret of "
            f"{row.label} under it (last at {instant(row.last_revealed_at)}); it has not changed since: change it at "
            "its system, then update the credential's secret in ClientVault."
        )
        why = f"revealed under break-glass by {name}"
        made.append(RotationTask.of(row, why, description, f"breakglass:{ended.grant_id}:{row.credential_id}"))
    return made


class BreakGlassEnds(RotationWork):
    """The `vault-break-glass` durable consumer: each verified end of a break-glass grant → its rotation tasks."""

    def __init__(self, db: Database, nats_url: str, keys: events.TrustedKeys, sink: TaskSink) -> None:
        super().__init__(
            db,
            nats_url,
            keys,
            sink,
            kind="break_glass",
            durable=BREAK_GLASS_DURABLE,
            subject=BREAK_GLASS_SUBJECT,
            tasks_of=tasks_of,
        )
