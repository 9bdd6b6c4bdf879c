from clientvault.migrations import run_env
from services.audit.store import metadata

run_env("audit", metadata)
