"""The audit service's process: the consumer that fills the chain, and the gRPC transport of the log."""

from typing import Any
from uuid import UUID

from clientvault.convert import enum_name, from_timestamp
from clientvault.db import Database
from clientvault.errors import Invalid
from clientvault.events import TrustedKeys, audit_event
from clientvault.ids import canonical_id
from clientvault.service import Service
from clientvault.settings import AuditSettings
from clientvault.v1 import audit_pb2 as pb
from clientvault.v1 import audit_pb2_grpc, events_pb2
from services.audit import search
from services.audit.consumer import Consumer

AUDIT = pb.DESCRIPTOR.services_by_name["Audit"]
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
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ListEvents(self, request: pb.ListEventsRequest, context: Any) -> pb.ListEventsResponse:
        if request.action and enum_name(ACTION, request.action) is None:
            raise Invalid("unknown action", "action")
        filters = search.Filters(
            credential_id=filter_id(request.credential_id, "credentialId"),
            user_id=filter_id(request.user_id, "userId"),
            client_id=filter_id(request.client_id, "clientId"),
            action=enum_name(ACTION, request.action),
            start=from_timestamp(request.from_time) if request.HasField("from_time") else None,
            end=from_timestamp(request.to_time) if request.HasField("to_time") else None,
        )
        found = await search.list_events(
            self._db, filters, page=request.page or 1, page_size=request.page_size or search.PAGE_SIZE_DEFAULT
        )
        return pb.ListEventsResponse(
            items=[audit_event(e) for e in found.items],
            total=found.total,
            page=found.page,
            page_size=found.page_size,
        )


async def main(settings: AuditSettings) -> None:
    keys = TrustedKeys.from_setting(settings.event_public_keys)
    async with Service("audit", settings) as service:
        consumer = Consumer(service.db, settings.require_nats_url(), batch=settings.audit_batch, keys=keys)
        service.on_close(consumer.close)
        await service.serve(
            audit_pb2_grpc.add_AuditServicer_to_server, AuditServicer(service.db), AUDIT, consumer.run()
        )
