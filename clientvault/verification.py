"""The token verifier of a process: keys from auth over gRPC (or auth's own), deny list from NATS."""

import grpc

from clientvault.revocation import DenyList
from clientvault.settings import Settings
from clientvault.tokens import KeyFetcher, TokenVerifier, keys_from_auth
from clientvault.v1 import auth_pb2_grpc


def verifier_for(settings: Settings, auth_channel: grpc.aio.Channel) -> tuple[TokenVerifier, DenyList]:
    """A verifier and its deny list; the caller schedules `denylist.run(nats_url)` for the process's life."""
    return verifier_with(settings, keys_from_auth(auth_pb2_grpc.AuthStub(auth_channel), settings.rpc_timeout_s))


def verifier_with(settings: Settings, fetch_keys: KeyFetcher) -> tuple[TokenVerifier, DenyList]:
    """A verifier of the given keys and its deny list."""
    denylist = DenyList()
    verifier = TokenVerifier(
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        max_ttl_s=settings.access_token_ttl_s,
        fetch_keys=fetch_keys,
        denylist=denylist,
    )
    return verifier, denylist
