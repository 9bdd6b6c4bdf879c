"""The environment variables that ClientVault processes read, for checking what the deployment files set."""

import re

from tests.deploy.files import ROOT

# The vault's key-provider settings come with the vault service (branch `vault`, VaultSettings); until it
# lands they are not in README.md's configuration table, so they are listed here.
VAULT_SETTINGS = frozenset(
    {
        "CLIENTVAULT_KEY_PROVIDER",
        "CLIENTVAULT_KEKS",
        "CLIENTVAULT_KEK_ACTIVE",
        "CLIENTVAULT_KEK_FILE",
        "CLIENTVAULT_TRANSIT_ADDR",
        "CLIENTVAULT_TRANSIT_TOKEN",
        "CLIENTVAULT_TRANSIT_MOUNT",
        "CLIENTVAULT_TRANSIT_KEY",
        "CLIENTVAULT_DEK_CACHE_TTL_S",
        "CLIENTVAULT_OUTBOX_BATCH",
        "CLIENTVAULT_OUTBOX_SWEEP_S",
    }
)


def documented_settings() -> frozenset[str]:
    """Every variable in README.md's "Configuration" table (the source of truth), plus the vault's."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return frozenset(re.findall(r"^\| `([A-Z_]+)` \|", table, re.MULTILINE)) | VAULT_SETTINGS


# Values that are secret: set only from the environment or a Secret, never written in a file.
SECRET_SETTINGS = frozenset(
    {"DATABASE_URL", "NATS_URL", "CLIENTVAULT_TOKEN_SIGNING_KEY", "CLIENTVAULT_KEKS", "CLIENTVAULT_TRANSIT_TOKEN"}
)
