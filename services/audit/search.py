"""Listing the audit log: filters, newest first (the order events were recorded), exact totals.

Totals are exact and cheap where they are asked most:
- no filter, or one of user (the actor), client, credential, action or target user without a time range: the
  newest matching entry's ordinal (`seq`, or the dimension's ordinal column that the append stored) is the total, and a
  page is an index range on that ordinal, so page 200 costs what page 1 costs;
- anything else (a time range, several filters): a page that is not full is its own total (offset +
  items); otherwise `count(*)` over the filters, which the planner bounds with the most selective index.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from clientvault import fields
from clientvault.db import Database
from clientvault.errors import Invalid
from clientvault.events import ACTIONS
from services.audit import store
from services.audit.chain import Entry, entry_of
from services.audit.store import events

PAGE_SIZE_DEFAULT = 50


@dataclass(frozen=True, slots=True)
class Filters:
    credential_id: UUID | None = None
    user_id: UUID | None = None
    client_id: UUID | None = None
    action: str | None = None
    target_user_id: UUID | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Entry]
    total: int
    page: int
    page_size: int


async def list_events(db: Database, filters: Filters, *, page: int, page_size: int) -> Page:
    if filters.action is not None and filters.action not in ACTIONS:
        raise Invalid(f"unknown action: use one of {', '.join(ACTIONS)}", "action")
    if filters.start is not None and filters.end is not None and filters.start > filters.end:
        raise Invalid("from is after to", "from")
    if not 1 <= page <= fields.PAGE_MAX:
        raise Invalid(f"page must be 1..{fields.PAGE_MAX}", "page")
    if not 1 <= page_size <= fields.PAGE_SIZE_MAX:
        raise Invalid(f"pageSize must be 1..{fields.PAGE_SIZE_MAX}", "pageSize")
    chosen = [(d, getattr(filters, d)) for d in store.DIMENSIONS if getattr(filters, d) is not None]
    conditions: list[Any] = [events.c[d] == value for d, value in chosen]
    conditions += store.occurred_between(filters.start, filters.end)
    offset = (page - 1) * page_size
    async with db.read() as conn:
        if len(chosen) <= 1 and len(conditions) == len(chosen):
            dimension, value = chosen[0] if chosen else (None, None)
            total = await store.last_ordinal(conn, dimension, value)
            ordinal = f"{dimension}_ordinal" if dimension else "seq"
            top = total - offset
            rows = (
                await store.page_of_events(conn, conditions, offset=0, limit=page_size, keyset=(ordinal, top))
                if top > 0
                else []
            )
        else:
            rows = await store.page_of_events(conn, conditions, offset=offset, limit=page_size, keyset=None)
            if len(rows) < page_size and (rows or offset == 0):
                total = offset + len(rows)
            else:
                total = await store.count_events(conn, conditions)
    return Page([entry_of(row) for row in rows], total, page, page_size)
