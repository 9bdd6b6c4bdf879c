"""The clients service's audit events: a member added or removed, a client unarchived. Each is written to its
outbox (`clients.outbox`, the kit's shape: clientvault/outbox.py) in the transaction of the change, so the event
exists exactly when the change does; the clients service's relay signs it with its own event key and publishes it on
`audit.clients.<action>` (clientvault/events.py), for the audit service to chain.
"""

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault import outbox
from clientvault.context import Caller, RequestContext
from clientvault.events import AuditAction
from services.clients import store


async def record(
    conn: AsyncConnection,
    action: AuditAction,
    caller: Caller,
    context: RequestContext,
    *,
    client_id: UUID,
    member_id: UUID | None = None,
) -> None:
    """Writes one event to the outbox in `conn`'s transaction: `caller` acted on the client (and on the member)."""
    await outbox.record_event(
        conn, store.outbox, "clients", action, caller, context, client_id=client_id, target_user_id=member_id
    )
