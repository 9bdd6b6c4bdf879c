"""What operators may do to the vault in-process (`clientvault vault status|rotate-key`): typed functions with
plain arguments. The operator layer (ops/) imports this module and the service's `main()`, nothing else."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

from clientvault.db import Database
from clientvault.outbox import RETENTION as OUTBOX_RETENTION
from clientvault.settings import VaultSettings
from services.vault import rotation
from services.vault.crypto import DataKeys
from services.vault.keys import KeyFailure, TransitKeys, provider_for
from services.vault.rotation import Progress, Status

__all__ = ["OUTBOX_RETENTION", "KeyFailure", "Progress", "Status", "rotate", "status"]

T = TypeVar("T")


async def status(database_url: str, settings: VaultSettings) -> Status:
    """How many data keys and secrets sit on each KEK version, and whether a rotation was interrupted."""
    return await _with_keys(database_url, settings, lambda db, keys: rotation.status(db, keys.provider))


async def rotate(
    database_url: str,
    settings: VaultSettings,
    *,
    reencrypt: bool,
    batch: int,
    progress: Progress,
    say: Callable[[str], None],
) -> str:
    """Makes a new KEK version active and rewraps every data key (resumable); the active version."""
    return await _with_keys(
        database_url,
        settings,
        lambda db, keys: rotation.rotate(db, keys, reencrypt=reencrypt, batch=batch, progress=progress, say=say),
    )


async def _with_keys(
    database_url: str, settings: VaultSettings, job: Callable[[Database, DataKeys], Awaitable[T]]
) -> T:
    """Runs `job` with the database and the key provider the settings name. KeyFailure: a key missing or wrong."""
    async with Database(database_url, pool_size=2) as db:
        provider = provider_for(settings)
        try:
            if isinstance(provider, TransitKeys):
                await provider.ensure_key()
            return await job(db, DataKeys(provider, ttl_s=60))
        finally:
            provider.close()
