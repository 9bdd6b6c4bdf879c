"""The environment variables that ClientVault processes read, for checking what the deployment files set."""

import re

from tests.deploy.files import ROOT


def documented_settings() -> frozenset[str]:
    """Every variable in README.md's "Configuration" table (the source of truth)."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return frozenset(re.findall(r"^\| `([A-Z_]+)` \|", table, re.MULTILINE))


# Values that are secret: set only from the environment or a Secret, never written in a file.
SECRET_SETTINGS = frozenset(
    {"DATABASE_URL", "NATS_URL", "CLIENTVAULT_TOKEN_SIGNING_KEY", "CLIENTVAULT_KEKS", "CLIENTVAULT_TRANSIT_TOKEN"}
)
