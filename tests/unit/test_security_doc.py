"""docs/security.md tells an auditor where each control and its test are, as `path::name` (a `::name` alone
continues the file named just before it): each such reference must name a file that has that name in it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"`(?P<path>[\w./-]+\.(?:py|yaml|md))?(?:::(?P<name>[\w.]+))?`")


def references(text: str) -> list[tuple[str, str]]:
    found, current = [], None
    for match in REFERENCE.finditer(text):
        path, name = match.group("path"), match.group("name")
        current = path or current
        if name and current:
            found.append((current, name.split(".")[-1]))
    return found


def test_every_reference_names_something_that_exists() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    missing = []
    for path, name in references(text):
        file = ROOT / path
        if not file.exists() or not re.search(rf"\b{re.escape(name)}\b", file.read_text()):
            missing.append(f"{path}::{name}")
    assert sorted(set(missing)) == []
