"""The result of `clientvault audit verify` (and of the check `audit checkpoint` makes before it anchors a head),
computed once (`check`) and shown as text or JSON by the CLI.

A new check is a field of `AuditReport`, a line in `problems`, and its part of `as_json`.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clientvault.ed25519 import Ed25519PublicKey
from ops import checkpoints as anchored
from ops.audit_gaps import Gap, Gaps, gaps
from services.audit import admin


@dataclass(frozen=True, slots=True)
class AuditReport:
    verified: admin.Verified  # the chain walked, hashes and signatures, and the first entry where it does not hold
    expected_heads: list[tuple[int, bytes]]  # --expect-head and the checkpoints' heads
    head_problem: str | None  # the first expected head no longer in the chain (None: all there, or none given)
    checkpoint_problem: str | None  # a checkpoint that cannot be read or whose own signature fails
    gaps: Gaps  # the producers' outboxes compared with the log, both ways

    @property
    def problems(self) -> list[str]:
        """What failed, one line each, as the CLI prints it (empty: every check passed)."""
        found, lines = self.verified, []
        if self.checkpoint_problem is not None:
            lines.append(f"checkpoint not trustworthy: {self.checkpoint_problem}")
        if found.broken is not None:
            broken = found.broken
            which = f"entry {broken.seq}" + (f" (event {broken.event_id})" if broken.event_id else "")
            lines.append(f"audit chain broken: {which} was {broken.kind}: {broken.detail}")
            lines.append(f"the {found.count} entries before it verify")
        if self.head_problem is not None:
            lines.append(f"audit chain broken: {self.head_problem}")
        if self.gaps.unrecorded:
            lines.append(
                f"audit log incomplete: {len(self.gaps.unrecorded)} events the producers sent are not in it "
                f"(first: {_first(self.gaps.unrecorded, 'sent')})"
            )
        if self.gaps.unsent:
            lines.append(
                f"audit log has entries no producer sent: {len(self.gaps.unsent)} within the outbox's retention "
                f"(first: {_first(self.gaps.unsent, 'occurred')})"
            )
        return lines

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        found, broken = self.verified, self.verified.broken
        return {
            "ok": self.ok,
            "problems": self.problems,
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
            "expected_heads": len(self.expected_heads),
            "head_problem": self.head_problem,
            "checkpoint_problem": self.checkpoint_problem,
            "outbox_compared": self.gaps.compared,
            "unrecorded": _gaps_json(self.gaps.unrecorded),
            "unsent": _gaps_json(self.gaps.unsent),
        }


def _first(found: list[Gap], verb: str) -> str:
    return f"event {found[0].event_id}, {verb} {found[0].at:%Y-%m-%d %H:%M:%S%z}"


def _gaps_json(found: list[Gap]) -> dict[str, Any]:
    return {
        "count": len(found),
        "first_event_id": str(found[0].event_id) if found else None,
        "first_at": found[0].at.isoformat() if found else None,
    }


def checkpointed_heads(
    checkpoints: Path | None, keys: Sequence[Ed25519PublicKey]
) -> tuple[list[tuple[int, bytes]], str | None]:
    """The heads of the checkpoints at `checkpoints` (none when it is None or does not exist yet), or why they
    cannot be trusted."""
    if checkpoints is None or not checkpoints.exists():
        return [], None
    try:
        return [(c.seq, c.hash) for c in anchored.read(checkpoints, keys)], None
    except anchored.BadCheckpoint as error:
        return [], str(error)


async def check(
    database_url: str,
    keys: admin.TrustedKeys,
    progress: Callable[[int, int], None],
    expect_heads: Sequence[tuple[int, bytes]] = (),
    checkpoint_problem: str | None = None,
) -> AuditReport:
    """Walks the chain (hashes and signatures), checks the expected heads (given, and the checkpoints'), and
    compares the log with what the producers sent."""
    heads = list(expect_heads)
    found, head_problem = await admin.verify(database_url, keys, progress, heads)
    return AuditReport(found, heads, head_problem, checkpoint_problem, await gaps(database_url))
