"""The exposure report: every credential a user revealed (since a time) whose secret nobody changed since their
last reveal. When someone leaves, these are the secrets to rotate.

Answered from the vault's own record of who revealed what (`vault.reveals`, upserted by each reveal's one
statement, store.REVEAL), never from the audit log, which is another service's schema. The vault does not
own client names: the gateway adds them (gateway/routes/reports.py).
"""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from clientvault import fields
from clientvault.db import Database
from clientvault.errors import Invalid
from services.vault import store


@dataclass(frozen=True, slots=True)
class Exposed:
    credential_id: UUID
    client_id: UUID
    label: str
    last_revealed_at: datetime
    reveal_count: int
    secret_changed_at: datetime


@dataclass(frozen=True, slots=True)
class ExposurePage:
    items: list[Exposed]
    total: int
    page: int
    page_size: int


async def exposure_report(
    db: Database, user_id: UUID, since: datetime | None, *, page: int, page_size: int
) -> ExposurePage:
    if not 1 <= page <= fields.PAGE_MAX:
        raise Invalid(f"page must be 1..{fields.PAGE_MAX}", "page")
    if not 1 <= page_size <= fields.PAGE_SIZE_MAX:
        raise Invalid(f"pageSize must be 1..{fields.PAGE_SIZE_MAX}", "pageSize")
    async with db.read() as conn:
        rows, total = await store.exposure(conn, user_id, since, page_size, (page - 1) * page_size)
    return ExposurePage([Exposed(**row._mapping) for row in rows], total, page, page_size)
