"""A credential's sealed fields (TOTP seed, notes) are bound to their field: a ciphertext moved from one field
to another, or to the secret's column, or to another credential, does not open."""

import uuid

import pytest

from services.vault.crypto import Undecryptable, new_dek, open_sealed, seal


def test_a_field_opens_only_as_itself_for_its_own_credential() -> None:
    dek, client_id, credential_id = new_dek(), uuid.uuid4(), uuid.uuid4()
    ciphertext, nonce = seal(dek, client_id, credential_id, "JBSWY3DPEHPK3PXP", field="totp")

    assert open_sealed(dek, client_id, credential_id, ciphertext, nonce, field="totp") == "JBSWY3DPEHPK3PXP"
    for field in (None, "notes"):
        with pytest.raises(Undecryptable):
            open_sealed(dek, client_id, credential_id, ciphertext, nonce, field=field)
    with pytest.raises(Undecryptable):
        open_sealed(dek, client_id, uuid.uuid4(), ciphertext, nonce, field="totp")


def test_a_secret_does_not_open_as_a_field() -> None:
    dek, client_id, credential_id = new_dek(), uuid.uuid4(), uuid.uuid4()
    ciphertext, nonce = seal(dek, client_id, credential_id, "hunter2")

    with pytest.raises(Undecryptable):
        open_sealed(dek, client_id, credential_id, ciphertext, nonce, field="totp")
