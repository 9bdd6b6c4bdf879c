"""The layers of ARCHITECTURE.md, checked on every import statement (top level or inside a function):
the kit imports nothing above it; a service imports no other service, nor the gateway or ops; the gateway
reaches services over gRPC only; ops reaches a service only through its admin.py (and main(), named in
ops/registry.py); domain modules import no transport."""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRANSPORT = ("grpc", "clientvault.rpc", "clientvault.service", "fastapi", "starlette")


def modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "v1" not in p.relative_to(ROOT).parts[:2])


def imported(path: Path) -> Iterator[str]:
    """Every module an import statement in the file names (for `from a import b`: `a.b`, which may be a name)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


def where(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", modules("clientvault"), ids=where)
def test_the_kit_imports_nothing_above_it(path: Path) -> None:
    assert [name for name in imported(path) if under(name, "ops", "gateway", "services", "tests")] == []


@pytest.mark.parametrize("path", modules("services"), ids=where)
def test_a_service_imports_no_other_service_and_nothing_above_it(path: Path) -> None:
    own = ".".join(path.relative_to(ROOT).parts[:2]).removesuffix(".py")
    foreign = [n for n in imported(path) if under(n, "ops", "gateway") or (under(n, "services") and not under(n, own))]
    assert foreign == []


@pytest.mark.parametrize("path", modules("gateway"), ids=where)
def test_the_gateway_reaches_services_over_grpc_only(path: Path) -> None:
    assert [name for name in imported(path) if under(name, "ops", "services")] == []


@pytest.mark.parametrize("path", modules("ops"), ids=where)
def test_ops_reaches_a_service_only_through_its_admin_module(path: Path) -> None:
    reached = [name for name in imported(path) if under(name, "services")]
    assert [name for name in reached if name.split(".")[2:3] != ["admin"]] == []


@pytest.mark.parametrize(
    "path",
    [p for p in modules("services") if p.name not in ("server.py", "admin.py") and "migrations" not in p.parts],
    ids=where,
)
def test_domain_modules_import_no_transport(path: Path) -> None:
    assert [name for name in imported(path) if under(name, *TRANSPORT)] == []
