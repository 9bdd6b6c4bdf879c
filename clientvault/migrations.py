"""A service's migrations, from the kit's side: the body of every service's Alembic `migrations/env.py` (online
migrations inside the service's own schema, with the version table there too), and the check a service makes
at start that its schema is at the revision its code ships (`SchemaVersion`). The runner that applies them all
(`clientvault migrate`, `up`) is the operator layer's (ops/migrate.py).

A service serves only once its schema is at its head: behind (the migration Job has not run yet), it waits,
not ready; ahead (an older image against a newer schema), it refuses to start, since its code cannot know what
the newer schema means (deploy/README.md, "Upgrades").

What a tree ships (its head and every revision) is read from the scripts' `revision = "…"` and
`down_revision = "…"` lines, not by Alembic loading (executing) every script: a service and `up` learn it at
start without importing Alembic at all (tests/unit/test_migrations.py holds it equal to Alembic's own reading).
"""

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import stamina
from psycopg.errors import UndefinedTable

from clientvault import retrying
from clientvault.errors import Misconfigured
from clientvault.logging import get_logger

if TYPE_CHECKING:
    from clientvault.db import Database

log = get_logger(__name__)


def run_env(schema: str, target_metadata: Any) -> None:
    from alembic import context  # only where Alembic runs the migrations: not paid by a service's start
    from sqlalchemy import create_engine, text

    from clientvault.db import sqlalchemy_url

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


_REVISION = re.compile(r'^(down_revision|revision)(?:: [^=]+)? = (None|"([^"]+)"|\'([^\']+)\')$', re.MULTILINE)


def shipped_revisions(migrations: Path) -> dict[str, str | None]:
    """Each revision of a migration tree (`<migrations>/versions/*.py`) and the one before it (None: the first)."""
    revisions: dict[str, str | None] = {}
    for script in sorted((migrations / "versions").glob("*.py")):
        found: dict[str, str | None] = {}
        for name, none, double, single in _REVISION.findall(script.read_text()):
            found[name] = None if none == "None" else double or single
        if found.get("revision") is None or "down_revision" not in found:
            raise Misconfigured(f"{script} does not say its revision and down_revision as Alembic writes them")
        revisions[str(found["revision"])] = found["down_revision"]
    return revisions


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
        revisions = shipped_revisions(migrations)
        heads = set(revisions) - {down for down in revisions.values() if down is not None}
        if len(heads) != 1:  # none, or two heads: a packaging mistake
            raise Misconfigured(f"{migrations} must have exactly one head revision, not {sorted(heads)}")
        return cls(schema, heads.pop(), frozenset(revisions))

    def state(self, revision: str | None) -> SchemaState:
        if revision == self.head:
            return SchemaState.CURRENT
        return SchemaState.BEHIND if revision is None or revision in self.known else SchemaState.AHEAD

    async def revision(self, db: "Database") -> str | None:
        """The schema's revision now (None: never migrated)."""
        # Here, not at the top: `up` reads what a tree ships (this module) on its way to start the services, and
        # SQLAlchemy's import is a second of CPU it need not pay there (a service has it loaded already).
        from sqlalchemy import column, select, table
        from sqlalchemy.exc import ProgrammingError

        try:
            async with db.read() as conn:
                version_table = table("alembic_version", column("version_num"), schema=self.schema)
                row = (await conn.execute(select(version_table.c.version_num))).first()
        except ProgrammingError as error:
            if isinstance(error.orig, UndefinedTable):
                return None
            raise
        return None if row is None else str(row.version_num)

    async def wait_until_current(self, db: "Database") -> None:
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
