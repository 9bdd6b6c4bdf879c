"""A secret's life in the vault on its own (with this tier's clients service): when the secret changed, its
old versions, the trash and its purge, who revealed what, and the crypto-shred of a client."""

import uuid

import grpc
import pytest
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


async def reveal(vault: Service, client_id: str, credential_id: str, version: int | None = None) -> str:
    metadata = vault.tokens.metadata("manager")
    if version is None:
        request = vault_pb2.RevealCredentialRequest(client_id=client_id, credential_id=credential_id)
        return str((await vault.stub.RevealCredential(request, metadata=metadata)).secret)
    request_v = vault_pb2.RevealCredentialVersionRequest(
        client_id=client_id, credential_id=credential_id, version=version
    )
    return str((await vault.stub.RevealCredentialVersion(request_v, metadata=metadata)).secret)


async def outbox(vault: Service, credential_id: str) -> list[tuple[str, str]]:
    """(action, label) of the credential's audit events, oldest first."""
    rows = await vault.sql(
        "SELECT action, credential_label FROM vault.outbox WHERE credential_id = %s ORDER BY occurred_at",
        uuid.UUID(credential_id),
    )
    return [(str(action), str(label)) for action, label in rows]


async def test_three_updates_leave_three_versions_each_revealed_under_audit(vault: Service, clients: Service) -> None:
    client_id, credential_id = await new_credential(vault, clients, "v1-secret", label="Firewall")
    setters = []
    for n in (2, 3, 4):
        setter = vault.tokens.user("manager")
        setters.append(setter)
        await vault.stub.UpdateCredential(
            vault_pb2.UpdateCredentialRequest(
                client_id=client_id,
                credential_id=credential_id,
                credential=vault_pb2.CredentialFields(secret=f"v{n}-secret"),
                update_mask=FieldMask(paths=["secret"]),
            ),
            metadata=vault.tokens.metadata(setter),
        )

    versions = await vault.stub.ListCredentialVersions(
        vault_pb2.ListCredentialVersionsRequest(client_id=client_id, credential_id=credential_id),
        metadata=vault.tokens.metadata("manager"),
    )
    revealed = {v.version: await reveal(vault, client_id, credential_id, v.version) for v in versions.items}

    assert [v.version for v in versions.items] == [3, 2, 1]
    assert "secret" not in str(versions)  # metadata only: no field carries a secret
    assert revealed == {1: "v1-secret", 2: "v2-secret", 3: "v3-secret"}
    # Version 2 was set by the first update's user, version 3 by the second's.
    assert [v.created_by_user_id for v in versions.items[:2]] == [str(setters[1].id), str(setters[0].id)]
    assert await reveal(vault, client_id, credential_id) == "v4-secret"
    events = await outbox(vault, credential_id)
    assert [e for e in events if e[0] == "credential_version_reveal"] == [
        ("credential_version_reveal", "Firewall (version 3)"),
        ("credential_version_reveal", "Firewall (version 2)"),
        ("credential_version_reveal", "Firewall (version 1)"),
    ]


async def test_restoring_a_version_brings_back_the_old_secret_and_keeps_the_current_one(
    vault: Service, clients: Service
) -> None:
    client_id, credential_id = await new_credential(vault, clients, "original", label="VPN")
    await update(vault, client_id, credential_id, secret="leaked")

    restored = await vault.stub.RestoreCredentialVersion(
        vault_pb2.RestoreCredentialVersionRequest(client_id=client_id, credential_id=credential_id, version=1),
        metadata=vault.tokens.metadata("manager"),
    )
    versions = await vault.stub.ListCredentialVersions(
        vault_pb2.ListCredentialVersionsRequest(client_id=client_id, credential_id=credential_id),
        metadata=vault.tokens.metadata("manager"),
    )

    assert await reveal(vault, client_id, credential_id) == "original"
    assert [v.version for v in versions.items] == [2, 1]
    assert await reveal(vault, client_id, credential_id, 2) == "leaked"
    assert restored.secret_changed_at == restored.updated_at
    assert (await outbox(vault, credential_id))[-3] == ("credential_update", "VPN (version 1 restored)")


async def test_an_unknown_version_reveals_nothing_and_writes_no_event(vault: Service, clients: Service) -> None:
    client_id, credential_id = await new_credential(vault, clients, "only-one")

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await reveal(vault, client_id, credential_id, 1)

    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    assert [action for action, _ in await outbox(vault, credential_id)] == ["credential_create"]


async def test_only_the_newest_versions_are_kept(vault: Service, clients: Service) -> None:
    client_id, credential_id = await new_credential(vault, clients, "s0")
    for n in range(1, 13):
        await update(vault, client_id, credential_id, secret=f"s{n}")

    kept = await vault.sql(
        "SELECT version FROM vault.credential_versions WHERE credential_id = %s ORDER BY version",
        uuid.UUID(credential_id),
    )

    assert [v for (v,) in kept] == list(range(3, 13))  # the default 10: versions 1 and 2 are gone
