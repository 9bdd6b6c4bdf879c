from clientvault.migrations import run_env
from services.clients.store import metadata

run_env("clients", metadata)
