"""A secret's life in the vault on its own (with this tier's clients service): when the secret changed, its
old versions, the trash and its purge, who revealed what, and the crypto-shred of a client."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from clientvault.convert import from_timestamp, timestamp
from clientvault.v1 import clients_pb2, vault_pb2
from tests.service.conftest import Service
from tests.service.test_vault import new_credential

if TYPE_CHECKING:
    from services.auth.users import User
    from services.vault.credentials import Credentials


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


async def outbox(vault: Service, credential_id: str) -> list[tuple[str, str, dict[str, object]]]:
    """(action, label, detail) of the credential's audit events, oldest first."""
    rows = await vault.sql(
        "SELECT action, credential_label, detail FROM vault.outbox WHERE credential_id = %s ORDER BY occurred_at",
        uuid.UUID(credential_id),
    )
    return [(str(action), str(label), json.loads(detail) if detail else {}) for action, label, detail in rows]


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
        ("credential_version_reveal", "Firewall", {"version": 3}),
        ("credential_version_reveal", "Firewall", {"version": 2}),
        ("credential_version_reveal", "Firewall", {"version": 1}),
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
    assert (await outbox(vault, credential_id))[-3] == ("credential_update", "VPN", {"restored_version": 1})


async def test_an_unknown_version_reveals_nothing_and_writes_no_event(vault: Service, clients: Service) -> None:
    client_id, credential_id = await new_credential(vault, clients, "only-one")

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await reveal(vault, client_id, credential_id, 1)

    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    assert [action for action, *_ in await outbox(vault, credential_id)] == ["credential_create"]


async def test_only_the_newest_versions_are_kept(vault: Service, clients: Service) -> None:
    client_id, credential_id = await new_credential(vault, clients, "s0")
    for n in range(1, 13):
        await update(vault, client_id, credential_id, secret=f"s{n}")

    kept = await vault.sql(
        "SELECT version FROM vault.credential_versions WHERE credential_id = %s ORDER BY version",
        uuid.UUID(credential_id),
    )

    assert [v for (v,) in kept] == list(range(3, 13))  # the default 10: versions 1 and 2 are gone


async def delete(vault: Service, client_id: str, credential_id: str) -> None:
    await vault.stub.DeleteCredential(
        vault_pb2.DeleteCredentialRequest(client_id=client_id, credential_id=credential_id),
        metadata=vault.tokens.metadata("admin"),
    )


async def trash(vault: Service, client_id: str) -> dict[str, vault_pb2.Credential]:
    reply = await vault.stub.ListDeletedCredentials(
        vault_pb2.ListCredentialsRequest(client_id=client_id), metadata=vault.tokens.metadata("admin")
    )
    return {item.id: item for item in reply.items}


async def test_a_deleted_credential_disappears_and_an_admin_restores_it(vault: Service, clients: Service) -> None:
    client_id, credential_id = await new_credential(vault, clients, "in-the-bin", label="NAS")
    await delete(vault, client_id, credential_id)

    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await reveal(vault, client_id, credential_id)
    assert gone.value.code() is grpc.StatusCode.NOT_FOUND
    assert credential_id not in await listed(vault, client_id)
    assert trash_entry_is_dated(await trash(vault, client_id), credential_id)
    with pytest.raises(grpc.aio.AioRpcError) as manager_refused:
        await vault.stub.RestoreCredential(
            vault_pb2.RestoreCredentialRequest(client_id=client_id, credential_id=credential_id),
            metadata=vault.tokens.metadata("manager"),
        )
    assert manager_refused.value.code() is grpc.StatusCode.PERMISSION_DENIED

    restored = await vault.stub.RestoreCredential(
        vault_pb2.RestoreCredentialRequest(client_id=client_id, credential_id=credential_id),
        metadata=vault.tokens.metadata("admin"),
    )

    assert not restored.HasField("deleted_at")
    assert await reveal(vault, client_id, credential_id) == "in-the-bin"
    assert credential_id in await listed(vault, client_id)
    assert credential_id not in await trash(vault, client_id)
    actions = [action for action, *_ in await outbox(vault, credential_id)]
    assert actions == ["credential_create", "credential_delete", "credential_restore", "credential_reveal"]


def trash_entry_is_dated(found: dict[str, vault_pb2.Credential], credential_id: str) -> bool:
    return credential_id in found and found[credential_id].HasField("deleted_at")


def trash_keeper(vault: Service) -> "Credentials":
    """The vault's domain on the tier's database, for its purge (which needs no key)."""
    from clientvault.settings import VaultSettings
    from services.vault.credentials import Credentials
    from services.vault.crypto import DataKeys
    from services.vault.keys import EnvKeys
    from services.vault.limits import RevealLimiter

    keys = DataKeys(EnvKeys({"v1": bytearray(32)}, "v1"), 0)
    return Credentials(vault.db, keys, lambda: None, RevealLimiter(vault.db, VaultSettings()))


async def test_the_vault_purges_the_trash_after_the_retention_with_the_versions(
    vault: Service, clients: Service
) -> None:
    client_id, credential_id = await new_credential(vault, clients, "v1", label="Old printer")
    await update(vault, client_id, credential_id, secret="v2")
    await delete(vault, client_id, credential_id)
    keeper = trash_keeper(vault)

    assert await keeper.purge_trash(timedelta(days=30)) == 0  # deleted just now: kept
    assert credential_id in await trash(vault, client_id)
    purging = asyncio.create_task(keeper.purge_trash_forever(timedelta(0), every_s=0.05))  # retention made short
    try:
        for _ in range(200):
            if credential_id not in await trash(vault, client_id):
                break
            await asyncio.sleep(0.05)
    finally:
        purging.cancel()

    key = uuid.UUID(credential_id)
    assert await vault.sql("SELECT 1 FROM vault.credentials WHERE id = %s", key) == []
    assert await vault.sql("SELECT 1 FROM vault.credential_versions WHERE credential_id = %s", key) == []
    purges = await vault.sql(
        "SELECT user_id, user_email, user_full_name, credential_label, client_id FROM vault.outbox "
        "WHERE credential_id = %s AND action = 'credential_purge'",
        key,
    )
    # No user acted: no user id and no email, the vault's purge named as the actor (as auth names an operator).
    assert purges == [(None, "", "vault (trash purge)", "Old printer", uuid.UUID(client_id))]
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await vault.stub.RestoreCredential(
            vault_pb2.RestoreCredentialRequest(client_id=client_id, credential_id=credential_id),
            metadata=vault.tokens.metadata("admin"),
        )
    assert gone.value.code() is grpc.StatusCode.NOT_FOUND


async def exposure_of(vault: Service, user_id: uuid.UUID, since: datetime | None = None) -> dict[str, tuple[str, int]]:
    """The user's exposure report as {credential id: (label, reveal count)}."""
    request = vault_pb2.GetExposureReportRequest(user_id=str(user_id), page_size=100)
    if since is not None:
        request.since.CopyFrom(timestamp(since))
    reply = await vault.stub.GetExposureReport(request, metadata=vault.tokens.metadata("admin"))
    assert reply.total == len(reply.items)
    return {item.credential_id: (item.label, item.reveal_count) for item in reply.items}


async def test_the_exposure_report_lists_what_the_user_saw_and_nobody_rotated(vault: Service, clients: Service) -> None:
    leaver, colleague = vault.tokens.user("manager"), vault.tokens.user("manager")
    made = [
        await new_credential(vault, clients, secret, label=label)
        for secret, label in [("a", "Seen twice"), ("b", "Rotated after"), ("c", "Only an old version"), ("d", "Other")]
    ]
    (client_id, seen_twice), rotated_after, only_old_version, colleagues = made
    await update(vault, *only_old_version, secret="c2")

    async def reveal_as(user: "User", credential: tuple[str, str], version: int | None = None) -> None:
        metadata = vault.tokens.metadata(user)
        if version is None:
            request = vault_pb2.RevealCredentialRequest(client_id=credential[0], credential_id=credential[1])
            await vault.stub.RevealCredential(request, metadata=metadata)
        else:
            request_v = vault_pb2.RevealCredentialVersionRequest(
                client_id=credential[0], credential_id=credential[1], version=version
            )
            await vault.stub.RevealCredentialVersion(request_v, metadata=metadata)

    await reveal_as(leaver, made[0])
    await reveal_as(leaver, made[0])
    await reveal_as(leaver, rotated_after)
    await reveal_as(leaver, only_old_version, version=1)  # an old secret: not the one to rotate
    await reveal_as(colleague, colleagues)
    await update(vault, *rotated_after, secret="b2")

    assert await exposure_of(vault, leaver.id) == {seen_twice: ("Seen twice", 2)}
    assert await exposure_of(vault, colleague.id) == {colleagues[1]: ("Other", 1)}
    assert await exposure_of(vault, leaver.id, since=datetime.now(UTC) + timedelta(minutes=1)) == {}

    await update(vault, client_id, seen_twice, label="Seen twice, relabelled")  # a label edit rotates nothing
    assert await exposure_of(vault, leaver.id) == {seen_twice: ("Seen twice, relabelled", 2)}
    await update(vault, client_id, seen_twice, secret="a2")  # once rotated, it drops out
    assert await exposure_of(vault, leaver.id) == {}


async def vault_bytes(vault: Service) -> set[bytes]:
    """Every bytea value in every table of schema vault, read straight from the tables."""
    columns = await vault.sql(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'vault' AND data_type = 'bytea'"
    )
    found: set[bytes] = set()
    for table, column in columns:
        found |= {bytes(value) for (value,) in await vault.sql(f'SELECT "{column}" FROM vault."{table}"')}  # noqa: S608
    return found


def gone(error: grpc.aio.AioRpcError) -> bool:
    trailers = {key: value for key, value in error.trailing_metadata() or ()}
    return error.code() is grpc.StatusCode.NOT_FOUND and trailers.get("gone") == "true"


async def test_a_shred_leaves_no_byte_of_the_clients_secrets_and_keys_and_spares_the_others(
    vault: Service, clients: Service
) -> None:
    admin = clients.tokens.metadata("admin")
    name = f"Leaving customer {uuid.uuid4()}"
    doomed = await clients.stub.CreateClient(
        clients_pb2.CreateClientRequest(client=clients_pb2.ClientFields(name=name)), metadata=admin
    )
    ids = []
    for label in ("Router", "Mail", "Binned"):
        made = await vault.stub.CreateCredential(
            vault_pb2.CreateCredentialRequest(
                client_id=doomed.id, credential=vault_pb2.CredentialFields(label=label, secret=f"{label}-1")
            ),
            metadata=admin,
        )
        ids.append(made.id)
    await update(vault, doomed.id, ids[0], secret="Router-2")
    await update(vault, doomed.id, ids[0], secret="Router-3")
    await reveal(vault, doomed.id, ids[1])
    await delete(vault, doomed.id, ids[2])
    other_client, other = await new_credential(vault, clients, "still-here")
    sealed = {
        bytes(value)
        for (value,) in await vault.sql(
            "SELECT ciphertext FROM vault.credentials WHERE client_id = %s "
            "UNION ALL SELECT ciphertext FROM vault.credential_versions WHERE client_id = %s "
            "UNION ALL SELECT wrapped_key FROM vault.client_keys WHERE client_id = %s",
            uuid.UUID(doomed.id),
            uuid.UUID(doomed.id),
            uuid.UUID(doomed.id),
        )
    }
    assert len(sealed) == 3 + 2 + 1  # three secrets, two old versions, one data key

    shred = vault_pb2.ShredClientRequest(client_id=doomed.id, confirm_name=name)
    with pytest.raises(grpc.aio.AioRpcError) as live:
        await vault.stub.ShredClient(shred, metadata=admin)
    assert live.value.code() is grpc.StatusCode.FAILED_PRECONDITION  # not archived yet
    await clients.stub.ArchiveClient(clients_pb2.ArchiveClientRequest(client_id=doomed.id), metadata=admin)
    with pytest.raises(grpc.aio.AioRpcError) as misnamed:
        await vault.stub.ShredClient(
            vault_pb2.ShredClientRequest(client_id=doomed.id, confirm_name=name.upper()), metadata=admin
        )
    assert misnamed.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert sealed <= await vault_bytes(vault)  # the refusals destroyed nothing

    done = await vault.stub.ShredClient(shred, metadata=admin)

    assert (done.credentials, done.versions, done.data_keys) == (3, 2, 1)
    assert not sealed & await vault_bytes(vault)
    for table in ("credentials", "credential_versions", "client_keys", "reveals"):
        assert await vault.sql(f"SELECT 1 FROM vault.{table} WHERE client_id = %s", uuid.UUID(doomed.id)) == []  # noqa: S608
    for credential_id in ids:
        with pytest.raises(grpc.aio.AioRpcError) as revealed:
            await reveal(vault, doomed.id, credential_id)
        assert gone(revealed.value)
    with pytest.raises(grpc.aio.AioRpcError) as listing:
        await listed(vault, doomed.id)
    assert gone(listing.value)
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await vault.stub.ShredClient(shred, metadata=admin)
    assert gone(again.value)
    assert await reveal(vault, other_client, other) == "still-here"
    erasure = await vault.sql(
        "SELECT credential_id, credential_label, detail FROM vault.outbox "
        "WHERE client_id = %s AND action = 'client_shredded'",
        uuid.UUID(doomed.id),
    )
    assert [(credential, label, json.loads(detail)) for credential, label, detail in erasure] == [
        (None, "", {"credentials": 3, "versions": 2, "data_keys": 1, "generations": [1]})
    ]
