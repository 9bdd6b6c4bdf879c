"""The result of `clientvault audit verify`, computed once (`check`) and shown as text or JSON by the CLI.

A new check is a field of `AuditReport`, a line in `ok`, and its part of `as_json` and of the CLI's text.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ops.audit_gaps import Unrecorded, unrecorded
from services.audit import admin


@dataclass(frozen=True, slots=True)
class AuditReport:
    verified: admin.Verified  # the chain walked, and the first entry where it does not hold
    expected_head: tuple[int, bytes] | None  # --expect-head, as given
    head_problem: str | None  # what is wrong with the expected head (None: in the chain, or none given)
    unrecorded: list[Unrecorded] | None  # sent by the vault, missing from the log; None: outbox not readable

    @property
    def ok(self) -> bool:
        return self.verified.broken is None and self.head_problem is None and not self.unrecorded

    def as_json(self) -> dict[str, Any]:
        found, broken = self.verified, self.verified.broken
        first = self.unrecorded[0] if self.unrecorded else None
        return {
            "ok": self.ok,
            "entries_verified": found.count,
            "head": {"seq": found.head_seq, "hash": found.head_hash.hex()},
            "broken": None
            if broken is None
            else {
                "seq": broken.seq,
                "event_id": str(broken.event_id) if broken.event_id else None,
                "kind": broken.kind,
                "detail": broken.detail,
            },
            "expected_head": None
            if self.expected_head is None
            else {
                "seq": self.expected_head[0],
                "hash": self.expected_head[1].hex(),
                "problem": self.head_problem,
            },
            "outbox_compared": self.unrecorded is not None,
            "unrecorded": {
                "count": len(self.unrecorded or ()),
                "first_event_id": str(first.event_id) if first else None,
                "first_sent_at": first.sent_at.isoformat() if first else None,
            },
        }


async def check(
    database_url: str, progress: Callable[[int, int], None], expect_head: tuple[int, bytes] | None
) -> AuditReport:
    """Walks the chain, checks an expected head and compares the log with what the vault sent."""
    found, head_problem = await admin.verify(database_url, progress, expect_head)
    return AuditReport(found, expect_head, head_problem, await unrecorded(database_url))
