"""The audit service's process: the consumer that fills the chain, and the gRPC transport of the log. Every read
of the log is itself recorded (`audit_log_read`, services/audit/reads.py)."""

from typing import Any
from uuid import UUID

from clientvault import rpc
from clientvault.convert import enum_name, from_timestamp
from clientvault.db import Database
from clientvault.errors import Invalid
from clientvault.events import EventSigner, TrustedKeys, audit_event
from clientvault.ids import canonical_id
from clientvault.service import Service
from clientvault.settings import AuditSettings
from clientvault.v1 import audit_pb2 as pb
from clientvault.v1 import audit_pb2_grpc, events_pb2
from services.audit import reads, search
from services.audit.consumer import Consumer

AUDIT = pb.DESCRIPTOR.services_by_name["Audit"]
PRODUCER = "audit"  # of `audit_log_read` (clientvault/events.py PRODUCER_OF)
ACTION = events_pb2.AuditAction.DESCRIPTOR


def filter_id(text: str, field: str) -> UUID | None:
    """An id filter: empty is no filter; a malformed one is invalid (a filter names no resource: not 404)."""
    if not text:
        return None
    value = canonical_id(text)
    if value is None:
        raise Invalid(f"{field} is not a valid id", field)
    return value


class AuditServicer(audit_pb2_grpc.AuditServicer):
    def __init__(self, db: Database, signer: EventSigner) -> None:
        self._db = db
        self._signer = signer

    async def ListEvents(self, request: pb.ListEventsRequest, context: Any) -> pb.ListEventsResponse:
        if request.action and enum_name(ACTION, request.action) is None:
            raise Invalid("unknown action", "action")
        filters = search.Filters(
            credential_id=filter_id(request.credential_id, "credentialId"),
            user_id=filter_id(request.user_id, "userId"),
            client_id=filter_id(request.client_id, "clientId"),
            action=enum_name(ACTION, request.action),
            target_user_id=filter_id(request.target_user_id, "targetUserId"),
            start=from_timestamp(request.from_time) if request.HasField("from_time") else None,
            end=from_timestamp(request.to_time) if request.HasField("to_time") else None,
        )
        found = await search.list_events(
            self._db, filters, page=request.page or 1, page_size=request.page_size or search.PAGE_SIZE_DEFAULT
        )
        # Recorded before the page is answered: a read that cannot be recorded is not answered.
        await reads.record(
            self._db, self._signer, rpc.current_caller(), rpc.current_request(), filters, found.page, found.page_size
        )
        return pb.ListEventsResponse(
            items=[audit_event(e) for e in found.items],
            total=found.total,
            page=found.page,
            page_size=found.page_size,
        )


async def main(settings: AuditSettings) -> None:
    keys = TrustedKeys.from_setting(settings.event_public_keys)
    signer = EventSigner.from_setting(PRODUCER, settings.event_signing_key)
    async with Service("audit", settings) as service:
        consumer = Consumer(service.db, settings.require_nats_url(), batch=settings.audit_batch, keys=keys)
        service.on_close(consumer.close)
        await service.serve(
            audit_pb2_grpc.add_AuditServicer_to_server, AuditServicer(service.db, signer), AUDIT, consumer.run()
        )
