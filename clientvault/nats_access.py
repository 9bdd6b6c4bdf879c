"""What each process may do on NATS: one allow-list per process user, the one table that `clientvault up`
(its generated nats.conf), deploy/ (Compose's nats.conf and the Kubernetes users file, checked against it) and
the tests read. Anything a list does not name is refused by nats-server.

Each process connects as its own user (`connect` below) and gets its replies (JetStream API answers, pull
deliveries, KV watch deliveries) on its own inbox prefix `_INBOX_<user>`, which only it may subscribe to: no
process can read another's deliveries or learn the audit consumer's reply inbox. What the table grants:

- every process watches the revocation bucket (clientvault/revocation.py): the bucket's stream info, a new
  ordered consumer on it created by the nameless request (the server names it; a request naming an existing
  consumer is refused, so no one can take over another's watcher), that consumer's info, and the answers to
  its flow-control requests; never delete, update, pause or list a consumer;
- auth also puts revocations (`$KV.<bucket>.>`) and publishes its audit events (`audit.auth.>`);
- the clients service also puts changes of per-client access (`$KV.<bucket>.access.>`), nothing else there, and
  publishes its audit events (`audit.clients.>`);
- the vault publishes its audit events (`audit.vault.>`), nothing else on the `AUDIT` stream, and reads the
  audit consumer's info (its lag, for the vault's metrics: services/vault/backlog.py);
- the audit service alone creates (if missing), inspects, pulls from and acknowledges its durable consumer;
- the vault alone does the same with its own durable consumers `vault-leavers`, created only with the filter
  `audit.auth.user_updated` (a user disabled becomes rotation tasks: services/vault/leavers.py), and
  `vault-break-glass`, created only with the filter `audit.clients.access_grant_ended` (a break-glass ended becomes
  rotation tasks: services/vault/break_glass.py), so it reads no other event;
- nobody creates, updates, deletes, purges or sources a stream: the operator user does that, once, before the
  processes start (ops/jetstream.py: `clientvault up` and `clientvault migrate`).
The operator user (the CLI, the migration step) may do anything.
"""

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NATS

from clientvault import events

OPERATOR = "operator"
AUDIT_STREAM = events.STREAM
AUDIT_DURABLE = "audit"  # the audit service's durable pull consumer on AUDIT_STREAM
LEAVERS_DURABLE = "vault-leavers"  # the vault's, of auth's user_updated events only
LEAVERS_SUBJECT = events.subject("auth", events.AuditAction.USER_UPDATED)
BREAK_GLASS_DURABLE = "vault-break-glass"  # the vault's, of the clients service's access_grant_ended events only
BREAK_GLASS_SUBJECT = events.subject("clients", events.AuditAction.ACCESS_GRANT_ENDED)
BUCKET = "CLIENTVAULT_REVOCATIONS"  # the revocation bucket (clientvault/revocation.py)
KV_STREAM = f"KV_{BUCKET}"  # the stream behind it
# What a process logs when the stream or bucket it binds to is missing (it may not create it).
BOOTSTRAP_HINT = "the operator creates it: `clientvault migrate` with the operator's NATS_URL, or `clientvault up`"


@dataclass(frozen=True, slots=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def inbox_prefix(user: str) -> str:
    return f"_INBOX_{user}"


def _durable(durable: str, subject: str) -> tuple[str, ...]:
    """What a process needs to create (with exactly this filter), inspect, pull from and acknowledge its own durable
    consumer of the AUDIT stream."""
    return (
        f"$JS.API.CONSUMER.INFO.{AUDIT_STREAM}.{durable}",
        f"$JS.API.CONSUMER.CREATE.{AUDIT_STREAM}.{durable}.{subject}",
        f"$JS.API.CONSUMER.MSG.NEXT.{AUDIT_STREAM}.{durable}",
        f"$JS.ACK.{AUDIT_STREAM}.{durable}.>",
    )


def _allowed(user: str, *publish: str) -> Permissions:
    watch_revocations = (
        f"$JS.API.STREAM.INFO.{KV_STREAM}",
        f"$JS.API.CONSUMER.CREATE.{KV_STREAM}",
        f"$JS.API.CONSUMER.INFO.{KV_STREAM}.*",
        f"$JS.FC.{KV_STREAM}.>",
    )
    return Permissions(publish=(*watch_revocations, *publish), subscribe=(f"{inbox_prefix(user)}.>",))


PERMISSIONS: dict[str, Permissions] = {
    "gateway": _allowed("gateway"),
    "auth": _allowed("auth", f"$KV.{BUCKET}.>", events.subject("auth", ">")),
    "clients": _allowed("clients", f"$KV.{BUCKET}.access.>", events.subject("clients", ">")),
    "vault": _allowed(
        "vault",
        events.subject("vault", ">"),
        f"$JS.API.CONSUMER.INFO.{AUDIT_STREAM}.{AUDIT_DURABLE}",
        *_durable(LEAVERS_DURABLE, LEAVERS_SUBJECT),
        *_durable(BREAK_GLASS_DURABLE, BREAK_GLASS_SUBJECT),
    ),
    "audit": _allowed("audit", *_durable(AUDIT_DURABLE, ">")),
}


CLIENT_NAME = "clientvault"  # how a process's connection names itself (in nats-server's log lines)


async def connect(url: str, **options: Any) -> NATS:
    """nats.connect with the inbox prefix that the URL's user may subscribe to (`_INBOX` without a user)."""
    user = urlsplit(url).username
    prefix = inbox_prefix(user) if user else "_INBOX"
    return await nats.connect(url, inbox_prefix=prefix, name=CLIENT_NAME, **options)
