"""The key lifecycle: the startup key check, `vault status` and `vault rotate-key`.

Rotation runs online, in batches that each commit, so reveals go on and a crash loses at most one batch:
1. a new KEK version becomes active (env keyring file: a new key; transit: the Transit key rotates), and a
   row in `vault.rotations` records the job, so running the command again resumes it;
2. every data key not on the active version is rewrapped (`SELECT … FOR UPDATE SKIP LOCKED`);
3. with `--reencrypt`: each client gets a new data key, every secret (current ones and kept old versions) is
   re-sealed under it, and data keys that seal nothing any more are deleted.
Old KEK versions keep decrypting throughout; remove one from the keyring only when `vault status` shows
nothing on it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from clientvault.db import Database
from clientvault.ids import new_id
from services.vault import store
from services.vault.crypto import DataKeys, Undecryptable, open_sealed, seal
from services.vault.keys import KeyFailure, KeyProvider, Wrapped, zero
from services.vault.store import rotations

CHECK_VALUE = b"clientvault: this KEK opens this database's data keys"
CHECK_CONTEXT = b"kek-check"

Progress = Callable[[str, int, int], None]  # (phase, done, total)


async def check_keys(db: Database, provider: KeyProvider) -> str:
    """Fails (KeyFailure) unless the provider opens every KEK version that data keys still sit on.

    Each KEK version seals a known value into `vault.kek_checks` when first used, so a wrong key is
    found at startup even before any client has a data key. Returns the active version."""
    active = await provider.active_version()
    async with db.begin() as conn:
        rows = {row.kek_version: row for row in await store.kek_check_rows(conn)}
        if active not in rows:
            wrapped = await provider.wrap(bytearray(CHECK_VALUE), CHECK_CONTEXT)
            await store.insert_kek_check(conn, wrapped.kek_version, wrapped.wrapped_key, datetime.now(UTC))
        known = provider.known_versions()
        for version, row in rows.items():
            if version not in known:
                if await store.keys_on_version(conn, version):
                    raise KeyFailure(f"data keys are wrapped with KEK {version}, which the key provider lacks")
                continue
            try:
                opened = await provider.unwrap(Wrapped(row.sealed, version), CHECK_CONTEXT)
            except KeyFailure:
                opened = bytearray()
            if bytes(opened) != CHECK_VALUE:
                raise KeyFailure(f"KEK {version} is not the key this database's data keys were wrapped with")
    return active


@dataclass(frozen=True, slots=True)
class Status:
    provider: str
    active: str
    versions: list[tuple[str, int, int, int]]  # (KEK version, data keys, secrets and old versions under them)
    secrets_on_old_keys: int  # current secrets and old versions alike
    secrets_without_key: int  # their data key is gone: they can never be decrypted (written before migration 0003)
    unfinished: str | None  # the KEK version of an interrupted rotation


async def status(db: Database, provider: KeyProvider) -> Status:
    active = await provider.active_version()
    async with db.read() as conn:
        versions = [
            (row.kek_version, int(row.keys), int(row.secrets), int(row.versions))
            for row in await store.key_counts(conn)
        ]
        old = sum([await store.count_on_old_keys(conn, table) for table in store.SEALED])
        keyless = await store.count_without_key(conn)
        job = await _unfinished(conn)
    return Status(provider.name, active, versions, old, keyless, job["kek_version"] if job else None)


async def _unfinished(conn: Any) -> dict[str, Any] | None:
    query = select(rotations).where(rotations.c.finished_at.is_(None)).order_by(rotations.c.started_at).limit(1)
    row = (await conn.execute(query)).one_or_none()
    return dict(row._mapping) if row is not None else None


async def rotate(
    db: Database, keys: DataKeys, *, reencrypt: bool, batch: int, progress: Progress, say: Callable[[str], None]
) -> str:
    """Runs (or resumes) a rotation to completion; returns the active KEK version."""
    provider = keys.provider
    async with db.begin() as conn:
        job = await _unfinished(conn)
    if job is not None:
        say(f"resuming the rotation to KEK {job['kek_version']} started {job['started_at']:%Y-%m-%d %H:%M:%S} UTC")
    else:
        active = await provider.active_version()
        async with db.read() as conn:
            behind = await store.count_keys_not_on(conn, active)
        if behind == 0:
            active = await provider.rotate()
            say(f"KEK {active} is now active")
        else:
            say(f"KEK {active} is active; {behind} data keys are still on older versions")
        await check_keys(db, provider)
        job = {"id": new_id(), "kek_version": active, "reencrypt": reencrypt, "started_at": datetime.now(UTC)}
        async with db.begin() as conn:
            await conn.execute(insert(rotations).values(**job))
    await rewrap_keys(db, provider, str(job["kek_version"]), batch, progress)
    if job["reencrypt"]:
        undecryptable = await reencrypt_secrets(db, keys, job["started_at"], batch, progress)
        if undecryptable:
            say(
                f"warning: {len(undecryptable)} secrets do not decrypt under their own key (tampered or "
                f"corrupt); they were left as they are: {', '.join(undecryptable)}"
            )
    async with db.begin() as conn:
        await conn.execute(update(rotations).where(rotations.c.id == job["id"]).values(finished_at=datetime.now(UTC)))
    return str(job["kek_version"])


async def rewrap_keys(db: Database, provider: KeyProvider, version: str, batch: int, progress: Progress) -> None:
    async with db.read() as conn:
        total = await store.count_keys_not_on(conn, version)
    done = 0
    progress("rewrap data keys", done, total)
    while True:
        async with db.begin() as conn:
            rows = await store.keys_not_on(conn, version, batch)
            if not rows:
                break
            items = [(Wrapped(r.wrapped_key, r.kek_version), _context(r.client_id, r.generation)) for r in rows]
            rewrapped = await provider.rewrap(items)
            if any(w.kek_version != version for w in rewrapped):
                raise KeyFailure(f"the key provider wrapped with another version than {version}: run again")
            await store.set_wrapped_keys(
                conn,
                [
                    {
                        "b_client_id": r.client_id,
                        "b_gen": r.generation,
                        "b_wrapped": w.wrapped_key,
                        "b_version": version,
                    }
                    for r, w in zip(rows, rewrapped, strict=True)
                ],
            )
        done += len(rows)
        progress("rewrap data keys", done, max(total, done))


def _context(client_id: UUID, generation: int) -> bytes:
    from services.vault.crypto import dek_context

    return dek_context(client_id, generation)


async def reencrypt_secrets(
    db: Database, keys: DataKeys, started_at: datetime, batch: int, progress: Progress
) -> list[str]:
    """New data keys for every client whose newest predates the job, then every secret re-sealed: the current
    ones and the kept old versions.

    Returns the secrets that do not decrypt under their own key (tampered or corrupt), as "credential <id>" or
    "credential <id> version <n>": they stay as they are, on their old data key, for an operator to look at."""
    while True:
        async with db.begin() as conn:
            clients = await store.clients_with_keys_before(conn, started_at, batch)
            if not clients:
                break
            now = datetime.now(UTC)
            for client_id in clients:
                newest = await store.newest_key(conn, client_id)
                generation = (newest.generation if newest else 0) + 1
                dek, wrapped = await keys.wrap_new(client_id, generation)
                zero(dek)
                await store.insert_key(
                    conn,
                    client_id=client_id,
                    generation=generation,
                    wrapped_key=wrapped.wrapped_key,
                    kek_version=wrapped.kek_version,
                    created_at=now,
                )
    async with db.read() as conn:
        total = sum([await store.count_on_old_keys(conn, table) for table in store.SEALED])
    done, undecryptable = 0, list[str]()
    progress("re-encrypt secrets", done, total)
    for table in store.SEALED:
        skip = set[tuple[Any, ...]]()
        while True:
            async with db.begin() as conn:
                rows = await store.sealed_on_old_keys(conn, table, batch, skip=skip)
                if not rows:
                    break
                resealed = []
                for row in rows:
                    sealed = await _resealed(conn, keys, row)
                    key = store.row_key(table, row)
                    if sealed is None:
                        skip.add(key)  # tampered or corrupt: left as it is, and reported
                        version = f" version {row.version}" if table is store.credential_versions else ""
                        field = f" {store.sealed_field(row)}" if table is store.credential_fields else ""
                        undecryptable.append(f"credential {row.sealed_for}{version}{field}")
                        continue
                    ciphertext, nonce = sealed
                    keyed = {f"b_key{n}": value for n, value in enumerate(key)}
                    resealed.append(
                        {**keyed, "b_ciphertext": ciphertext, "b_nonce": nonce, "b_gen": row.newest_generation}
                    )
                if resealed:
                    await store.reseal(conn, table, resealed)
            done += len(rows)
            progress("re-encrypt secrets", done, max(total, done))
    async with db.begin() as conn:
        await store.delete_unused_old_keys(conn)
    keys.clear()
    return undecryptable


async def _resealed(conn: AsyncConnection, keys: DataKeys, row: Row[Any]) -> tuple[bytes, bytes] | None:
    """The row's secret sealed anew under its client's newest data key; None if it does not decrypt."""
    old_key = await store.get_key(conn, row.client_id, row.key_generation)
    new_key = await store.get_key(conn, row.client_id, row.newest_generation)
    assert old_key is not None
    assert new_key is not None
    old = await keys.unwrap(row.client_id, old_key.generation, Wrapped(old_key.wrapped_key, old_key.kek_version))
    try:
        secret = open_sealed(
            old, row.client_id, row.sealed_for, row.ciphertext, row.nonce, field=store.sealed_field(row)
        )
    except Undecryptable:
        return None
    finally:
        keys.release(old)
    new = await keys.unwrap(row.client_id, new_key.generation, Wrapped(new_key.wrapped_key, new_key.kek_version))
    try:
        return seal(new, row.client_id, row.sealed_for, secret, field=store.sealed_field(row))
    finally:
        keys.release(new)
