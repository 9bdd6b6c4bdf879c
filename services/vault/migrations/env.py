from clientvault.migrations import run_env
from services.vault.store import metadata

run_env("vault", metadata)
