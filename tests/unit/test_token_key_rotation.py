"""Rotating the token signing key: tokens signed by the retired key keep verifying while auth publishes its
public half (CLIENTVAULT_TOKEN_PREVIOUS_KEYS), and only then."""

import base64
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from clientvault.ed25519 import generate as generate_private_key
from clientvault.errors import Unauthenticated
from clientvault.policy import Role
from clientvault.revocation import DenyList
from clientvault.settings import AuthSettings
from clientvault.tokens import TokenVerifier
from services.auth.signing import TokenSigner, load_previous_keys, load_private_key, public_half
from services.auth.users import User

USER = User(uuid.uuid4(), "ada@example.com", "Ada", Role.MANAGER, datetime.now(UTC), None)


def signer(key: str, kid: str, previous: tuple[str, ...] = ()) -> TokenSigner:
    return TokenSigner(
        load_private_key(SecretStr(key)),
        kid=kid,
        issuer="clientvault",
        audience="clientvault",
        ttl_s=900,
        previous=load_previous_keys(previous, kid),
    )


def verifier_of(auth: TokenSigner) -> TokenVerifier:
    async def fetch() -> dict[str, object]:
        return dict(auth.public_keys())

    return TokenVerifier(
        issuer="clientvault",
        audience="clientvault",
        max_ttl_s=900,
        fetch_keys=fetch,  # type: ignore[arg-type]
        denylist=DenyList(),
    )


async def test_a_token_of_the_retired_key_verifies_while_its_public_half_is_published() -> None:
    old_key, new_key = generate_private_key(), generate_private_key()
    old_token = signer(old_key, "k1").sign(USER, uuid.uuid4())
    retired = f"k1:{public_half(load_private_key(SecretStr(old_key)))}"

    rotated = signer(new_key, "k2", previous=(retired,))
    caller = await verifier_of(rotated).verify(old_token)
    new_caller = await verifier_of(rotated).verify(rotated.sign(USER, uuid.uuid4()))

    assert (caller.user_id, caller.role) == (USER.id, Role.MANAGER)
    assert new_caller.user_id == USER.id
    assert sorted(rotated.public_keys()) == ["k1", "k2"]


async def test_without_the_grace_period_the_old_token_is_refused() -> None:
    old_token = signer(generate_private_key(), "k1").sign(USER, uuid.uuid4())

    with pytest.raises(Unauthenticated):
        await verifier_of(signer(generate_private_key(), "k2")).verify(old_token)


async def test_a_published_key_id_cannot_be_forged_with_another_key() -> None:
    old_key = generate_private_key()
    retired = f"k1:{public_half(load_private_key(SecretStr(old_key)))}"
    forged = signer(generate_private_key(), "k1").sign(USER, uuid.uuid4())  # kid k1, some other key

    with pytest.raises(Unauthenticated):
        await verifier_of(signer(generate_private_key(), "k2", previous=(retired,))).verify(forged)


@pytest.mark.parametrize(
    "entry",
    ["k1", "k1:not-base64!", f"k1:{base64.b64encode(b'short').decode()}", f":{base64.b64encode(bytes(32)).decode()}"],
)
def test_a_malformed_previous_key_stops_auth_with_a_message(entry: str) -> None:
    with pytest.raises(SystemExit, match="CLIENTVAULT_TOKEN_PREVIOUS_KEYS takes kid:"):
        load_previous_keys([entry], "k2")


def test_the_current_key_id_cannot_be_listed_as_retired() -> None:
    with pytest.raises(SystemExit, match="the current key id"):
        load_previous_keys([f"k2:{base64.b64encode(bytes(32)).decode()}"], "k2")


def test_the_setting_is_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENTVAULT_TOKEN_PREVIOUS_KEYS", "k1:AAAA, k0:BBBB")
    assert AuthSettings().token_previous_keys == ["k1:AAAA", "k0:BBBB"]


def test_the_cli_prints_the_public_half_of_a_key_on_stdin() -> None:
    key = generate_private_key()

    done = subprocess.run(
        [sys.executable, "-m", "ops", "token-public-key"],
        input=key,
        capture_output=True,
        text=True,
        check=False,
    )
    refused = subprocess.run(
        [sys.executable, "-m", "ops", "token-public-key"], input="aGVsbG8=", capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == public_half(load_private_key(SecretStr(key)))
    assert key not in done.stdout
    assert refused.returncode == 1
    assert "must decode to exactly 32 bytes" in refused.stderr
