"""The vault on its own (with this tier's clients service): its policy on direct calls, and a reveal that
cannot write its audit event reveals nothing."""

import uuid

import grpc
import pytest

from clientvault.v1 import clients_pb2, vault_pb2
from tests.service.conftest import Service


async def new_credential(vault: Service, clients: Service, secret: str, label: str = "Router") -> tuple[str, str]:
    """A credential under a new client: (client id, credential id)."""
    admin = clients.tokens.metadata("admin")
    client = await clients.stub.CreateClient(
        clients_pb2.CreateClientRequest(client=clients_pb2.ClientFields(name=f"Acme {uuid.uuid4()}")), metadata=admin
    )
    made = await vault.stub.CreateCredential(
        vault_pb2.CreateCredentialRequest(
            client_id=client.id, credential=vault_pb2.CredentialFields(label=label, secret=secret)
        ),
        metadata=admin,
    )
    return client.id, made.id


async def test_the_vault_refuses_a_direct_reveal_without_the_role(vault: Service, clients: Service) -> None:
    client_id, credential_id = await new_credential(vault, clients, "direct-secret")
    request = vault_pb2.RevealCredentialRequest(client_id=client_id, credential_id=credential_id)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await vault.stub.RevealCredential(request, metadata=vault.tokens.metadata("read_only"), timeout=5)
    allowed = await vault.stub.RevealCredential(request, metadata=vault.tokens.metadata("manager"), timeout=5)

    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "direct-secret" not in (refused.value.details() or "")
    assert allowed.secret == "direct-secret"


async def test_a_reveal_writes_its_audit_event_with_the_callers_request(vault: Service, clients: Service) -> None:
    client_id, credential_id = await new_credential(vault, clients, "s3cret", label="Evented")
    manager = vault.tokens.user("manager")
    metadata = vault.vouched(
        "RevealCredential",
        vault.tokens.metadata(
            manager, x_request_id="req-reveal", x_client_ip="203.0.113.9", x_user_agent="vault-test/1.0"
        ),
    )

    await vault.stub.RevealCredential(
        vault_pb2.RevealCredentialRequest(client_id=client_id, credential_id=credential_id), metadata=metadata
    )

    rows = await vault.sql(
        "SELECT to_jsonb(o) FROM vault.outbox o WHERE credential_id = %s ORDER BY occurred_at", uuid.UUID(credential_id)
    )
    events = [row[0] for row in rows]
    assert [event["action"] for event in events] == ["credential_create", "credential_reveal"]
    # The actor as the token names them and the request as the gateway attests it (whatever the columns' names).
    caller = {str(manager.id), manager.email, manager.full_name}
    expected = caller | {"Evented", client_id, "203.0.113.9", "vault-test/1.0", "req-reveal"}
    assert expected <= set(events[1].values())


async def test_a_reveal_whose_audit_event_cannot_be_written_reveals_nothing(vault: Service, clients: Service) -> None:
    label = f"blocked-{uuid.uuid4().hex}"
    client_id, credential_id = await new_credential(vault, clients, "must-not-leak", label=label)
    request = vault_pb2.RevealCredentialRequest(client_id=client_id, credential_id=credential_id)
    constraint = f"test_block_{uuid.uuid4().hex[:12]}"
    await vault.sql(
        f"ALTER TABLE vault.outbox ADD CONSTRAINT {constraint} "
        f"CHECK (action <> 'credential_reveal' OR credential_label <> '{label}') NOT VALID"
    )
    try:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await vault.stub.RevealCredential(request, metadata=vault.tokens.metadata("admin"), timeout=5)
    finally:
        await vault.sql(f"ALTER TABLE vault.outbox DROP CONSTRAINT {constraint}")

    assert failed.value.code() is grpc.StatusCode.INTERNAL
    assert "must-not-leak" not in (failed.value.details() or "")
    stamped = await vault.sql("SELECT last_accessed_at FROM vault.credentials WHERE id = %s", uuid.UUID(credential_id))
    assert stamped == [(None,)]
    again = await vault.stub.RevealCredential(request, metadata=vault.tokens.metadata("admin"), timeout=5)
    assert again.secret == "must-not-leak"


async def test_a_direct_reveal_is_recorded_from_its_network_address_not_from_what_it_claims(
    vault: Service, clients: Service
) -> None:
    """Without the gateway's attestation (none, or one made for another RPC), the forged client IP, user agent
    and request id are not believed: the event records the caller's address and leaves the others empty."""
    client_id, credential_id = await new_credential(vault, clients, "s3cret", label="Forged")
    claims = vault.tokens.metadata(
        "manager", x_request_id="req-forged", x_client_ip="198.51.100.66", x_user_agent="forged/1.0"
    )
    request = vault_pb2.RevealCredentialRequest(client_id=client_id, credential_id=credential_id)

    for metadata in (claims, vault.vouched("ListCredentials", claims)):
        await vault.stub.RevealCredential(request, metadata=metadata, timeout=5)

    rows = await vault.sql(
        "SELECT to_jsonb(o) FROM vault.outbox o WHERE credential_id = %s AND action = 'credential_reveal'",
        uuid.UUID(credential_id),
    )
    assert len(rows) == 2
    for (event,) in rows:
        assert not {"198.51.100.66", "forged/1.0", "req-forged"} & set(event.values())
        assert (event["ip"], event["user_agent"], event["request_id"]) == ("127.0.0.1", "", "")
