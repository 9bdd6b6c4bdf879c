"""Settings from files (`<VARIABLE>_FILE`, `CLIENTVAULT_SECRETS_DIR`): how secrets reach a container without
being in its environment. A file that cannot be read is a clear error naming the variable and the path, never
the content."""

import subprocess
import sys
from pathlib import Path

import pytest

from clientvault.settings import AuthSettings, SecretFileError, Settings, VaultSettings

KEYRING = "v1:" + "A" * 43 + "="


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("DATABASE_URL", "NATS_URL", "CLIENTVAULT_KEKS", "CLIENTVAULT_SECRETS_DIR"):
        monkeypatch.delenv(variable, raising=False)
        monkeypatch.delenv(variable + "_FILE", raising=False)


def test_a_secret_is_read_from_the_file_its_variable_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keks").write_text(KEYRING + "\n")  # as `echo … > file` or a Kubernetes secret leaves it
    (tmp_path / "database").write_text("postgresql://vault:pw@db:5432/clientvault")
    monkeypatch.setenv("CLIENTVAULT_KEKS_FILE", str(tmp_path / "keks"))
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "database"))

    settings = VaultSettings()

    assert settings.keks is not None
    assert settings.keks.get_secret_value() == KEYRING
    assert settings.database_url == "postgresql://vault:pw@db:5432/clientvault"
    assert KEYRING not in repr(settings)


def test_a_secrets_dir_holds_a_file_per_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "CLIENTVAULT_TOKEN_SIGNING_KEY").write_text("c2lnbmluZw==\n")
    (tmp_path / "NATS_URL").write_text("nats://auth:pw@nats:4222")
    monkeypatch.setenv("CLIENTVAULT_SECRETS_DIR", str(tmp_path))

    settings = AuthSettings()

    assert settings.token_signing_key is not None
    assert settings.token_signing_key.get_secret_value() == "c2lnbmluZw=="
    assert settings.nats_url == "nats://auth:pw@nats:4222"
    assert settings.database_url is None  # no file of that name: the default


def test_the_variable_itself_wins_over_the_secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "DATABASE_URL").write_text("postgresql://from-the-dir")
    monkeypatch.setenv("CLIENTVAULT_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "")  # blanked on purpose (`up` does it for a process that may not see it)

    assert not Settings().database_url


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: None, "No such file or directory"),
        (lambda path: path.mkdir(), "Is a directory"),
        (lambda path: path.write_bytes(b"\xff\xfe secret"), "not UTF-8 text"),
    ],
)
def test_a_file_that_cannot_be_read_is_named_with_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: object, reason: str
) -> None:
    path = tmp_path / "keks"
    make(path)  # type: ignore[operator]
    monkeypatch.setenv("CLIENTVAULT_KEKS_FILE", str(path))

    with pytest.raises(SecretFileError) as refused:
        VaultSettings()

    assert str(refused.value) == f"CLIENTVAULT_KEKS_FILE: cannot read {path}: {reason}"
    assert "secret" not in str(refused.value)


def test_a_variable_and_its_file_together_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keks").write_text(KEYRING)
    monkeypatch.setenv("CLIENTVAULT_KEKS_FILE", str(tmp_path / "keks"))
    monkeypatch.setenv("CLIENTVAULT_KEKS", KEYRING)

    with pytest.raises(SecretFileError, match="CLIENTVAULT_KEKS and CLIENTVAULT_KEKS_FILE are both set: keep one"):
        VaultSettings()


def test_a_process_with_a_missing_secret_file_stops_with_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "signing-key"

    done = subprocess.run(
        [sys.executable, "-m", "ops", "serve", "auth"],
        cwd=Path(__file__).resolve().parents[2],
        env={"CLIENTVAULT_TOKEN_SIGNING_KEY_FILE": str(missing), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    reason = "No such file or directory"
    assert done.stderr == f"error: CLIENTVAULT_TOKEN_SIGNING_KEY_FILE: cannot read {missing}: {reason}\n"
