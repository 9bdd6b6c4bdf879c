"""The clients service's audit events: a member added or removed, a client unarchived. Each is written to its
outbox (`clients.outbox`, the kit's shape: clientvault/outbox.py) in the transaction of the change, so the event
exists exactly when the change does; the clients service's relay signs it with its own event key and publishes it on
`audit.clients.<action>` (clientvault/events.py), for the audit service to chain.
"""

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault import outbox, tracing
from clientvault.context import Caller, RequestContext
from clientvault.events import PRODUCER_OF, AuditAction
from clientvault.ids import new_id
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
    if PRODUCER_OF[action] != "clients":
        raise ValueError(f"{action} is not a clients event")
    await outbox.insert_event(
        conn,
        store.outbox,
        event_id=new_id(),
        action=action.value,
        occurred_at=datetime.now(UTC),
        user_id=caller.user_id,
        user_email=caller.email,
        user_full_name=caller.full_name,
        credential_id=None,
        credential_label="",
        client_id=client_id,
        ip=context.client_ip,
        user_agent=context.user_agent,
        request_id=context.request_id,
        target_user_id=member_id,
        target_user_email="",
        detail="",
        traceparent=tracing.traceparent(),  # the audit append continues this request's trace
    )
