"""Schema migrations: Alembic, one migration tree per service (`services/<name>/migrations`), each with its
version table in the service's own schema (clientvault/migrations.py is every tree's env.py body).

`upgrade_all` runs when `clientvault up` starts and as `clientvault migrate` (the Kubernetes Job).
"""

from alembic import command
from alembic.config import Config

from ops.registry import SERVICES, Process


def config(database_url: str, service: Process) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(service.migrations))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade_all(database_url: str) -> None:
    for service in SERVICES:
        command.upgrade(config(database_url, service), "head")
