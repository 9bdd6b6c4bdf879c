"""Auth's security events: sign-ins and their failures, sessions ended, user changes. Each one is written to auth's
outbox (`auth.outbox`, the kit's shape: clientvault/outbox.py) by `record`, in the transaction of the change it
records, so the event exists exactly when the change does; auth's relay signs it with auth's event key and
publishes it on `audit.auth.<action>` (clientvault/events.py). The relay is woken after the commit by whoever
holds it (`Sessions`), or finds the row at its next sweep (`CLIENTVAULT_OUTBOX_SWEEP_S`; an operator's command
writes in its own process, which has no relay).

An event never carries a password, a token, a TOTP code or seed: `detail` says what changed (names and values of
role, disabled, name; a session id), never a secret.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault import outbox
from clientvault.context import Caller, RequestContext
from clientvault.events import AuditAction, detail_text
from services.auth import store

MAX_TYPED_EMAIL = 320  # an email as typed at a failed sign-in is kept to this many characters


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted, as the event keeps them: a signed-in user, or nobody (`user_id` None) with what is known."""

    user_id: UUID | None
    email: str
    full_name: str

    @classmethod
    def of(cls, who: "Caller | Someone") -> "Actor":
        if isinstance(who, Caller):
            return cls(who.user_id, who.email, who.full_name)
        return cls(who.id, who.email, who.full_name)

    @classmethod
    def typed(cls, email: str) -> "Actor":
        """Nobody signed in: the email as it was typed at a sign-in (never the password)."""
        return cls(None, email.replace("\x00", "")[:MAX_TYPED_EMAIL], "")


# An operator's command (`clientvault users …`), which runs with database access and no user.
OPERATOR = Actor(None, "", "operator (clientvault command)")


class Someone(Protocol):
    """A user as auth's domain holds one (services/auth/users.py `User`)."""

    @property
    def id(self) -> UUID: ...
    @property
    def email(self) -> str: ...
    @property
    def full_name(self) -> str: ...


async def record(
    conn: AsyncConnection,
    action: AuditAction,
    *,
    actor: Actor,
    target: Someone | Caller | None,
    context: RequestContext,
    detail: Mapping[str, object] | None = None,
) -> UUID:
    """Writes one security event to auth's outbox in `conn`'s transaction; its event id. `target`: the user the
    action was about (a user or a verified caller; None: none); `context`: the request behind it (the transport
    passes `rpc.current_request()`; NO_REQUEST for an operator's command); `detail`: JSON-able facts, never a
    secret."""
    return await outbox.record_event(
        conn,
        store.outbox,
        "auth",
        action,
        actor,
        context,
        target_user_id=None if target is None else target.user_id if isinstance(target, Caller) else target.id,
        target_user_email="" if target is None else target.email,
        detail=detail_text(detail),
    )
