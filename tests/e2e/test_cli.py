"""`clientvault …` as an operator and a script use it: clear errors for what an operator can get wrong, JSON
on stdout for scripts, logs and progress on stderr, and the exit codes (0 ok, 1 failed, 2 usage, 3 a
dependency unavailable)."""

import json
import os
import pty
import re
import subprocess
import uuid
from urllib.parse import urlsplit

import pytest

from tests.system import System, free_port


def create(
    system: System, email: str, role: str = "manager", password: str = "a-long-enough-password"
) -> tuple[int, str]:
    done = system.cli("users", "create", "--email", email, "--full-name", "Op Test", "--role", role,
                      "--password-stdin", stdin=password)  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def test_create_and_list(system: System) -> None:
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"

    code, out = create(system, email)

    assert code == 0
    assert f"created manager {email}" in out
    listed = system.cli("users", "list")
    assert listed.returncode == 0
    assert email in listed.stdout


def test_duplicate_email_is_refused(system: System) -> None:
    email = f"dup-{uuid.uuid4().hex[:8]}@example.com"
    assert create(system, email)[0] == 0

    code, out = create(system, email.upper())

    assert code == 1
    assert f"error: a user with email {email} already exists" in out


@pytest.mark.parametrize(
    ("role", "password", "message"),
    [
        ("root", "a-long-enough-password", "unknown role 'root': use one of admin, manager, read_only"),
        ("manager", "", "password is empty"),
        ("manager", "short", "password is too short: use at least 12 characters"),
        ("manager", "aaaaaaaaaaaaaaaa", "password is too easy to guess"),
    ],
)
def test_bad_input_is_a_clear_error(system: System, role: str, password: str, message: str) -> None:
    code, out = create(system, f"bad-{uuid.uuid4().hex[:8]}@example.com", role, password)

    assert code == 1
    assert message in out
    assert "Traceback" not in out


def test_an_invalid_email_is_refused(system: System) -> None:
    code, out = create(system, "not-an-email")

    assert code == 1
    assert "email is not valid" in out


def test_a_data_dir_with_nothing_running_says_so(system: System, tmp_path_factory: pytest.TempPathFactory) -> None:
    idle = System(tmp_path_factory.mktemp("idle"), env={"DATABASE_URL": ""})

    done = idle.cli("users", "list")

    assert done.returncode == 3
    assert "nothing runs on" in done.stderr


def run(system: System, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI with the given environment on top of the system's (without its DATABASE_URL / NATS_URL)."""
    base = {k: v for k, v in system.env.items() if k not in ("DATABASE_URL", "NATS_URL")}
    return subprocess.run(
        system.command(*args), capture_output=True, text=True, env=base | env, timeout=60, check=False
    )


def test_version(system: System) -> None:
    done = run(system, "--version")

    assert done.returncode == 0
    assert re.fullmatch(r"clientvault \d+\.\d+\.\d+\S*\n", done.stdout)


def test_users_list_as_json(system: System) -> None:
    email = f"json-{uuid.uuid4().hex[:8]}@example.com"
    assert create(system, email)[0] == 0

    done = system.cli("users", "list", "--output", "json")

    assert done.returncode == 0, done.stderr
    listed = {user["email"]: user for user in json.loads(done.stdout)}  # stdout is the document and nothing else
    assert listed[email]["role"] == "manager"
    assert listed[email]["disabled_at"] is None
    assert uuid.UUID(listed[email]["id"])
    assert set(listed[email]) == {"id", "email", "full_name", "role", "created_at", "disabled_at", "mfa_enabled"}


def test_vault_status_as_json(system: System) -> None:
    done = system.cli("vault", "status", "--output", "json")

    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["key_provider"] == "env"
    assert status["active_kek"] == "v1"  # the keyring `up` generated
    fields = {"kek_version", "data_keys", "secrets", "old_versions"}
    assert all(set(version) == fields for version in status["versions"])
    assert status["secrets_without_key"] == 0


def test_audit_verify_as_json_and_without_a_bar_when_piped(system: System) -> None:
    done = system.cli("audit", "verify", "--output", "json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["broken"] is None
    assert re.fullmatch("[0-9a-f]{64}", report["head"]["hash"])
    assert done.stderr == ""  # not a terminal: no progress bar, and nothing else to say


def test_a_failed_verification_exits_1(system: System) -> None:
    head = json.loads(system.cli("audit", "verify", "--output", "json").stdout)["head"]
    wrong = f"{head['seq']}:{'11' * 32}"  # the head that is there, with another hash

    done = system.cli("audit", "verify", "--expect-head", wrong, "--output", "json")

    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False
    assert report["head_problem"]  # which one depends on the chain: empty (head 0) or not
    assert report["problems"] == [f"audit chain broken: {report['head_problem']}"]


@pytest.mark.parametrize(
    "args",
    [
        ("users", "list", "--no-such-option"),
        ("users", "list", "--output", "xml"),
        ("audit", "verify", "--expect-head", "twelve:zz"),
        ("serve", "nothing"),
    ],
)
def test_usage_errors_exit_2(system: System, args: tuple[str, ...]) -> None:
    done = system.cli(*args)

    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr


def test_a_database_that_refuses_exits_3_naming_the_host(system: System) -> None:
    closed = free_port()
    url = f"postgresql://postgres:pw-not-shown@127.0.0.1:{closed}/clientvault"

    done = run(system, "users", "list", "--output", "json", DATABASE_URL=url)

    assert done.returncode == 3
    assert done.stderr.strip() == f"error: cannot reach the database at 127.0.0.1:{closed}: connection refused"
    assert done.stdout == ""


def test_a_wrong_database_password_exits_3_without_the_password(system: System) -> None:
    real = urlsplit(system.info()["database_url"])
    wrong = real._replace(netloc=f"{real.username}:wrong-pw-{uuid.uuid4().hex}@{real.hostname}:{real.port}")

    done = run(system, "users", "list", DATABASE_URL=wrong.geturl())

    assert done.returncode == 3
    expected = f"error: cannot reach the database at {real.hostname}:{real.port}: authentication failed"
    assert done.stderr.strip() == expected
    assert "wrong-pw" not in done.stdout + done.stderr


def test_nats_that_does_not_take_a_revocation_exits_3_with_logs_on_stderr_only(system: System) -> None:
    email = f"nonats-{uuid.uuid4().hex[:8]}@example.com"
    assert create(system, email)[0] == 0

    done = run(system, "users", "disable", "--email", email, "--data-dir", str(system.data_dir),
               NATS_URL=f"nats://127.0.0.1:{free_port()}")  # fmt: skip

    assert done.returncode == 3
    assert done.stdout == f"disabled {email}\n"  # the result; the library's log lines went to stderr
    assert "warning: NATS did not take the revocation" in done.stderr
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(line["event"] == "revocations.publish_failed" for line in logged)


def test_the_data_dir_comes_from_the_environment(system: System) -> None:
    done = run(system, "users", "list", "--output", "json", CLIENTVAULT_DATA_DIR=str(system.data_dir))

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)


def test_a_table_on_a_narrow_terminal_shows_whole_ids(system: System) -> None:
    email = f"a-rather-long-address-{uuid.uuid4().hex}@example.com"
    assert create(system, email)[0] == 0
    ids = {u["email"]: u["id"] for u in json.loads(system.cli("users", "list", "--output", "json").stdout)}

    parent, child = pty.openpty()  # a terminal 40 columns wide
    try:
        base = {k: v for k, v in system.env.items() if k not in ("DATABASE_URL", "NATS_URL")}
        done = subprocess.run(
            system.command("users", "list", "--data-dir", str(system.data_dir)),
            stdout=child, stderr=subprocess.PIPE, env=base | {"COLUMNS": "40", "TERM": "dumb"},
            timeout=60, check=False,
        )  # fmt: skip
        os.close(child)
        shown = b""
        while chunk := _read(parent):
            shown += chunk
    finally:
        os.close(parent)

    assert done.returncode == 0, done.stderr
    text = shown.decode()
    assert ids[email] in text
    assert email in text


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal's other end is closed and everything was read
        return b""


def test_set_role_reset_password_and_mfa_reset(system: System) -> None:
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    assert create(system, email)[0] == 0

    promoted = system.cli("users", "set-role", "--email", email, "--role", "admin")
    reset = system.cli("users", "reset-password", "--email", email)
    mfa = system.cli("users", "mfa-reset", "--email", email)
    listed = system.cli("users", "list")
    unknown = system.cli("users", "set-role", "--email", email, "--role", "root")

    assert (promoted.returncode, promoted.stdout) == (0, f"{email} is now admin\n")
    assert reset.returncode == 0
    assert reset.stdout.startswith(f"temporary password for {email}: ")
    temporary = reset.stdout.rsplit(": ", 1)[1].strip()
    assert len(temporary) == 24
    assert temporary not in reset.stderr  # printed once, never logged
    assert (mfa.returncode, mfa.stdout) == (0, f"MFA is off for {email}\n")
    [row] = [line.split("\t") for line in listed.stdout.splitlines() if email in line]
    assert row[3:] == ["admin", row[4], "active", "off"]
    assert unknown.returncode == 1
    assert "unknown role 'root'" in unknown.stderr
