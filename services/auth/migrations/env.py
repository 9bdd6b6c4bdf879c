from clientvault.migrations import run_env
from services.auth.store import metadata

run_env("auth", metadata)
