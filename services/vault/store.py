"""Tables and queries of schema "vault". Returns rows; no rules, no proto, no crypto."""

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from psycopg import AsyncConnection as DriverConnection
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Row,
    Table,
    Text,
    Uuid,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault.db import driver_sql, fetch_one
from clientvault.db import metadata as schema_metadata
from clientvault.idempotency import idempotency_table
from clientvault.outbox import outbox_table

metadata = schema_metadata("vault")

# One row per KEK version ever used: a known value sealed with it, to tell a wrong key at startup.
kek_checks = Table(
    "kek_checks",
    metadata,
    Column("kek_version", Text, primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# A client's data keys, wrapped by the KEK; the newest generation encrypts new secrets.
client_keys = Table(
    "client_keys",
    metadata,
    Column("client_id", Uuid, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("kek_version", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("client_id", "generation"),
    Index(None, "kek_version"),
)

credentials = Table(
    "credentials",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("client_id", Uuid, nullable=False),
    Column("label", Text, nullable=False),
    Column("username", Text),
    Column("url", Text),
    Column("ciphertext", LargeBinary, nullable=False),  # AES-256-GCM with its tag
    Column("nonce", LargeBinary, nullable=False),
    Column("key_generation", Integer, nullable=False),  # the client's data key that seals it
    Column("created_by_user_id", Uuid, nullable=False),
    Column("updated_by_user_id", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_accessed_at", DateTime(timezone=True)),
    Column("secret_changed_at", DateTime(timezone=True), nullable=False),  # not moved by a label edit (0006)
    Column("secret_version", Integer, nullable=False),  # the current secret's number; older ones are versions
    Column("secret_changed_by_user_id", Uuid, nullable=False),
    Column("deleted_at", DateTime(timezone=True)),  # in the trash since (0008); purged CLIENTVAULT_TRASH_DAYS later
    Column("deleted_by_user_id", Uuid),
    # The ETag (0013): +1 on every change of label, username, url, secret or trash state; a reveal leaves it.
    Column("revision", BigInteger, nullable=False, server_default="1"),
    Column("has_totp", Boolean, nullable=False, server_default=text("false")),  # a sealed TOTP seed (0014)
    Index(None, "client_id", "key_generation"),
    Index("ix_credentials_deleted", "deleted_at", postgresql_where=text("deleted_at IS NOT NULL")),
    # A secret never outlives the key that seals it (migration 0003).
    ForeignKeyConstraint(["client_id", "key_generation"], [client_keys.c.client_id, client_keys.c.generation]),
)

# The secrets a credential had before its current one, sealed as they were (migration 0008): the newest
# CLIENTVAULT_SECRET_VERSIONS of them. Sealed with the credential's id as associated data, like the current one.
credential_versions = Table(
    "credential_versions",
    metadata,
    Column("credential_id", Uuid, nullable=False),
    Column("version", Integer, nullable=False),
    Column("client_id", Uuid, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("key_generation", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),  # when it became the current secret
    Column("created_by_user_id", Uuid, nullable=False),  # who set it
    PrimaryKeyConstraint("credential_id", "version"),
    Index(None, "client_id", "key_generation"),
    ForeignKeyConstraint(["credential_id"], [credentials.c.id], ondelete="CASCADE"),
    ForeignKeyConstraint(["client_id", "key_generation"], [client_keys.c.client_id, client_keys.c.generation]),
)

# A credential's other sealed fields (migration 0014): its TOTP seed ("totp") and its notes ("notes"), each sealed
# under its own data key generation with associated data naming the field (crypto.py), so that key rotation and
# re-encryption treat them as they treat secrets (SEALED) and a field's ciphertext never opens as another's.
credential_fields = Table(
    "credential_fields",
    metadata,
    Column("credential_id", Uuid, nullable=False),
    Column("field", Text, nullable=False),
    Column("client_id", Uuid, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("key_generation", Integer, nullable=False),
    PrimaryKeyConstraint("credential_id", "field"),
    CheckConstraint("field IN ('totp', 'notes')", name="field"),
    Index(None, "client_id", "key_generation"),
    ForeignKeyConstraint(["credential_id"], [credentials.c.id], ondelete="CASCADE"),
    ForeignKeyConstraint(["client_id", "key_generation"], [client_keys.c.client_id, client_keys.c.generation]),
)

# Who revealed which credential's current secret: the last time and how often (migration 0010), upserted by the
# reveal's own statement. Old versions' reveals are not counted: they expose a secret that is no longer current.
reveals = Table(
    "reveals",
    metadata,
    Column("user_id", Uuid, nullable=False),
    Column("credential_id", Uuid, nullable=False),
    Column("client_id", Uuid, nullable=False),
    Column("last_revealed_at", DateTime(timezone=True), nullable=False),
    Column("reveal_count", Integer, nullable=False),
    Column("user_full_name", Text, nullable=False, server_default=""),  # at the last reveal (migration 0012)
    PrimaryKeyConstraint("user_id", "credential_id"),
    Index("ix_reveals_user_id_last_revealed_at", "user_id", "last_revealed_at"),
    Index(None, "credential_id"),  # the foreign key's cascade
    ForeignKeyConstraint(["credential_id"], [credentials.c.id], ondelete="CASCADE"),
)

# Clients crypto-shredded (migration 0011): their keys and secrets are gone; this row makes them answer 410.
shredded_clients = Table(
    "shredded_clients",
    metadata,
    Column("client_id", Uuid, primary_key=True),
    Column("shredded_at", DateTime(timezone=True), nullable=False),
    Column("shredded_by_user_id", Uuid, nullable=False),
    Column("credentials", Integer, nullable=False),
    Column("versions", Integer, nullable=False),
    Column("data_keys", Integer, nullable=False),
)

# Audit events waiting for (or done with) publication to JetStream; written in the operation's transaction
# (the kit's shape: clientvault/outbox.py).
outbox = outbox_table(metadata)

# Rotation jobs; an unfinished one is resumed by the next `clientvault vault rotate-key`.
rotations = Table(
    "rotations",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("kek_version", Text, nullable=False),
    Column("reencrypt", Boolean, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

METADATA_COLUMNS = (
    credentials.c.id,
    credentials.c.client_id,
    credentials.c.label,
    credentials.c.username,
    credentials.c.url,
    credentials.c.created_at,
    credentials.c.updated_at,
    credentials.c.last_accessed_at,
    credentials.c.secret_changed_at,
    credentials.c.deleted_at,
    credentials.c.revision,
    credentials.c.has_totp,
)
LIVE = credentials.c.deleted_at.is_(None)
TRASHED = credentials.c.deleted_at.is_not(None)

# Reveal counters per key ("user:<id>", "ip:<address>") and fixed window (limits.py). UNLOGGED: no WAL per
# reveal, and a database crash only empties the counters, which restarts every window.
reveal_counts = Table(
    "reveal_counts",
    metadata,
    Column("key", Text, nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("hits", Integer, nullable=False),
    PrimaryKeyConstraint("key", "window_start"),
    prefixes=["UNLOGGED"],
)

# The whole reveal in one statement (one round trip, one implicit transaction): count the attempt against
# the caller's reveal limits (limits.py; keys user before IP, so two reveals never wait on each other),
# and only if none is exceeded stamp the credential, insert its audit event and return the sealed secret
# with its wrapped data key; if one is exceeded, insert a `reveal_throttled` event instead (naming the limits
# exceeded, and the credential's label if it exists). One row always comes back: `over` > 0 means refused, a
# NULL id not found. `version` NULL reveals the current secret (and records who saw it in `reveals`) with the
# credential's sealed notes, if any (`notes_*`); a number reveals that old version (not found if it is gone), and the
# event's `detail` says which (`{"version":3}`).
REVEAL = text(
    """
WITH counted AS (
    INSERT INTO vault.reveal_counts AS c (key, window_start, hits)
    SELECT l.key, :window_start, 1
    FROM unnest(CAST(:limit_keys AS text[])) WITH ORDINALITY AS l(key, n) ORDER BY l.n
    ON CONFLICT (key, window_start) DO UPDATE SET hits = c.hits + 1
    RETURNING c.key, c.hits
), over AS (
    SELECT count(*) AS n,
           jsonb_build_object('limits', coalesce(jsonb_agg(split_part(counted.key, ':', 1)), '[]'))::text AS detail
    FROM counted JOIN unnest(CAST(:limit_keys AS text[]), CAST(:limit_maxes AS int[])) AS l(key, max)
      ON l.key = counted.key
    WHERE counted.hits > l.max
), revealed AS (
    UPDATE vault.credentials SET last_accessed_at = :now
    WHERE id = :credential_id AND client_id = :client_id AND deleted_at IS NULL AND (SELECT n FROM over) = 0
      AND (CAST(:version AS int) IS NULL OR EXISTS (
          SELECT 1 FROM vault.credential_versions v WHERE v.credential_id = :credential_id AND v.version = :version))
    RETURNING id, client_id, label, username, url, ciphertext, nonce, key_generation
), sealed AS (
    SELECT r.id, r.client_id, r.label, r.username, r.url, coalesce(v.ciphertext, r.ciphertext) AS ciphertext,
           coalesce(v.nonce, r.nonce) AS nonce, coalesce(v.key_generation, r.key_generation) AS key_generation
    FROM revealed r LEFT JOIN vault.credential_versions v ON v.credential_id = r.id AND v.version = :version
), audited AS (
    INSERT INTO vault.outbox (event_id, action, occurred_at, user_id, user_email, user_full_name,
                              credential_id, credential_label, client_id, ip, user_agent, request_id, detail,
                              traceparent)
    SELECT :event_id, :action, :now, :user_id, :user_email, :user_full_name,
           id, label, client_id, :ip, :user_agent, :request_id, :detail, :traceparent
    FROM revealed
    UNION ALL
    SELECT :event_id, :throttled_action, :now, :user_id, :user_email, :user_full_name, :credential_id,
           coalesce((SELECT label FROM vault.credentials WHERE id = :credential_id AND client_id = :client_id), ''),
           :client_id, :ip, :user_agent, :request_id, over.detail, :traceparent
    FROM over WHERE over.n > 0
), exposed AS (
    INSERT INTO vault.reveals AS e (user_id, credential_id, client_id, last_revealed_at, reveal_count, user_full_name)
    SELECT :user_id, id, client_id, :now, 1, :user_full_name FROM revealed WHERE CAST(:version AS int) IS NULL
    ON CONFLICT (user_id, credential_id)
    DO UPDATE SET last_revealed_at = excluded.last_revealed_at, reveal_count = e.reveal_count + 1,
                  user_full_name = excluded.user_full_name
)
SELECT (SELECT n FROM over) AS over, r.id, r.label, r.username, r.url, r.ciphertext, r.nonce,
       r.key_generation, k.wrapped_key, k.kek_version,
       n.ciphertext AS notes_ciphertext, n.nonce AS notes_nonce, n.key_generation AS notes_generation,
       nk.wrapped_key AS notes_wrapped_key, nk.kek_version AS notes_kek_version
FROM (SELECT 1) AS one
LEFT JOIN (sealed r JOIN vault.client_keys k ON k.client_id = r.client_id AND k.generation = r.key_generation)
  ON true
LEFT JOIN (vault.credential_fields n
           JOIN vault.client_keys nk ON nk.client_id = n.client_id AND nk.generation = n.key_generation)
  ON n.credential_id = r.id AND n.field = 'notes' AND CAST(:version AS int) IS NULL
"""
).bindparams(
    bindparam("version", type_=Integer),
    bindparam("credential_id", type_=Uuid),
    bindparam("client_id", type_=Uuid),
    bindparam("event_id", type_=Uuid),
    bindparam("user_id", type_=Uuid),
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("window_start", type_=DateTime(timezone=True)),
    bindparam("traceparent", type_=Text),
)

# A reveal refused by policy (the caller's role), recorded by the vault itself in one statement: the event names
# the credential asked for, with its label when it exists (the ids are NULL when the request's were malformed).
DENIED = text(
    """
INSERT INTO vault.outbox (event_id, action, occurred_at, user_id, user_email, user_full_name,
                          credential_id, credential_label, client_id, ip, user_agent, request_id, detail, traceparent)
SELECT :event_id, :action, :now, :user_id, :user_email, :user_full_name, :credential_id,
       coalesce((SELECT label FROM vault.credentials WHERE id = :credential_id AND client_id = :client_id), ''),
       :client_id, :ip, :user_agent, :request_id, :detail, :traceparent
"""
).bindparams(
    bindparam("credential_id", type_=Uuid),
    bindparam("client_id", type_=Uuid),
    bindparam("event_id", type_=Uuid),
    bindparam("user_id", type_=Uuid),
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("traceparent", type_=Text),
)


# A create's idempotency key per user, with its first reply (clientvault/idempotency.py; migration 0013).
idempotency_keys = idempotency_table(metadata)


async def insert_denied(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(DENIED, values)


REVEAL_SQL = driver_sql(REVEAL)  # run off the engine, on a hot connection (clientvault/db.py `Database.hot`)


async def reveal(conn: DriverConnection[Any], **values: Any) -> Any:
    """The reveal statement's one row (REVEAL): every reveal runs it, so it skips SQLAlchemy."""
    return await fetch_one(conn, REVEAL_SQL, values)


async def list_credentials(conn: AsyncConnection, client_id: UUID, *, trashed: bool = False) -> list[Row[Any]]:
    """The client's live credentials, or with `trashed` those in its trash."""
    query = (
        select(*METADATA_COLUMNS)
        .where(credentials.c.client_id == client_id, TRASHED if trashed else LIVE)
        .order_by(credentials.c.id)
    )
    return cast(list[Row[Any]], list((await conn.execute(query)).all()))


async def get_credential(
    conn: AsyncConnection, client_id: UUID, credential_id: UUID, *, lock: bool = True
) -> Row[Any] | None:
    """The live credential with its sealed secret, locked for an update unless `lock` is false."""
    query = select(credentials).where(credentials.c.id == credential_id, credentials.c.client_id == client_id, LIVE)
    return (await conn.execute(query.with_for_update() if lock else query)).one_or_none()


async def insert_credential(conn: AsyncConnection, **values: object) -> Row[Any]:
    row: Row[Any] = (await conn.execute(insert(credentials).values(**values).returning(*METADATA_COLUMNS))).one()
    return row


async def get_metadata(conn: AsyncConnection, client_id: UUID, credential_id: UUID) -> Row[Any] | None:
    """A live credential's metadata, under its own client only."""
    query = select(*METADATA_COLUMNS).where(
        credentials.c.id == credential_id, credentials.c.client_id == client_id, LIVE
    )
    return cast(Row[Any] | None, (await conn.execute(query)).one_or_none())


async def update_credential(
    conn: AsyncConnection, credential_id: UUID, *, if_revision: Collection[int] = (), **values: object
) -> Row[Any] | None:
    """Changes the credential and moves its revision on; with `if_revision`, only while its revision is one of
    those (checked and set in this one statement): None when it is not."""
    condition = [credentials.c.revision.in_(list(if_revision))] if if_revision else []
    query = update(credentials).where(credentials.c.id == credential_id, *condition)
    query = query.values(revision=credentials.c.revision + 1, **values).returning(*METADATA_COLUMNS)
    row: Row[Any] | None = (await conn.execute(query)).one_or_none()
    return row


async def insert_credentials(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Several new credentials in one statement (an import; rows with the same keys)."""
    if rows:
        await conn.execute(insert(credentials), list(rows))


async def put_fields(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Writes sealed fields (credential_fields rows), replacing a credential's field that is there."""
    if not rows:
        return
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    query = pg_insert(credential_fields)
    replaced = {name: query.excluded[name] for name in ("client_id", "ciphertext", "nonce", "key_generation")}
    await conn.execute(
        query.on_conflict_do_update(index_elements=["credential_id", "field"], set_=replaced), list(rows)
    )


async def delete_fields(conn: AsyncConnection, credential_id: UUID, fields: Collection[str]) -> None:
    query = delete(credential_fields).where(
        credential_fields.c.credential_id == credential_id, credential_fields.c.field.in_(list(fields))
    )
    await conn.execute(query)


async def get_field(conn: AsyncConnection, client_id: UUID, credential_id: UUID, field: str) -> Row[Any] | None:
    """A live credential's sealed field with its wrapped data key: id, label, ciphertext, nonce, key_generation,
    wrapped_key, kek_version; None when the credential is not there (or in the trash) or has no such field."""
    query = (
        select(
            credentials.c.id,
            credentials.c.label,
            credential_fields.c.ciphertext,
            credential_fields.c.nonce,
            credential_fields.c.key_generation,
            client_keys.c.wrapped_key,
            client_keys.c.kek_version,
        )
        .join(credential_fields, credential_fields.c.credential_id == credentials.c.id)
        .join(
            client_keys,
            (client_keys.c.client_id == credential_fields.c.client_id)
            & (client_keys.c.generation == credential_fields.c.key_generation),
        )
        .where(
            credentials.c.id == credential_id,
            credentials.c.client_id == client_id,
            LIVE,
            credential_fields.c.field == field,
        )
    )
    return cast(Row[Any] | None, (await conn.execute(query)).one_or_none())


async def sealed_of_client(conn: AsyncConnection, client_id: UUID) -> tuple[list[Row[Any]], list[Row[Any]]]:
    """Everything an export decrypts, read in `conn`'s transaction: the client's live credentials (with their
    sealed secrets) and their sealed fields (credential_id, field, ciphertext, nonce, key_generation)."""
    live = (
        select(credentials)
        .where(credentials.c.client_id == client_id, LIVE)
        .order_by(credentials.c.created_at, credentials.c.id)
    )
    rows = list((await conn.execute(live)).all())
    fields = (
        select(credential_fields)
        .join(credentials, credentials.c.id == credential_fields.c.credential_id)
        .where(credential_fields.c.client_id == client_id, LIVE)
    )
    return rows, list((await conn.execute(fields)).all())


async def trash_credential(
    conn: AsyncConnection, client_id: UUID, credential_id: UUID, now: datetime, user_id: UUID
) -> Row[Any] | None:
    """Moves a live credential to the trash; None if there is none."""
    query = (
        update(credentials)
        .where(credentials.c.id == credential_id, credentials.c.client_id == client_id, LIVE)
        .values(deleted_at=now, deleted_by_user_id=user_id, revision=credentials.c.revision + 1)
        .returning(credentials.c.id, credentials.c.label)
    )
    return (await conn.execute(query)).one_or_none()


async def untrash_credential(conn: AsyncConnection, client_id: UUID, credential_id: UUID) -> Row[Any] | None:
    """Brings a credential back from the trash; None if it is not there."""
    query = (
        update(credentials)
        .where(credentials.c.id == credential_id, credentials.c.client_id == client_id, TRASHED)
        .values(deleted_at=None, deleted_by_user_id=None, revision=credentials.c.revision + 1)
        .returning(*METADATA_COLUMNS)
    )
    return (await conn.execute(query)).one_or_none()


async def purge_trashed(conn: AsyncConnection, before: datetime, limit: int) -> list[Row[Any]]:
    """Deletes up to `limit` credentials in the trash since before `before`, with their old versions (the
    foreign key cascades); rows another purger holds are skipped. The deleted (id, label, client_id)."""
    doomed = (
        select(credentials.c.id)
        .where(TRASHED, credentials.c.deleted_at < before)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    query = (
        delete(credentials)
        .where(credentials.c.id.in_(doomed))
        .returning(credentials.c.id, credentials.c.label, credentials.c.client_id)
    )
    return cast(list[Row[Any]], list((await conn.execute(query)).all()))


KEPT_COLUMNS = (
    "credential_id",
    "version",
    "client_id",
    "ciphertext",
    "nonce",
    "key_generation",
    "created_at",
    "created_by_user_id",
)


async def keep_version(conn: AsyncConnection, credential_id: UUID, keep: int) -> None:
    """Keeps the credential's current secret as an old version (before it is replaced), then deletes all but the
    newest `keep` old versions."""
    current = select(
        credentials.c.id,
        credentials.c.secret_version,
        credentials.c.client_id,
        credentials.c.ciphertext,
        credentials.c.nonce,
        credentials.c.key_generation,
        credentials.c.secret_changed_at,
        credentials.c.secret_changed_by_user_id,
    ).where(credentials.c.id == credential_id)
    await conn.execute(insert(credential_versions).from_select(KEPT_COLUMNS, current))
    newest = (
        select(credential_versions.c.version)
        .where(credential_versions.c.credential_id == credential_id)
        .order_by(credential_versions.c.version.desc())
        .limit(keep)
    )
    await conn.execute(
        delete(credential_versions).where(
            credential_versions.c.credential_id == credential_id, credential_versions.c.version.not_in(newest)
        )
    )


async def list_versions(conn: AsyncConnection, credential_id: UUID) -> list[Row[Any]]:
    query = (
        select(
            credential_versions.c.version, credential_versions.c.created_at, credential_versions.c.created_by_user_id
        )
        .where(credential_versions.c.credential_id == credential_id)
        .order_by(credential_versions.c.version.desc())
    )
    return cast(list[Row[Any]], list((await conn.execute(query)).all()))


async def get_version(conn: AsyncConnection, credential_id: UUID, version: int) -> Row[Any] | None:
    query = select(credential_versions).where(
        credential_versions.c.credential_id == credential_id, credential_versions.c.version == version
    )
    return (await conn.execute(query)).one_or_none()


# --- crypto-shred -----------------------------------------------------------------------------------


async def is_shredded(conn: AsyncConnection, client_id: UUID) -> bool:
    query = select(shredded_clients.c.client_id).where(shredded_clients.c.client_id == client_id)
    return (await conn.execute(query)).one_or_none() is not None


async def shred(
    conn: AsyncConnection, client_id: UUID, now: datetime, user_id: UUID
) -> tuple[Row[Any], list[int]] | None:
    """Deletes every data key and sealed secret of the client (old versions, who revealed them) and records the
    shred: the recorded row (with the counts) and the deleted data keys' generations, or None if it was shredded
    before. The client's keys are locked first, so a writer that holds one (sealing a new secret) is waited for
    and its secret deleted too."""
    locked = select(client_keys.c.generation).where(client_keys.c.client_id == client_id).with_for_update()
    generations = sorted((await conn.execute(locked)).scalars())
    credential_ids = select(credentials.c.id).where(credentials.c.client_id == client_id)
    await conn.execute(delete(reveals).where(reveals.c.credential_id.in_(credential_ids)))
    versions = await conn.execute(delete(credential_versions).where(credential_versions.c.client_id == client_id))
    await conn.execute(delete(credential_fields).where(credential_fields.c.client_id == client_id))
    deleted = await conn.execute(delete(credentials).where(credentials.c.client_id == client_id))
    await conn.execute(delete(client_keys).where(client_keys.c.client_id == client_id))
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    recorded = (
        pg_insert(shredded_clients)
        .values(
            client_id=client_id,
            shredded_at=now,
            shredded_by_user_id=user_id,
            credentials=deleted.rowcount,
            versions=versions.rowcount,
            data_keys=len(generations),
        )
        .on_conflict_do_nothing()
        .returning(shredded_clients)
    )
    row = (await conn.execute(recorded)).one_or_none()
    return None if row is None else (row, generations)


# --- the exposure report ------------------------------------------------------------------------------


def _exposed(user_id: UUID, since: datetime | None) -> Any:
    """What a user revealed (since `since`) whose secret has not changed since their last reveal. Credentials in
    the trash count too: deleting a vault entry changes no password."""
    where = [reveals.c.user_id == user_id, credentials.c.secret_changed_at <= reveals.c.last_revealed_at]
    if since is not None:
        where.append(reveals.c.last_revealed_at >= since)
    return reveals.join(credentials, credentials.c.id == reveals.c.credential_id), where


EXPOSED_COLUMNS = (
    reveals.c.credential_id,
    reveals.c.client_id,
    credentials.c.label,
    reveals.c.last_revealed_at,
    reveals.c.reveal_count,
)


async def rotation_exposure(
    conn: AsyncConnection, user_id: UUID, *, client_id: UUID | None = None, since: datetime | None = None
) -> list[Row[Any]]:
    """Everything the user revealed that nobody changed since (the exposure report, all of it) with the user's name
    at each reveal: what becomes rotation tasks (rotation_work.py) when they leave (ever, every client) or when
    their break-glass ends (in its client, since it started)."""
    joined, where = _exposed(user_id, since)
    if client_id is not None:
        where.append(reveals.c.client_id == client_id)
    query = (
        select(*EXPOSED_COLUMNS, reveals.c.user_full_name)
        .select_from(joined)
        .where(*where)
        .order_by(reveals.c.last_revealed_at.desc(), reveals.c.credential_id)
    )
    return cast(list[Row[Any]], list((await conn.execute(query)).all()))


async def exposure(
    conn: AsyncConnection, user_id: UUID, since: datetime | None, limit: int, offset: int
) -> tuple[list[Row[Any]], int]:
    """A page of the exposure report, most recently revealed first, and the total."""
    joined, where = _exposed(user_id, since)
    query = (
        select(*EXPOSED_COLUMNS, credentials.c.secret_changed_at)
        .select_from(joined)
        .where(*where)
        .order_by(reveals.c.last_revealed_at.desc(), reveals.c.credential_id)
        .limit(limit)
        .offset(offset)
    )
    rows = cast(list[Row[Any]], list((await conn.execute(query)).all()))
    if offset == 0 and len(rows) < limit:
        return rows, len(rows)  # the first page holds them all
    total = (await conn.execute(select(func.count()).select_from(joined).where(*where))).scalar_one()
    return rows, int(total)


# --- data keys ----------------------------------------------------------------------------------------


async def newest_key(conn: AsyncConnection, client_id: UUID, *, lock: bool = False) -> Row[Any] | None:
    """The client's newest data key. `lock` holds it (FOR KEY SHARE) until the transaction ends, so a rotation
    cannot delete it while a secret sealed with it is being written."""
    query = (
        select(client_keys)
        .where(client_keys.c.client_id == client_id)
        .order_by(client_keys.c.generation.desc())
        .limit(1)
    )
    return (await conn.execute(query.with_for_update(key_share=True) if lock else query)).one_or_none()


async def get_key(conn: AsyncConnection, client_id: UUID, generation: int) -> Row[Any] | None:
    query = select(client_keys).where(client_keys.c.client_id == client_id, client_keys.c.generation == generation)
    return (await conn.execute(query)).one_or_none()


async def insert_key(conn: AsyncConnection, **values: object) -> bool:
    """False when another writer created that generation first (its key is the one to use, not this one).

    Told by RETURNING, not `rowcount`: psycopg reports -1 for an INSERT whether it inserted or not."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    query = pg_insert(client_keys).values(**values).on_conflict_do_nothing().returning(client_keys.c.generation)
    return (await conn.execute(query)).one_or_none() is not None


async def keys_not_on(conn: AsyncConnection, kek_version: str, limit: int) -> list[Row[Any]]:
    """Data keys wrapped by another KEK version than `kek_version`, locked, skipping ones locked elsewhere."""
    query = (
        select(client_keys)
        .where(client_keys.c.kek_version != kek_version)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(query)).all())


async def set_wrapped_keys(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    query = (
        update(client_keys)
        .where(client_keys.c.client_id == bindparam("b_client_id"), client_keys.c.generation == bindparam("b_gen"))
        .values(wrapped_key=bindparam("b_wrapped"), kek_version=bindparam("b_version"))
    )
    await conn.execute(query, list(rows))


async def clients_with_keys_before(conn: AsyncConnection, before: datetime, limit: int) -> list[UUID]:
    """Clients whose newest data key is older than `before` (they need a new one for a re-encryption)."""
    query = (
        select(client_keys.c.client_id)
        .group_by(client_keys.c.client_id)
        .having(func.max(client_keys.c.created_at) < before)
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())


NEWEST_GENERATION = (
    select(client_keys.c.client_id, func.max(client_keys.c.generation).label("generation"))
    .group_by(client_keys.c.client_id)
    .subquery("newest")
)


# Every table of sealed secrets: the current ones and the old versions. Key rotation, re-encryption and
# `vault status` treat them alike.
SEALED = (credentials, credential_versions, credential_fields)


def sealed_for(table: Table) -> Any:
    """The column naming the credential a row's secret is sealed for (the associated data of its seal)."""
    return table.c.id if table is credentials else table.c.credential_id


def sealed_field(row: Row[Any]) -> str | None:
    """The field a sealed row holds ("totp", "notes"), or None for a secret (current or old version)."""
    return cast(str | None, row._mapping.get("field"))


def row_key(table: Table, row: Row[Any]) -> tuple[Any, ...]:
    return tuple(getattr(row, column.name) for column in table.primary_key.columns)


async def sealed_on_old_keys(
    conn: AsyncConnection, table: Table, limit: int, skip: Collection[tuple[Any, ...]] = ()
) -> list[Row[Any]]:
    """Secrets of `table` sealed under a data key older than their client's newest (but those whose row key is
    in `skip`), locked, skipping rows locked elsewhere; each with `sealed_for` and `newest_generation`."""
    query = (
        select(table, sealed_for(table).label("sealed_for"), NEWEST_GENERATION.c.generation.label("newest_generation"))
        .join(NEWEST_GENERATION, NEWEST_GENERATION.c.client_id == table.c.client_id)
        .where(table.c.key_generation < NEWEST_GENERATION.c.generation)
        .limit(limit)
        .with_for_update(of=table, skip_locked=True)
    )
    if skip:
        query = query.where(tuple_(*table.primary_key.columns).not_in(list(skip)))
    return list((await conn.execute(query)).all())


async def reseal(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Sets each row's ciphertext, nonce and key generation (`b_ciphertext`, `b_nonce`, `b_gen`), the row named
    by its key (`b_key0`, `b_key1`, ... in primary key order)."""
    keys = [column == bindparam(f"b_key{n}") for n, column in enumerate(table.primary_key.columns)]
    query = (
        update(table)
        .where(*keys)
        .values(ciphertext=bindparam("b_ciphertext"), nonce=bindparam("b_nonce"), key_generation=bindparam("b_gen"))
    )
    await conn.execute(query, list(rows))


async def delete_unused_old_keys(conn: AsyncConnection) -> int:
    """Deletes data keys that are not their client's newest and seal no secret (current or old version) any more.

    A key that a writer holds (`newest_key(lock=True)`, or the foreign key check of a credential it inserts) is
    skipped, not waited for: that writer may be about to commit a secret sealed with it."""
    result = await conn.execute(
        text(
            """
WITH unused AS (
  SELECT k.client_id, k.generation FROM vault.client_keys k
  WHERE k.generation < (SELECT max(n.generation) FROM vault.client_keys n WHERE n.client_id = k.client_id)
    AND NOT EXISTS (SELECT 1 FROM vault.credentials c
                    WHERE c.client_id = k.client_id AND c.key_generation = k.generation)
    AND NOT EXISTS (SELECT 1 FROM vault.credential_versions v
                    WHERE v.client_id = k.client_id AND v.key_generation = k.generation)
    AND NOT EXISTS (SELECT 1 FROM vault.credential_fields f
                    WHERE f.client_id = k.client_id AND f.key_generation = k.generation)
  FOR UPDATE SKIP LOCKED
)
DELETE FROM vault.client_keys k USING unused u WHERE k.client_id = u.client_id AND k.generation = u.generation
"""
        )
    )
    return int(result.rowcount)


async def key_counts(conn: AsyncConnection) -> list[Row[Any]]:
    """(kek_version, data keys, secrets, old versions) per KEK version."""
    query = text(
        """
SELECT k.kek_version, count(*) AS keys, coalesce(sum(c.n), 0) AS secrets, coalesce(sum(v.n), 0) AS versions
FROM vault.client_keys k
LEFT JOIN (SELECT client_id, key_generation, count(*) AS n FROM vault.credentials GROUP BY 1, 2) c
  ON c.client_id = k.client_id AND c.key_generation = k.generation
LEFT JOIN (SELECT client_id, key_generation, count(*) AS n FROM vault.credential_versions GROUP BY 1, 2) v
  ON v.client_id = k.client_id AND v.key_generation = k.generation
GROUP BY k.kek_version ORDER BY k.kek_version
"""
    )
    return list((await conn.execute(query)).all())


async def count_on_old_keys(conn: AsyncConnection, table: Table = credentials) -> int:
    query = (
        select(func.count())
        .select_from(table)
        .join(NEWEST_GENERATION, NEWEST_GENERATION.c.client_id == table.c.client_id)
        .where(table.c.key_generation < NEWEST_GENERATION.c.generation)
    )
    return int((await conn.execute(query)).scalar_one())


async def count_without_key(conn: AsyncConnection) -> int:
    """Credentials whose data key does not exist (none can be written since the foreign key of migration 0003)."""
    missing = (
        ~select(client_keys.c.generation)
        .where(
            client_keys.c.client_id == credentials.c.client_id, client_keys.c.generation == credentials.c.key_generation
        )
        .exists()
    )
    return int((await conn.execute(select(func.count()).select_from(credentials).where(missing))).scalar_one())


async def count_keys_not_on(conn: AsyncConnection, kek_version: str) -> int:
    query = select(func.count()).select_from(client_keys).where(client_keys.c.kek_version != kek_version)
    return int((await conn.execute(query)).scalar_one())


async def kek_check_rows(conn: AsyncConnection) -> list[Row[Any]]:
    return list((await conn.execute(select(kek_checks))).all())


async def insert_kek_check(conn: AsyncConnection, kek_version: str, sealed: bytes, now: datetime) -> None:
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    await conn.execute(
        pg_insert(kek_checks).values(kek_version=kek_version, sealed=sealed, created_at=now).on_conflict_do_nothing()
    )


async def keys_on_version(conn: AsyncConnection, kek_version: str) -> int:
    query = select(func.count()).select_from(client_keys).where(client_keys.c.kek_version == kek_version)
    return int((await conn.execute(query)).scalar_one())


async def purge_reveal_counts(conn: AsyncConnection, before: datetime) -> None:
    await conn.execute(delete(reveal_counts).where(reveal_counts.c.window_start < before))
