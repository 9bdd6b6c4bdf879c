"""A service's migrations, from the kit's side: the body of every service's Alembic `migrations/env.py` (online
migrations inside the service's own schema, with the version table there too), and the check a service makes
at start that its schema is at the revision its code ships (`SchemaVersion`). The runner that applies them all
(`clientvault migrate`, `up`) is the operator layer's (ops/migrate.py).

A service serves only once its schema is at its head: behind (the migration Job has not run yet), it waits,
not ready; ahead (an older image against a newer schema), it refuses to start, since its code cannot know what
the newer schema means (deploy/README.md, "Upgrades").
"""

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import stamina
from alembic import context
from alembic.script import ScriptDirectory
from psycopg.errors import UndefinedTable
from sqlalchemy import column, create_engine, select, table, text
from sqlalchemy.exc import ProgrammingError

from clientvault import retrying
from clientvault.db import Database, sqlalchemy_url
from clientvault.errors import Misconfigured
from clientvault.logging import get_logger

log = get_logger(__name__)


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


class SchemaState(StrEnum):
    CURRENT = "current"
    BEHIND = "behind"  # not migrated yet, or to an older revision of this code's
    AHEAD = "ahead"  # at a revision this code does not ship: migrated by a newer version


class SchemaBehind(Exception):
    """The schema is not at the code's head yet (retried until it is)."""


class SchemaAhead(Misconfigured):
    """The schema is at a revision the code does not know: a newer version migrated it (`serve` exits 2)."""


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """What a service's code expects of its schema: the head of the migrations shipped with it, and every
    revision it knows. Read from the migration scripts once, at start, never per request."""

    schema: str
    head: str
    known: frozenset[str]

    @classmethod
    def shipped(cls, schema: str, migrations: Path) -> Self:
        scripts = ScriptDirectory(str(migrations))
        head = scripts.get_current_head()  # raises on two heads: a packaging mistake
        assert head is not None, f"{migrations} has no migration"
        return cls(schema, head, frozenset(script.revision for script in scripts.walk_revisions()))

    def state(self, revision: str | None) -> SchemaState:
        if revision == self.head:
            return SchemaState.CURRENT
        return SchemaState.BEHIND if revision is None or revision in self.known else SchemaState.AHEAD

    async def revision(self, db: Database) -> str | None:
        """The schema's revision now (None: never migrated)."""
        try:
            async with db.read() as conn:
                version_table = table("alembic_version", column("version_num"), schema=self.schema)
                row = (await conn.execute(select(version_table.c.version_num))).first()
        except ProgrammingError as error:
            if isinstance(error.orig, UndefinedTable):
                return None
            raise
        return None if row is None else str(row.version_num)

    async def wait_until_current(self, db: Database) -> None:
        """Returns once the schema is at the head: while it is behind, it says so once (`schema.behind`) and
        looks again with the kit's backoff; an outage of the database is retried too. A schema ahead raises
        `SchemaAhead` (logged `schema.ahead`), which ends the process."""
        behind_logged = False
        retry = stamina.retry_context(
            on=(SchemaBehind, *retrying.OUTAGES), attempts=None, timeout=None, **retrying.BACKOFF
        )
        async for attempt in retry:
            with attempt:
                try:
                    revision = await self.revision(db)
                except retrying.OUTAGES as error:
                    log.warning("schema.unreachable", error=type(error).__name__, retry_in_s=attempt.next_wait)
                    raise
                state = self.state(revision)
                if state is SchemaState.AHEAD:
                    log.error("schema.ahead", schema=self.schema, revision=revision, expected=self.head)
                    raise SchemaAhead(
                        f'the schema "{self.schema}" is at revision {revision}, which this version does not ship '
                        f"(its newest is {self.head}): a newer version migrated it. Deploy that version, or "
                        'migrate the schema down to this one first (deploy/README.md, "Upgrades")'
                    )
                if state is SchemaState.BEHIND:
                    if not behind_logged:
                        log.warning("schema.behind", schema=self.schema, revision=revision, expected=self.head)
                        behind_logged = True
                    raise SchemaBehind(self.schema)
        log.info("schema.current", schema=self.schema, revision=self.head)
