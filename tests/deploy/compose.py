"""docker-compose.yml as Compose reads it: the file, and its variable interpolation."""

import re
from typing import Any

import yaml

from tests.deploy.files import COMPOSE_FILE

RAW = COMPOSE_FILE.read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(RAW)
VARIABLE = re.compile(
    r"\$(?:\$|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class Missing(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation: $V, ${V}, ${V:-default}, ${V-default}, ${V:?error}, ${V?error}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"] or match["bare"], match["op"], match["arg"]
        if name is None:
            return "$"
        present = env.get(name)
        if op in (":-", ":?") and present == "":
            present = None
        if present is not None:
            return present
        if op and op.endswith("?"):
            raise Missing(f"{name}: {arg}")
        return arg if op else ""

    return VARIABLE.sub(one, value)
