"""A route's `Call`: each service's stub sends the request's metadata and deadline with every RPC."""

import os
from typing import Any

from clientvault.attestation import HEADER, Attester, ContextCheck
from gateway.calls import Call, Methods, Services


class Recorder:
    """A channel that answers each RPC with what it was given."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def unary_unary(self, path: str, **_options: Any) -> Any:
        self.made.append(path)

        async def rpc(request: object, *, metadata: object, timeout: float) -> tuple[str, object, object, float]:  # noqa: ASYNC109 - grpc's signature
            return path, request, metadata, timeout

        return rpc


async def test_a_stub_sends_the_metadata_and_deadline_and_its_methods_are_made_once() -> None:
    channel = Recorder()
    services = Services(*(Methods(channel) for _ in range(4)))
    metadata = (("x-request-id", "r1"), ("authorization", "Bearer t"))
    first, second = Call(None, services, metadata, 2.5), Call(None, services, (), 1.0)

    answered = await first.vault.RevealCredential("request")

    assert answered == ("/clientvault.v1.Vault/RevealCredential", "request", metadata, 2.5)
    assert first.vault is first.vault
    assert await second.vault.RevealCredential("other") == ("/clientvault.v1.Vault/RevealCredential", "other", (), 1.0)
    assert channel.made.count("/clientvault.v1.Vault/RevealCredential") == 1  # per process, not per request


async def test_with_a_context_key_each_call_carries_an_attestation_the_service_believes() -> None:
    key = os.urandom(32)
    services = Services(*(Methods(Recorder(), Attester(name, key)) for name in ("auth", "clients", "vault", "audit")))
    metadata = (("x-request-id", "r1"), ("x-client-ip", "203.0.113.9"), ("authorization", "Bearer t"))

    path, _, sent, _ = await Call(None, services, metadata, 2.5).vault.RevealCredential("request")

    assert sent[:-1] == metadata
    assert sent[-1][0] == HEADER
    context, refused = ContextCheck("vault", key).context_of(path, dict(sent), "ipv4:10.0.0.1:5555")
    assert (refused, context.client_ip, context.attested) == (None, "203.0.113.9", True)
