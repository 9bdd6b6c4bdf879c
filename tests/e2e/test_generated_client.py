"""A client generated from the live /openapi.json is typed end to end, and works.

openapi-python-client generates a package from the running gateway's document into a temp dir; mypy --strict
checks it with the short flow of generated_client_flow.py (sign in, create a client and a credential, reveal
it, list its audit entries), where no expression may be `Any` (`disallow_any_expr`); no field of a generated
model and no operation's result is `Any`; and the flow runs against the system through that package.
"""

import ast
import asyncio
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.system import Api, unique_ip

FLOW = Path(__file__).with_name("generated_client_flow.py")
PACKAGE = "clientvault_api_client"
BIN = Path(sys.executable).parent
GENERATOR_CONFIG = f"package_name_override: {PACKAGE}\npost_hooks: []\n"  # no formatter run: nobody reads it
MYPY_CONFIG = """[mypy]
strict = True
[mypy-flow]
disallow_any_expr = True
"""


async def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    text = out.decode()
    assert process.returncode == 0, f"{' '.join(map(str, args))} exited {process.returncode}:\n{text}"
    return text


@pytest.fixture(scope="module")
async def generated(api: Api, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dir with the generated package and the flow as `flow.py`."""
    where = tmp_path_factory.mktemp("generated-client")
    r = await api.raw.get("/openapi.json")
    assert r.status_code == 200, r.text
    (where / "openapi.json").write_bytes(r.content)
    (where / "config.yml").write_text(GENERATOR_CONFIG)
    await run(
        BIN / "openapi-python-client", "generate", "--path", "openapi.json", "--config", "config.yml",
        "--output-path", PACKAGE, "--meta", "none", cwd=where,
    )  # fmt: skip
    shutil.copy(FLOW, where / "flow.py")
    (where / "mypy.ini").write_text(MYPY_CONFIG)
    return where


# Where `Any` is the contract: an audit entry's `detail` is any JSON object (what else its producer recorded;
# README "Audit"), so its values are typed as JSON, which the generator spells `Any`. The entry itself is typed.
ANY_BY_CONTRACT = frozenset({"audit_entry_out_detail_type_0.AuditEntryOutDetailType0.additional_properties"})


def any_annotations(path: Path, *, body: bool) -> list[str]:
    """Where a module's class fields or (if the operation answers a body) `sync` / `asyncio` results are
    annotated with `Any`. A 204 has no body, which the generator types `Any` (always None)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            fields = [a for a in node.body if isinstance(a, ast.AnnAssign)]
            annotated = [(f"{node.name}.{ast.unparse(a.target)}", a.annotation) for a in fields]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in ("sync", "asyncio") and body:
            annotated = [(node.name, node.returns)] if node.returns else []
        else:
            continue
        for name, annotation in annotated:
            if f"{path.stem}.{name}" in ANY_BY_CONTRACT:
                continue
            if any(isinstance(n, ast.Name) and n.id == "Any" for n in ast.walk(annotation)):
                found.append(f"{path.stem}.{name}: {ast.unparse(annotation)}")
    return found


def test_no_model_field_and_no_result_is_any(generated: Path) -> None:
    spec = json.loads((generated / "openapi.json").read_text())
    operations = [op for item in spec["paths"].values() for op in item.values()]
    no_body = {snake(op["operationId"]) for op in operations if "204" in op["responses"]}
    package = generated / PACKAGE
    models, apis = sorted((package / "models").glob("*.py")), sorted((package / "api").glob("*/*.py"))
    assert len(models) > 20, models  # the models and the operations were generated
    assert len(apis) > 20, apis

    untyped = [where for module in models for where in any_annotations(module, body=True)]
    untyped += [where for module in apis for where in any_annotations(module, body=module.stem not in no_body)]

    assert not untyped, "typed as Any in the generated client:\n" + "\n".join(untyped)


def snake(operation_id: str) -> str:
    """signOut -> sign_out, the generated module's name."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation_id).lower()


async def test_the_flow_type_checks_with_mypy_strict_and_no_any(generated: Path) -> None:
    await run(
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        "mypy.ini",
        "--cache-dir",
        ".mypy_cache",
        "flow.py",
        PACKAGE,
        cwd=generated,
    )


async def test_the_flow_runs_against_the_system(api: Api, generated: Path) -> None:
    admin = await api.new_account("admin")
    env = {
        **os.environ,
        "CLIENTVAULT_URL": api.system.url,
        "CLIENTVAULT_EMAIL": admin.email,
        "CLIENTVAULT_PASSWORD": admin.password,
        "CLIENTVAULT_IP": unique_ip(),
    }

    said = await run(sys.executable, "flow.py", cwd=generated, env=env)

    assert said.startswith("flow: signed in"), said
