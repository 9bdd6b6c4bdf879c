"""Settings bounds from the contract, and the deny list's rules."""

import time
import uuid

import pytest
from pydantic import ValidationError

from clientvault.revocation import DenyList
from clientvault.settings import AuthSettings


def test_access_tokens_never_live_over_an_hour() -> None:
    with pytest.raises(ValidationError):
        AuthSettings(access_token_ttl_s=3601)
    assert AuthSettings().access_token_ttl_s == 900


def test_secret_settings_never_print() -> None:
    settings = AuthSettings(token_signing_key="c2VjcmV0")

    assert "c2VjcmV0" not in repr(settings)


def test_a_revoked_session_denies_its_tokens_only() -> None:
    denied, other, user = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    deny = DenyList()

    deny.apply(f"session.{denied}", f'{{"at": {time.time()}}}'.encode())

    assert deny.is_revoked(denied, user, int(time.time()))
    assert not deny.is_revoked(other, user, int(time.time()))


def test_a_disabled_user_denies_tokens_issued_before_not_after() -> None:
    user, session = uuid.uuid4(), uuid.uuid4()
    deny = DenyList()
    now = time.time()

    deny.apply(f"user.{user}", f'{{"at": {now}}}'.encode())

    assert deny.is_revoked(session, user, int(now) - 10)
    assert not deny.is_revoked(session, user, int(now) + 5)  # re-enabled later, signed in anew
