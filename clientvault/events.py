"""The AUDIT stream's contract, the one both sides import: its producers (the outbox relays of the vault, auth and
clients, clientvault/outbox.py, and the audit service for reads of the log) and its consumer (the audit service). No
service imports another; what they share about an event lives here.

- Stream `AUDIT` on JetStream (file storage, subjects `audit.>`, a duplicate window of two minutes, `Nats-Msg-Id`
  = event id), each event on `audit.<producer>.<action>` as a serialized `clientvault.v1.AuditEvent`.
- The action vocabulary (`AuditAction`: the proto enum's names, lower-case; a unit test holds them together).
- The event's fields (`FIELDS`) keep one name from the producer's table through the proto to the audit chain
  (whose canonical encoding pins them); only the HTTP JSON nests them (`userId`, `user.email`). An event names
  its subject: a credential (`credential_id`, `credential_label`, `client_id`), a user (`target_user_id`,
  `target_user_email`) or none; an id that names nothing is None (empty on the wire), `detail` is a JSON
  object's text (what changed, which filters, why refused) or empty.
- `audit_event`, the one place an `AuditEvent` is built; `canonical`, the one encoding of an event's facts, which
  its producer signs and the audit chain hashes.
- Signing: every producer signs each event with its own Ed25519 key (`EventSigner`); the consumer and
  `audit verify` trust the public keys the operator lists per producer (`TrustedKeys`), and each producer may
  only speak of its own actions (`PRODUCER_OF`). A key id is derived from its public key (clientvault/ed25519.py).
"""

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from google.protobuf.message import DecodeError
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from pydantic import SecretStr

from clientvault import ed25519
from clientvault.convert import enum_name, enum_number, from_timestamp, timestamp
from clientvault.errors import Misconfigured
from clientvault.logging import get_logger, log_nats_error
from clientvault.v1 import events_pb2 as pb

log = get_logger(__name__)

STREAM = "AUDIT"
SUBJECTS = ("audit.>",)
# Long enough for the one republish the relay does by design: a batch JetStream stored but the relay did not mark
# sent (it crashed or lost PostgreSQL between the ack and the commit) goes out again once it is back, from the
# next sweep (`outbox_sweep_s`) or a restart. A later duplicate is still stored only once: the audit chain's unique
# event id drops it (services/audit/chain.py). The server keeps every id of the window in memory (about 300 bytes
# each, bench/README.md `memory.py`): an hour, as before, was some 800 MB at 800 reveals/s, growing all hour.
DUPLICATE_WINDOW_S = 120.0


class AuditAction(StrEnum):
    CREDENTIAL_CREATE = "credential_create"
    CREDENTIAL_REVEAL = "credential_reveal"
    CREDENTIAL_UPDATE = "credential_update"
    CREDENTIAL_DELETE = "credential_delete"
    REVEAL_THROTTLED = "reveal_throttled"
    REVEAL_DENIED = "reveal_denied"
    SIGN_IN = "sign_in"
    SIGN_IN_FAILED = "sign_in_failed"
    SIGN_IN_THROTTLED = "sign_in_throttled"
    MFA_FAILED = "mfa_failed"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105
    SIGN_OUT = "sign_out"
    SESSION_REVOKED = "session_revoked"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105
    PASSWORD_RESET = "password_reset"  # noqa: S105
    MFA_ENROLLED = "mfa_enrolled"
    MFA_DISABLED = "mfa_disabled"
    USER_CREATED = "user_created"
    USER_UPDATED = "user_updated"
    AUDIT_LOG_READ = "audit_log_read"
    CREDENTIAL_VERSION_REVEAL = "credential_version_reveal"
    CREDENTIAL_RESTORE = "credential_restore"
    CREDENTIAL_PURGE = "credential_purge"
    CLIENT_SHREDDED = "client_shredded"
    CREDENTIAL_TOTP = "credential_totp"
    CREDENTIAL_EXPORT = "credential_export"
    CLIENT_MEMBER_ADDED = "client_member_added"
    CLIENT_MEMBER_REMOVED = "client_member_removed"
    CLIENT_UNARCHIVED = "client_unarchived"
    ACCESS_REQUESTED = "access_requested"
    ACCESS_APPROVED = "access_approved"
    ACCESS_DENIED = "access_denied"
    ACCESS_GRANT_ENDED = "access_grant_ended"
    BREAK_GLASS = "break_glass"
    CLIENT_ARCHIVED = "client_archived"
    CLIENT_POLICY_CHANGED = "client_policy_changed"


ACTIONS: tuple[str, ...] = tuple(AuditAction)

VAULT_ACTIONS = (
    AuditAction.CREDENTIAL_CREATE,
    AuditAction.CREDENTIAL_REVEAL,
    AuditAction.CREDENTIAL_UPDATE,
    AuditAction.CREDENTIAL_DELETE,
    AuditAction.REVEAL_THROTTLED,
    AuditAction.REVEAL_DENIED,
    AuditAction.CREDENTIAL_VERSION_REVEAL,
    AuditAction.CREDENTIAL_RESTORE,
    AuditAction.CREDENTIAL_PURGE,
    AuditAction.CLIENT_SHREDDED,
    AuditAction.CREDENTIAL_TOTP,
    AuditAction.CREDENTIAL_EXPORT,
)
AUDIT_ACTIONS = (AuditAction.AUDIT_LOG_READ,)
CLIENTS_ACTIONS = (
    AuditAction.CLIENT_MEMBER_ADDED,
    AuditAction.CLIENT_MEMBER_REMOVED,
    AuditAction.CLIENT_UNARCHIVED,
    AuditAction.ACCESS_REQUESTED,
    AuditAction.ACCESS_APPROVED,
    AuditAction.ACCESS_DENIED,
    AuditAction.ACCESS_GRANT_ENDED,
    AuditAction.BREAK_GLASS,
    AuditAction.CLIENT_ARCHIVED,
    AuditAction.CLIENT_POLICY_CHANGED,
)
# Which producer may publish (and sign) each action: a producer's key signs only its own kind of event, so a
# stolen auth key cannot make a credential reveal. A unit test holds every action to exactly one producer.
PRODUCER_OF: dict[str, str] = {
    action: "vault"
    if action in VAULT_ACTIONS
    else "audit"
    if action in AUDIT_ACTIONS
    else "clients"
    if action in CLIENTS_ACTIONS
    else "auth"
    for action in AuditAction
}
# The producers that publish through an outbox (clientvault/outbox.py), which `audit verify` compares with the
# chain; the audit service appends its own events to the chain directly.
OUTBOX_PRODUCERS = ("vault", "auth", "clients")

# Every field of an event, in the proto's order, with the one name it has everywhere.
FIELDS = (
    "event_id",
    "action",
    "occurred_at",
    "user_id",
    "user_email",
    "user_full_name",
    "credential_id",
    "credential_label",
    "client_id",
    "ip",
    "user_agent",
    "request_id",
    "target_user_id",
    "target_user_email",
    "detail",
)


# What a producer adds when it publishes (the proto's last fields; the chain stores them, the outbox does not).
SIGNATURE_FIELDS = ("key_id", "signature")


class AuditFacts(Protocol):
    """Anything with an event's fields by their names: a producer's outbox row, the chain's entry."""

    @property
    def event_id(self) -> UUID: ...
    @property
    def action(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def user_id(self) -> UUID | None: ...
    @property
    def user_email(self) -> str: ...
    @property
    def user_full_name(self) -> str: ...
    @property
    def credential_id(self) -> UUID | None: ...
    @property
    def credential_label(self) -> str: ...
    @property
    def client_id(self) -> UUID | None: ...
    @property
    def ip(self) -> str: ...
    @property
    def user_agent(self) -> str: ...
    @property
    def request_id(self) -> str: ...
    @property
    def target_user_id(self) -> UUID | None: ...
    @property
    def target_user_email(self) -> str: ...
    @property
    def detail(self) -> str: ...


def _id(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def audit_event(facts: AuditFacts) -> pb.AuditEvent:
    """The wire form of an event (never carries a secret, a key or a ciphertext: it has no field for one)."""
    return pb.AuditEvent(
        event_id=str(facts.event_id),
        action=enum_number(pb.AuditAction.DESCRIPTOR, facts.action),
        occurred_at=timestamp(facts.occurred_at),
        user_id=_id(facts.user_id) or "",
        user_email=facts.user_email,
        user_full_name=facts.user_full_name,
        credential_id=_id(facts.credential_id) or "",
        credential_label=facts.credential_label,
        client_id=_id(facts.client_id) or "",
        ip=facts.ip,
        user_agent=facts.user_agent,
        request_id=facts.request_id,
        target_user_id=_id(facts.target_user_id) or "",
        target_user_email=facts.target_user_email,
        detail=facts.detail,
    )


def detail_text(facts: Mapping[str, object] | None) -> str:
    """An event's `detail` as its producer writes it: a JSON object's text, sorted keys, no whitespace, a key whose
    value is None left out ('' when there is nothing left to say). Never a secret."""
    said = {name: value for name, value in (facts or {}).items() if value is not None}
    return json.dumps(said, sort_keys=True, separators=(",", ":"), default=str) if said else ""


# Versions of `canonical`: 1, the unsigned events chained before signing; 2, signed (the key id is encoded);
# 3, signed, for an event that uses what version 2 cannot say (a subject user, a detail, an absent id).
UNSIGNED_VERSION = 1
SIGNED_VERSION = 2
SUBJECT_VERSION = 3


def needs_subject_version(facts: AuditFacts) -> bool:
    """Whether an event can only be encoded by version 3. A credential event without the new fields stays version 2,
    so the vault's events keep the bytes they always had; the choice is the facts', so a signature pins it."""
    return (
        facts.target_user_id is not None
        or bool(facts.target_user_email)
        or bool(facts.detail)
        or facts.user_id is None
        or facts.credential_id is None
        or facts.client_id is None
    )


def canonical(facts: AuditFacts, key_id: str | None = None) -> bytes:
    """The stored format of an event's facts, the bytes its producer signs and the chain hashes: JSON with sorted
    keys, no whitespace, UTF-8, ids as lowercase hyphenated UUIDs, `occurred_at` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`
    (UTC, microseconds: what PostgreSQL keeps), `"v"` the version and, when signed, `"key_id"`; version 3 adds
    `target_user_id`, `target_user_email` and `detail`, and writes an absent id as null. Changing it is a new
    version: entries already stored keep verifying by theirs."""
    fields: dict[str, object] = {  # spelled out, not dataclasses.asdict (a deep copy): verify runs it per entry
        "action": facts.action,
        "client_id": _id(facts.client_id),
        "credential_id": _id(facts.credential_id),
        "credential_label": facts.credential_label,
        "event_id": str(facts.event_id),
        "ip": facts.ip,
        "occurred_at": facts.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "request_id": facts.request_id,
        "user_agent": facts.user_agent,
        "user_email": facts.user_email,
        "user_full_name": facts.user_full_name,
        "user_id": _id(facts.user_id),
        "v": UNSIGNED_VERSION,
    }
    if key_id is not None:
        fields |= {"key_id": key_id, "v": SIGNED_VERSION}
        if needs_subject_version(facts):
            fields |= {
                "detail": facts.detail,
                "target_user_email": facts.target_user_email,
                "target_user_id": _id(facts.target_user_id),
                "v": SUBJECT_VERSION,
            }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class EventSigner:
    """A producer's signing key (`CLIENTVAULT_EVENT_SIGNING_KEY`, held by that producer alone)."""

    def __init__(self, producer: str, private_key: ed25519.Ed25519PrivateKey) -> None:
        self.producer = producer
        self._key = private_key
        self._signing = ed25519.event_signing_key(private_key)
        self.key_id = ed25519.key_id(private_key.public_key())

    @classmethod
    def from_setting(cls, producer: str, setting: SecretStr | None) -> "EventSigner":
        """Misconfigured when the setting holds no key (a producer never publishes unsigned)."""
        encoded = setting.get_secret_value() if setting is not None else ""
        if not encoded:
            raise Misconfigured(
                "CLIENTVAULT_EVENT_SIGNING_KEY is not set: every audit event is signed by its producer "
                "(base64 of a 32-byte Ed25519 private key, e.g. 32 random bytes)"
            )
        try:
            return cls(producer, ed25519.private_key(encoded, "CLIENTVAULT_EVENT_SIGNING_KEY"))
        except ValueError as error:
            raise Misconfigured(str(error)) from None

    def signature(self, facts: AuditFacts) -> bytes:
        return self._signing.sign(canonical(facts, self.key_id)).signature

    def event(self, facts: AuditFacts) -> pb.AuditEvent:
        """The signed wire form of an event."""
        event = audit_event(facts)
        event.key_id = self.key_id
        event.signature = self.signature(facts)
        return event

    @property
    def trusted_entry(self) -> str:
        """How the consumer's `CLIENTVAULT_EVENT_PUBLIC_KEYS` names this key: `producer:base64`."""
        return f"{self.producer}:{ed25519.encode_public(self._key.public_key())}"


@dataclass(frozen=True, slots=True)
class TrustedKey:
    producer: str
    verify_key: VerifyKey


class TrustedKeys:
    """The producers' public keys the operator trusts (`CLIENTVAULT_EVENT_PUBLIC_KEYS`: `producer:base64`,
    comma-separated; retired keys stay listed while entries they signed are kept), by key id."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.by_id: dict[str, TrustedKey] = {}
        for entry in entries:
            producer, _, encoded = entry.partition(":")
            if producer not in PRODUCER_OF.values():
                raise ValueError(
                    f"CLIENTVAULT_EVENT_PUBLIC_KEYS: {producer!r} is no audit producer "
                    f"(entries are producer:base64, producers {sorted(set(PRODUCER_OF.values()))})"
                )
            key = ed25519.public_key(encoded, f"CLIENTVAULT_EVENT_PUBLIC_KEYS ({producer})")
            self.by_id[ed25519.key_id(key)] = TrustedKey(producer, ed25519.event_verify_key(key))

    @classmethod
    def from_setting(cls, entries: Iterable[str]) -> "TrustedKeys":
        """Misconfigured when the setting is empty or names no key: the audit service would park every event."""
        try:
            keys = cls(entries)
        except ValueError as error:
            raise Misconfigured(str(error)) from None
        if not keys.by_id:
            raise Misconfigured(
                "CLIENTVAULT_EVENT_PUBLIC_KEYS is not set: list each audit producer's public key as producer:base64 "
                "(`clientvault public-key --producer NAME` prints it), or every event would be refused"
            )
        return keys

    def problem(
        self,
        facts: AuditFacts,
        key_id: str,
        signature: bytes,
        producer: str | None = None,
        encoded: bytes | None = None,
    ) -> str | None:
        """Why an event's signature does not prove it (None: it does). `producer`: whom the event claims to come
        from (its subject), when known; `encoded`: `canonical(facts, key_id)` when the caller has it already."""
        if not key_id or not signature:
            return "unsigned"
        trusted = self.by_id.get(key_id)
        if trusted is None:
            return f"signed by unknown key {key_id}"
        if producer is not None and producer != trusted.producer:
            return f"published as {producer} but signed by {trusted.producer}'s key {key_id}"
        if PRODUCER_OF.get(facts.action) != trusted.producer:
            return f"{trusted.producer} may not sign {facts.action} events"
        try:
            trusted.verify_key.verify(encoded if encoded is not None else canonical(facts, key_id), signature)
        except CryptoError:  # a signature that does not verify, or one that is not 64 bytes
            return f"signature does not verify with key {key_id}"
        return None


def subject(producer: str, action: str) -> str:
    """`audit.vault.credential_reveal`: where a producer publishes an event."""
    return f"audit.{producer}.{action}"


def producer_of_subject(name: str) -> str | None:
    """The producer a subject names (`audit.vault.…` → vault); None when it is no audit subject."""
    parts = name.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "audit" else None


# --- receiving: what the audit consumer and the vault's leavers consumer (services/vault/leavers.py) both do --------


@dataclass(frozen=True, slots=True)
class Event:
    """One audit event as received and stored: the actor and the subject (a credential, a user) as they were when
    it happened; an id that names nothing is None. The audit chain stores these (services/audit/chain.py)."""

    event_id: UUID
    action: str
    occurred_at: datetime
    user_id: UUID | None
    user_email: str
    user_full_name: str
    credential_id: UUID | None
    credential_label: str
    client_id: UUID | None
    ip: str
    user_agent: str
    request_id: str
    target_user_id: UUID | None = None
    target_user_email: str = ""
    detail: str = ""
    key_id: str | None = None  # None (and no signature): chained unsigned, before events were signed
    signature: bytes | None = None


@dataclass(frozen=True, slots=True)
class Malformed:
    """Why a message is no event to act on (its bytes, its subject or its signature)."""

    reason: str


def decode(data: bytes) -> Event | Malformed:
    """An AuditEvent's bytes → an event (its signature not checked yet), or why it cannot be one."""
    try:
        event = pb.AuditEvent.FromString(data)
    except DecodeError:
        return Malformed("not an AuditEvent (undecodable protobuf)")
    action = enum_name(pb.AuditAction.DESCRIPTOR, event.action)
    if action not in ACTIONS:
        return Malformed(f"unknown action {event.action}")
    if not event.HasField("occurred_at"):
        return Malformed("no occurred_at")
    try:
        event_id = UUID(event.event_id)
    except ValueError:
        return Malformed("event_id is not a UUID")
    ids: dict[str, UUID | None] = {}
    for name in ("user_id", "credential_id", "client_id", "target_user_id"):
        value = getattr(event, name)
        try:
            ids[name] = UUID(value) if value else None  # empty: the event has no such subject
        except ValueError:
            return Malformed(f"{name} is not a UUID")
    try:
        occurred_at = from_timestamp(event.occurred_at)
    except (ValueError, OverflowError):
        return Malformed("occurred_at is out of range")
    texts = (
        event.user_email,
        event.user_full_name,
        event.credential_label,
        event.ip,
        event.user_agent,
        event.target_user_email,
        event.detail,
    )
    if any("\x00" in text for text in (*texts, event.request_id, event.key_id)):
        return Malformed("a text field contains NUL")  # PostgreSQL text cannot hold it: it would fail the batch
    if event.detail and not _is_json_object(event.detail):
        return Malformed("detail is not a JSON object")
    return Event(
        action=action,
        occurred_at=occurred_at,
        user_email=event.user_email,
        user_full_name=event.user_full_name,
        credential_label=event.credential_label,
        ip=event.ip,
        user_agent=event.user_agent,
        request_id=event.request_id,
        target_user_email=event.target_user_email,
        detail=event.detail,
        key_id=event.key_id or None,
        signature=event.signature or None,
        event_id=event_id,
        **ids,
    )


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def verified(name: str, data: bytes, keys: TrustedKeys) -> Event | Malformed:
    """A message on subject `name` → the event it proves, or why it proves none: malformed, on a subject that does
    not name its action, or not signed by a key trusted for the producer its subject names."""
    checked = verified_encoded(name, data, keys)
    return checked if isinstance(checked, Malformed) else checked[0]


def verified_encoded(name: str, data: bytes, keys: TrustedKeys) -> tuple[Event, bytes] | Malformed:
    """`verified`, with the bytes its signature was checked over (`canonical`): the audit chain hashes the same
    bytes, so its consumer encodes each event once."""
    decoded = decode(data)
    if isinstance(decoded, Malformed):
        return decoded
    producer = producer_of_subject(name)
    if producer is None or name != subject(producer, decoded.action):
        return Malformed(f"subject {name} does not name its action {decoded.action}")
    encoded = canonical(decoded, decoded.key_id)
    problem = keys.problem(decoded, decoded.key_id or "", decoded.signature or b"", producer, encoded)
    return (decoded, encoded) if problem is None else Malformed(problem)


def delivery_problem(msg: Msg, durable: str) -> str | None:
    """Why a message is not a JetStream delivery of the `AUDIT` stream to the durable consumer `durable` (None: it
    is one): something published straight to a consumer's inbox has no place in the stream."""
    try:
        metadata = msg.metadata
    except NatsError:
        return "not a JetStream delivery"
    if metadata.stream != STREAM or metadata.consumer != durable:
        return f"a delivery of {metadata.stream}/{metadata.consumer}, not {STREAM}/{durable}"
    return None


# What a call on a connection whose server went away raises (closed, reset, timed out).
NATS_GONE: tuple[type[BaseException], ...] = (NatsError, OSError, TimeoutError)


async def connect(nats_url: str) -> NATS:
    """A connection for a producer or the consumer, as the URL's user with its own inbox prefix
    (clientvault/nats_access.py). It neither creates nor looks up the stream (that user may not: the operator
    creates it, `stream_config`); a missing stream shows at the first publish or subscribe. It does not
    reconnect by itself: the caller's retry loop (clientvault/retrying.py) drops it on a failure and connects
    anew."""
    # Imported here: nats_access takes this stream's name from this module.
    from clientvault import nats_access

    return await nats_access.connect(nats_url, allow_reconnect=False, connect_timeout=2, error_cb=log_nats_error)


async def disconnect(nc: NATS | None) -> None:
    """Closes a connection that may be broken already, quietly."""
    if nc is not None and not nc.is_closed:
        with contextlib.suppress(*NATS_GONE):
            await nc.close()


class PullConsumer:
    """A durable pull consumer of the `AUDIT` stream, as a process's NATS user may have one (clientvault/nats_access.py
    names each one's durable and filter): it connects as the URL's user and binds to the consumer, or creates it
    with `config`, on first use; `reset` drops a connection that may be broken (the retry loop's,
    clientvault/retrying.py), and the next use connects anew. `name` prefixes its log events."""

    def __init__(self, nats_url: str, *, name: str, durable: str, subject: str, config: ConsumerConfig) -> None:
        self._nats_url = nats_url
        self._name = name
        self._durable = durable
        self._subject = subject
        self._config = config
        self._nc: NATS | None = None
        self._sub: Any = None

    async def subscription(self) -> Any:
        if self._nc is None or self._nc.is_closed or not self._nc.is_connected:
            await self.reset()
            self._nc = await connect(self._nats_url)
            try:
                self._sub = await self._nc.jetstream().pull_subscribe(
                    self._subject, durable=self._durable, stream=STREAM, config=self._config
                )
            except NotFoundError:  # no stream AUDIT: the operator creates it (this user may not); retried
                from clientvault.nats_access import BOOTSTRAP_HINT

                log.error(f"{self._name}.stream_missing", stream=STREAM, fix=BOOTSTRAP_HINT)
                raise
            log.info(f"{self._name}.consuming", stream=STREAM, durable=self._durable, subject=self._subject)
        return self._sub

    async def fetch(self, batch: int, wait_s: float) -> "list[Msg]":
        """Up to `batch` messages, waiting at most `wait_s` for the first ([] when none came)."""
        sub = await self.subscription()
        try:
            msgs: list[Msg] = await sub.fetch(batch, timeout=wait_s)
        except (NatsTimeoutError, TimeoutError):
            return []
        return msgs

    async def flush(self) -> None:
        """Sends what is buffered (acks) and waits for the server to have it."""
        if self._nc is not None:
            await self._nc.flush(timeout=5)

    async def reset(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        await disconnect(nc)


def stream_config(*, replicas: int, max_age_s: float, max_bytes: int | None) -> StreamConfig:
    """The stream as the operator creates it, and brings it back to (ops/jetstream.py), never a process (their
    NATS users may not). `max_age_s` must outlast any outage of the audit service: an event leaves the vault's
    outbox once JetStream has it, and the stream's only copy expires after that. When `max_bytes` is reached, new
    events are refused (they wait in the vault's outbox, whose relay retries) rather than unread ones dropped.
    `allow_atomic`: a producer's relay publishes a batch of events as one atomic batch (clientvault/outbox.py),
    which the server stores with one write and one fsync instead of one each."""
    return StreamConfig(
        name=STREAM,
        subjects=list(SUBJECTS),
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=replicas,
        max_age=max_age_s,
        max_bytes=-1 if max_bytes is None else max_bytes,
        discard=DiscardPolicy.NEW,
        allow_atomic=True,
    )
