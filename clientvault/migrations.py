"""The body of every service's Alembic `migrations/env.py`: online migrations inside the service's own schema,
with the version table there too. The runner that applies them all (`clientvault migrate`, `up`) is the
operator layer's (ops/migrate.py)."""

from typing import Any

from alembic import context
from sqlalchemy import create_engine, text

from clientvault.db import sqlalchemy_url


def run_env(schema: str, target_metadata: Any) -> None:
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
