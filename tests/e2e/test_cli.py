"""`clientvault users …`: clear errors for what an operator can get wrong."""

import uuid

import pytest

from tests.system import System


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
        ("manager", "aaaaaaaaaaaaaaaa", "password is too weak"),
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

    assert done.returncode == 1
    assert "nothing runs on" in done.stderr
