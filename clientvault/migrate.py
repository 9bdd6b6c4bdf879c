"""Schema migrations: Alembic, one migration tree per service, each with its version table in its schema.

`upgrade_all` runs when `clientvault up` starts and as `clientvault migrate` (the Kubernetes Job).
Each service's `migrations/env.py` calls `run_env` with its schema and metadata.
"""

from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import create_engine, text

from clientvault.db import sqlalchemy_url

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
SERVICES_WITH_SCHEMA = ("auth", "clients", "vault", "audit")  # each service adds itself here when its issue lands


def config(database_url: str, service: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade_all(database_url: str) -> None:
    for service in SERVICES_WITH_SCHEMA:
        command.upgrade(config(database_url, service), "head")


def run_env(schema: str, target_metadata: Any) -> None:
    """The body of every service's env.py: online migrations inside the service's own schema."""
    engine = create_engine(sqlalchemy_url(context.config.attributes["database_url"]))
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        conn.commit()
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_name=lambda name, type_, _parent: type_ != "schema" or name == schema,
        )
        with context.begin_transaction():
            # One migrator at a time per schema, so replicas starting together do not race.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": f"clientvault.migrate.{schema}"})
            context.run_migrations()
    engine.dispose()
