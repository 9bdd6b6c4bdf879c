"""`clientvault backup` and `restore`, as an operator would use them: back up a system with clients, credentials and
audit entries, restore it into a new data dir, start it, and find every secret revealing and the audit chain
holding the head it had at the backup."""

import hashlib
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.audit_support import wait_for_audit
from tests.system import Api, System, running
from tests.vault_support import create, new_client

pytestmark = pytest.mark.skipif(
    bool(__import__("os").environ.get("DATABASE_URL")), reason="restore makes an embedded PostgreSQL of its own"
)


def restore(system: System, backup: Path, into: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`clientvault restore` into a data dir of its own (not the running system's, which `System.cli` names)."""
    argv = system.command("restore", "--from", str(backup), "--data-dir", str(into), *args)
    return subprocess.run(argv, env=system.env, capture_output=True, text=True, timeout=300, check=False)


async def test_a_backup_restores_into_a_new_data_dir_with_every_secret_and_the_audit_chain(
    api: Api, system: System, tmp_path: Path
) -> None:
    account = await api.new_account("manager")
    session = await api.sign_in(account)
    admin = await api.session("admin")
    client_id = await new_client(api, session)
    reveals = {}
    for n in range(3):
        secret = f"s3cret-{n}-ünïcode"
        credential_id = await create(api, session, client_id, label=f"backed up {n} ✓", secret=secret)
        path = f"/clients/{client_id}/credentials/{credential_id}"
        assert (await api.raw.get(path, headers=session.headers)).status_code == 200
        await wait_for_audit(api, admin, credential_id, 2)
        reveals[path] = secret
    backup, restored = tmp_path / "backup", tmp_path / "restored"

    made = system.cli("backup", "--out", str(backup))
    assert made.returncode == 0, made.stderr
    assert "it holds no secrets" in made.stdout
    manifest = json.loads((backup / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"roles.sql", "database.dump"}
    assert "secrets.json" not in manifest["files"]
    kek = system.secrets()["vault_keks"].split(":", 1)[1].split(",")[0]
    assert not any(kek.encode() in p.read_bytes() for p in backup.rglob("*") if p.is_file()), "the KEK is in it"

    refused = restore(system, backup, restored)
    assert refused.returncode == 1
    assert "the backup holds no secrets: give --secrets" in refused.stderr

    done = restore(system, backup, restored, "--secrets", str(system.data_dir / "secrets.json"))
    assert done.returncode == 0, done.stderr
    with running(restored, {"DATABASE_URL": None, "NATS_URL": None}) as copy:
        async with httpx.AsyncClient(base_url=copy.url, timeout=30) as http:
            r = await http.post("/auth/sign-in", json={"email": account.email, "password": account.password})
            assert r.status_code == 200, r.text
            headers = {"Authorization": f"Bearer {r.json()['accessToken']}"}
            for path, secret in reveals.items():
                r = await http.get(path, headers=headers)
                assert r.status_code == 200, r.text
                assert r.json()["secret"] == secret
        verified = copy.cli("audit", "verify", "--checkpoints", str(restored / "checkpoints"))
        assert verified.returncode == 0, verified.stderr
        assert "audit chain verified" in verified.stdout


def test_a_damaged_backup_is_refused_before_anything_is_written(system: System, tmp_path: Path) -> None:
    backup, restored = tmp_path / "backup", tmp_path / "restored"
    assert system.cli("backup", "--out", str(backup), "--include-secrets").returncode == 0
    assert (backup / "secrets.json").stat().st_mode & 0o077 == 0
    dump = backup / "database.dump"
    dump.write_bytes(dump.read_bytes()[:-10] + b"0123456789")

    done = restore(system, backup, restored)

    assert done.returncode == 1
    assert "database.dump does not match its checksum" in done.stderr
    assert not (restored / "secrets.json").exists()


def test_a_backup_into_a_directory_that_holds_files_is_refused(system: System, tmp_path: Path) -> None:
    (tmp_path / "something").write_text("mine")
    done = system.cli("backup", "--out", str(tmp_path))
    assert done.returncode == 1
    assert "is not empty" in done.stderr
    assert (tmp_path / "something").read_text() == "mine"


def test_a_restore_that_fails_while_loading_leaves_nothing_and_can_be_run_again(system: System, tmp_path: Path) -> None:
    backup, restored = tmp_path / "backup", tmp_path / "restored"
    assert system.cli("backup", "--out", str(backup), "--include-secrets").returncode == 0
    # A backup whose roles script PostgreSQL refuses, with checksums that match (as one written by a broken tool):
    # the load fails after the secrets are in place.
    roles = backup / "roles.sql"
    intact = roles.read_bytes()
    roles.write_text("CREATE ROLE this is not sql;\n")
    manifest_path = backup / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    original = manifest["files"]["roles.sql"]
    manifest["files"]["roles.sql"] = hashlib.sha256(roles.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))

    failed = restore(system, backup, restored)

    assert failed.returncode == 1, failed.stderr
    assert not (restored / "secrets.json").exists()
    assert not (restored / "postgres" / "PG_VERSION").exists()

    roles.write_bytes(intact)
    manifest["files"]["roles.sql"] = original
    manifest_path.write_text(json.dumps(manifest))
    again = restore(system, backup, restored)
    assert again.returncode == 0, again.stderr
    assert (restored / "secrets.json").exists()
