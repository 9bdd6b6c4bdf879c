"""Reads of the audit log are audited too: each `/audit-logs` call appends an `audit_log_read` entry (who, from
where, which filters) to the chain. The audit service is this event's producer: it signs it with its own event key
and appends it through the same `chain.append` the consumer uses, with no outbox and no NATS in between (it writes
the chain itself, in one transaction). `audit verify` checks its signature like any other; the comparison with the
producers' outboxes leaves producer `audit` out (ops/audit_gaps.py)."""

from dataclasses import replace
from datetime import UTC, date, datetime
from uuid import UUID

from clientvault.context import Caller, RequestContext
from clientvault.db import Database
from clientvault.events import AuditAction, EventSigner, detail_text
from clientvault.ids import new_id
from services.audit import chain
from services.audit.search import Filters


def detail_of(filters: Filters, page: int, page_size: int) -> str:
    """The filters that were set (by their field names), the page and its size, as a JSON object's text."""
    given: dict[str, object] = {
        name: value.isoformat() if isinstance(value, datetime | date) else str(value)
        for name, value in ((name, getattr(filters, name)) for name in Filters.__dataclass_fields__)
        if value is not None
    }
    return detail_text({"filters": given, "page": page, "page_size": page_size})


async def record(
    db: Database,
    signer: EventSigner,
    caller: Caller,
    request: RequestContext,
    filters: Filters,
    page: int,
    page_size: int,
) -> UUID:
    """Appends, signed, the entry of one read of the log; its event id."""
    entry = chain.Entry(
        event_id=new_id(),
        action=AuditAction.AUDIT_LOG_READ,
        occurred_at=datetime.now(UTC),
        user_id=caller.user_id,
        user_email=caller.email,
        user_full_name=caller.full_name,
        credential_id=None,
        credential_label="",
        client_id=None,
        ip=request.client_ip,
        user_agent=request.user_agent,
        request_id=request.request_id,
        detail=detail_of(filters, page, page_size),
    )
    await chain.append(db, [replace(entry, key_id=signer.key_id, signature=signer.signature(entry))])
    return entry.event_id
