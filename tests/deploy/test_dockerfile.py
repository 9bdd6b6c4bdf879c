"""deploy/Dockerfile follows the image rules: hadolint-clean, multi-stage from the lock, non-root, no caches."""

import re
import subprocess
from dataclasses import dataclass

import pytest

from tests.deploy.files import DEPLOY, DOCKERFILE, ROOT, tool


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions, continuation lines joined, comments and parser directives dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(args.split())))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


INSTRUCTIONS = parse(DOCKERFILE.read_text())


def stages() -> list[list[Instruction]]:
    found: list[list[Instruction]] = []
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--config", str(DEPLOY / ".hadolint.yaml"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_a_named_build_stage() -> None:
    froms = [i.args for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    assert re.search(r"\bAS build$", froms[0], re.IGNORECASE)
    assert all(":latest" not in f for f in froms)


def test_build_stage_installs_the_locked_dependencies_without_dev_or_editable() -> None:
    runs = [i.args for i in stages()[0] if i.keyword == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs, "the build stage runs `uv sync`"
    for sync in syncs:
        for flag in ("--frozen", "--no-dev", "--no-editable"):
            assert flag in sync, f"`{sync}` lacks {flag}"
    assert any(re.search(r"pip install --no-cache-dir uv==\d", r) for r in runs), "a pinned uv, pip without cache"
    env = " ".join(i.args for i in stages()[0] if i.keyword == "ENV")
    assert "UV_NO_CACHE=1" in env
    assert "UV_COMPILE_BYTECODE=1" in env, "bytecode compiled at build time: the root filesystem is read-only"


def test_runtime_stage_has_no_build_tools_or_caches() -> None:
    final = stages()[-1]
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert any(c.startswith("--from=build /app/.venv ") for c in copies), "the runtime copies the built venv"
    for copy in copies:
        assert "--from=build" in copy or copy.split()[0].startswith("deploy/"), f"unexpected COPY: {copy}"
    for run in (i.args for i in final if i.keyword == "RUN"):
        assert not re.search(r"\b(uv|pip|apt-get|apk) (install|sync|add)\b", run), f"installs in the runtime: {run}"
    assert "pip uninstall" in " ".join(i.args for i in final if i.keyword == "RUN"), "pip itself is removed"


def test_runtime_stage_runs_as_a_numeric_non_root_user() -> None:
    users = [i.args for i in stages()[-1] if i.keyword == "USER"]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric, so Kubernetes runAsNonRoot can check it"
    assert int(uid) >= 10000


def test_runtime_is_ready_for_a_read_only_root_filesystem() -> None:
    env = " ".join(i.args for i in stages()[-1] if i.keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert "CLIENTVAULT_GATEWAY_HOST=0.0.0.0" in env, "the gateway listens beyond the container's loopback"


def test_command_is_clientvault_serve() -> None:
    final = stages()[-1]
    assert [i.args for i in final if i.keyword == "ENTRYPOINT"] == ['["clientvault"]']
    cmd = [i.args for i in final if i.keyword == "CMD"]
    assert cmd
    assert cmd[-1].startswith('["serve", "')
    assert any(i.keyword == "HEALTHCHECK" and "/app/healthcheck.py" in i.args for i in final)


@pytest.mark.parametrize("word", ["KEY", "TOKEN", "PASSWORD", "SECRET", "DATABASE_URL", "NATS_URL", "KEKS"])
def test_no_secret_or_connection_setting_is_baked_in(word: str) -> None:
    for instruction in INSTRUCTIONS:
        if instruction.keyword in ("ENV", "ARG", "LABEL"):
            assert word not in instruction.args.upper(), f"{instruction.keyword} {instruction.args}"


def test_dockerignore_allows_only_what_the_image_needs() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*", "an allow-list: everything is excluded first"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "clientvault",
        "gateway",
        "ops",
        "services",
        "deploy/healthcheck.py",
    }
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "COPY" and "--from=" not in instruction.args:
            sources = instruction.args.split()[:-1]
            for source in sources:
                assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"
