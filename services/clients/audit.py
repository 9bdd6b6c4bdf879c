"""The clients service's audit events: a member added or removed, a client archived or unarchived, access requested,
approved or denied, a grant ended, a break-glass. Each is written to its
outbox (`clients.outbox`, the kit's shape: clientvault/outbox.py) in the transaction of the change, so the event
exists exactly when the change does; the clients service's relay signs it with its own event key and publishes it on
`audit.clients.<action>` (clientvault/events.py), for the audit service to chain.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault import outbox
from clientvault.context import RequestContext
from clientvault.events import AuditAction, detail_text
from clientvault.outbox import Actor
from services.clients import store


@dataclass(frozen=True, slots=True)
class Nobody:
    """The actor of what the clients service records on its own (no user acted: no id, no email)."""

    full_name: str
    user_id: UUID | None = None
    email: str = ""


GRANT_EXPIRY = Nobody("clients service (grant expiry)")


async def record(
    conn: AsyncConnection,
    action: AuditAction,
    caller: Actor,
    context: RequestContext,
    *,
    client_id: UUID,
    member_id: UUID | None = None,
    detail: Mapping[str, object] | None = None,
) -> None:
    """Writes one event to the outbox in `conn`'s transaction: `caller` acted on the client (and on the member, or
    the user whose access it is), with `detail` (keys with no value are left out: `detail_text`)."""
    await outbox.record_event(
        conn,
        store.outbox,
        "clients",
        action,
        caller,
        context,
        client_id=client_id,
        target_user_id=member_id,
        detail=detail_text(detail),
    )
