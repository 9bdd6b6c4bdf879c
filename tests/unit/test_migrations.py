"""What a migration tree ships, as services and `up` read it at start (without Alembic), is what Alembic reads."""

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from clientvault.errors import Misconfigured
from clientvault.migrations import SchemaVersion, shipped_revisions
from ops.registry import SERVICES, Process


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.name)
def test_the_head_and_revisions_read_from_the_scripts_are_alembics(service: Process) -> None:
    scripts = ScriptDirectory(str(service.migrations))

    shipped = SchemaVersion.shipped(service.name, service.migrations)

    assert shipped.head == scripts.get_current_head()
    assert shipped.known == {script.revision for script in scripts.walk_revisions()}
    assert shipped_revisions(service.migrations) == {
        script.revision: script.down_revision for script in scripts.walk_revisions()
    }


def write(versions: Path, name: str, revision: str, down: str | None) -> None:
    down_text = "None" if down is None else f'"{down}"'
    (versions / name).write_text(
        f'"""{name}\\n\\nRevision ID: {revision}\\n"""\n\nrevision = "{revision}"\ndown_revision = {down_text}\n'
    )


def test_two_heads_or_an_unreadable_script_are_refused_by_name(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    write(versions, "0001_a.py", "0001", None)
    write(versions, "0002_b.py", "0002", "0001")
    assert SchemaVersion.shipped("x", tmp_path).head == "0002"

    write(versions, "0002_c.py", "0003", "0001")  # a second branch from 0001: two heads
    with pytest.raises(Misconfigured, match=r"exactly one head revision, not \['0002', '0003'\]"):
        SchemaVersion.shipped("x", tmp_path)

    (versions / "0002_c.py").write_text('revision = make_revision()\ndown_revision = "0002"\n')
    with pytest.raises(Misconfigured, match=r"0002_c\.py does not say its revision"):
        SchemaVersion.shipped("x", tmp_path)
