"""A service calling another passes on what is left of its own caller's deadline (clientvault/rpc.py),
shown on a real gRPC server behind the real edge, as `serve` puts it there (each handler guarded as it is
registered); a call of ours without a token is refused there."""

from collections.abc import AsyncIterator

import grpc
import pytest

from clientvault import rpc
from clientvault.attestation import ContextCheck
from clientvault.revocation import DenyList
from clientvault.tokens import TokenVerifier
from clientvault.v1 import auth_pb2, auth_pb2_grpc


class Echo(auth_pb2_grpc.AuthServicer):
    """Answers a public RPC with the onward timeout it would give a call of its own (as the key id)."""

    async def GetPublicKeys(
        self, request: auth_pb2.GetPublicKeysRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.PublicKeys:
        return auth_pb2.PublicKeys(keys=[auth_pb2.PublicKey(kid=str(rpc.onward_timeout(60.0)))])


async def no_keys() -> dict[str, bytes]:
    raise AssertionError("a public RPC verifies no token")


@pytest.fixture
async def stub() -> AsyncIterator[auth_pb2_grpc.AuthStub]:
    verifier = TokenVerifier(issuer="t", audience="t", max_ttl_s=900, fetch_keys=no_keys, denylist=DenyList())  # type: ignore[arg-type]
    edge = rpc.Edge(verifier, ContextCheck("auth", None))
    server = grpc.aio.server()
    auth_pb2_grpc.add_AuthServicer_to_server(Echo(), rpc.GuardedServer(server, edge))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield auth_pb2_grpc.AuthStub(channel)
    await channel.close()
    await server.stop(grace=None)


async def onward(stub: auth_pb2_grpc.AuthStub, deadline_s: float | None) -> float:
    reply = await stub.GetPublicKeys(auth_pb2.GetPublicKeysRequest(), timeout=deadline_s)
    return float(reply.keys[0].kid)


async def test_an_onward_call_gets_what_is_left_of_the_callers_deadline(stub: auth_pb2_grpc.AuthStub) -> None:
    # About the caller's 30 s (less the time the call took to arrive, plus gRPC rounding the timeout up on
    # the wire), far from the onward call's own 60 s.
    assert 20.0 < await onward(stub, deadline_s=30.0) < 31.0


async def test_without_a_deadline_the_onward_call_gets_its_own_limit(stub: auth_pb2_grpc.AuthStub) -> None:
    assert await onward(stub, deadline_s=None) == 60.0


async def test_a_call_that_needs_a_token_is_refused_without_one(stub: auth_pb2_grpc.AuthStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetMe(auth_pb2.GetMeRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # the edge's answer, not the servicer's
