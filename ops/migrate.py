"""Schema migrations: Alembic, one migration tree per service (`services/<name>/migrations`), each with its
version table in the service's own schema (clientvault/migrations.py is every tree's env.py body).

`upgrade_all` runs when `clientvault up` starts and as `clientvault migrate` (the Kubernetes Job). It first reads
every schema's revision in one query and runs Alembic only for the schemas that are not at the head their code
ships (behind, or at a revision this code does not know, which Alembic then refuses by name): on a data dir that
is up to date, `up` pays neither Alembic's import nor its connections.
"""

from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from clientvault.migrations import SchemaState, SchemaVersion
from ops.registry import SERVICES, Process

if TYPE_CHECKING:
    from alembic.config import Config


def config(database_url: str, service: Process) -> "Config":
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(service.migrations))
    cfg.attributes["database_url"] = database_url
    return cfg


def revisions(database_url: str) -> dict[str, str | None]:
    """Each service schema's revision now (None: never migrated), in one query."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        present = {
            schema
            for (schema,) in conn.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'alembic_version'"
            )
        }
        found: dict[str, str | None] = {service.name: None for service in SERVICES}
        selects = [
            sql.SQL("SELECT {name}, version_num FROM {table}").format(
                name=sql.Literal(service.name), table=sql.Identifier(service.name, "alembic_version")
            )
            for service in SERVICES
            if service.name in present
        ]
        if selects:
            found |= dict(conn.execute(sql.SQL(" UNION ALL ").join(selects)).fetchall())
    return found


def behind(database_url: str) -> list[Process]:
    """The services whose schema is not at the head their migrations ship."""
    now = revisions(database_url)
    return [
        service
        for service in SERVICES
        if SchemaVersion.shipped(service.name, service.migrations).state(now[service.name]) is not SchemaState.CURRENT
    ]


def upgrade_all(database_url: str) -> list[str]:
    """Brings every service's schema to its head; the services whose schema it migrated (none: all current)."""
    to_migrate = behind(database_url)
    if to_migrate:
        from alembic import command

        for service in to_migrate:
            command.upgrade(config(database_url, service), "head")
    return [service.name for service in to_migrate]
