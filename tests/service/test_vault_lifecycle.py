"""A secret's life in the vault on its own (with this tier's clients service): when the secret changed, its
old versions, the trash and its purge, who revealed what, and the crypto-shred of a client."""

import uuid

from google.protobuf.field_mask_pb2 import FieldMask

from clientvault.convert import from_timestamp
from clientvault.v1 import vault_pb2
from tests.service.conftest import Service
from tests.service.test_vault import new_credential


async def update(vault: Service, client_id: str, credential_id: str, role: str = "admin", **fields: str) -> None:
    await vault.stub.UpdateCredential(
        vault_pb2.UpdateCredentialRequest(
            client_id=client_id,
            credential_id=credential_id,
            credential=vault_pb2.CredentialFields(**fields),
            update_mask=FieldMask(paths=sorted(fields)),
        ),
        metadata=vault.tokens.metadata(role),
    )


async def listed(vault: Service, client_id: str) -> dict[str, vault_pb2.Credential]:
    reply = await vault.stub.ListCredentials(
        vault_pb2.ListCredentialsRequest(client_id=client_id), metadata=vault.tokens.metadata("admin")
    )
    return {item.id: item for item in reply.items}


async def test_secret_changed_at_moves_with_the_secret_not_with_the_label(vault: Service, clients: Service) -> None:
    client_id, credential_id = await new_credential(vault, clients, "first")
    created = (await listed(vault, client_id))[credential_id]

    await update(vault, client_id, credential_id, label="Router, renamed")
    relabelled = (await listed(vault, client_id))[credential_id]
    await update(vault, client_id, credential_id, secret="second")
    rotated = (await listed(vault, client_id))[credential_id]

    assert from_timestamp(relabelled.updated_at) > from_timestamp(created.updated_at)
    assert relabelled.secret_changed_at == created.secret_changed_at
    assert from_timestamp(rotated.secret_changed_at) > from_timestamp(created.secret_changed_at)
    assert rotated.secret_changed_at == rotated.updated_at
    stored = await vault.sql("SELECT secret_changed_at FROM vault.credentials WHERE id = %s", uuid.UUID(credential_id))
    assert stored == [(from_timestamp(rotated.secret_changed_at),)]
