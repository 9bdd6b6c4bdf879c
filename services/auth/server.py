"""The auth service's gRPC transport: proto in, domain call, proto out. Errors are mapped by the edge."""

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clientvault import rpc
from clientvault.convert import timestamp
from clientvault.db import Database
from clientvault.errors import Invalid, NotFound, Unauthenticated
from clientvault.events import EventSigner
from clientvault.ids import parse_id
from clientvault.logging import get_logger
from clientvault.outbox import Relay
from clientvault.policy import Role
from clientvault.revocation import Revoker
from clientvault.service import Service
from clientvault.settings import AuthSettings
from clientvault.v1 import auth_pb2 as pb
from clientvault.v1 import auth_pb2_grpc
from services.auth import store, users
from services.auth.sessions import Sessions, TokenPair
from services.auth.signing import TokenSigner, load_previous_keys, load_private_key
from services.auth.users import User

log = get_logger(__name__)

AUTH = pb.DESCRIPTOR.services_by_name["Auth"]
PRODUCER = "auth"  # of its security events (clientvault/events.py PRODUCER_OF)
ROLE_TO_PROTO = {Role.ADMIN: pb.ROLE_ADMIN, Role.MANAGER: pb.ROLE_MANAGER, Role.READ_ONLY: pb.ROLE_READ_ONLY}
MAX_EMAIL = 320
MAX_TOKEN = 512


def user_to_proto(user: User) -> pb.User:
    return pb.User(
        id=str(user.id),
        email=user.email,
        full_name=user.full_name,
        role=ROLE_TO_PROTO[user.role],
        created_at=timestamp(user.created_at),
        disabled=user.disabled_at is not None,
    )


def pair_to_proto(pair: TokenPair) -> pb.TokenPair:
    return pb.TokenPair(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


class AuthServicer(auth_pb2_grpc.AuthServicer):
    def __init__(self, db: Database, sessions: Sessions, signer: TokenSigner) -> None:
        self._db = db
        self._sessions = sessions
        self._signer = signer

    async def SignIn(self, request: pb.SignInRequest, context: grpc.aio.ServicerContext) -> pb.TokenPair:
        if len(request.email) > MAX_EMAIL or len(request.password) > 1024:
            raise Invalid("email or password is too long")
        pair = await self._sessions.sign_in(request.email, request.password, rpc.current_request())
        return pair_to_proto(pair)

    async def Refresh(self, request: pb.RefreshRequest, context: grpc.aio.ServicerContext) -> pb.TokenPair:
        if not request.refresh_token or len(request.refresh_token) > MAX_TOKEN:
            raise Unauthenticated("invalid refresh token")
        return pair_to_proto(await self._sessions.refresh(request.refresh_token, rpc.current_request()))

    async def SignOut(self, request: pb.SignOutRequest, context: grpc.aio.ServicerContext) -> pb.SignOutResponse:
        await self._sessions.sign_out(rpc.current_caller(), rpc.current_request())
        return pb.SignOutResponse()

    async def GetMe(self, request: pb.GetMeRequest, context: grpc.aio.ServicerContext) -> pb.User:
        user = await users.get_user(self._db, rpc.current_caller().user_id)
        if user.disabled_at is not None:
            raise Unauthenticated("the account is disabled")
        return user_to_proto(user)

    async def GetPublicKeys(self, request: pb.GetPublicKeysRequest, context: grpc.aio.ServicerContext) -> pb.PublicKeys:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        keys = [
            pb.PublicKey(kid=kid, ed25519=key.public_bytes(Encoding.Raw, PublicFormat.Raw))
            for kid, key in self._signer.public_keys().items()
        ]
        return pb.PublicKeys(keys=keys)

    async def GetUsers(self, request: pb.GetUsersRequest, context: grpc.aio.ServicerContext) -> pb.GetUsersResponse:
        if len(request.ids) > 100:
            raise Invalid("ask for at most 100 users at once")
        ids = []
        for text in request.ids:
            try:
                ids.append(parse_id(text, "user"))
            except NotFound:
                continue
        found = await users.get_users(self._db, ids) if ids else []
        return pb.GetUsersResponse(users=[user_to_proto(user) for user in found])

    async def ListUsers(self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext) -> pb.ListUsersResponse:
        return pb.ListUsersResponse(users=[user_to_proto(user) for user in await users.list_users(self._db)])


async def main(settings: AuthSettings) -> None:
    signer = TokenSigner(
        load_private_key(settings.token_signing_key),
        kid=settings.token_key_id,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        ttl_s=settings.access_token_ttl_s,
        previous=load_previous_keys(settings.token_previous_keys, settings.token_key_id),
    )

    async def own_keys() -> dict[str, Ed25519PublicKey]:
        return signer.public_keys()

    event_signer = EventSigner.from_setting(PRODUCER, settings.event_signing_key)
    async with Service("auth", settings) as service:
        service.verify_with(own_keys)  # auth verifies with its own keys, not by asking itself
        revoker = Revoker(settings.require_nats_url())
        service.on_close(revoker.close)
        relay = Relay.of(service.db, store.outbox, event_signer, settings)
        service.on_close(relay.close)
        sessions = Sessions(service.db, signer, revoker, settings, relay.wake)
        servicer = AuthServicer(service.db, sessions, signer)
        await service.serve(
            auth_pb2_grpc.add_AuthServicer_to_server,
            servicer,
            AUTH,
            sessions.purge_forever(),
            relay.run(),
            relay.purge_forever(),
        )
