"""The auth service's gRPC transport: proto in, domain call, proto out. Errors are mapped by the edge."""

from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clientvault import rpc
from clientvault.convert import enum_name, timestamp
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
from services.auth.factors import Factors
from services.auth.mfa import Sealer
from services.auth.security_events import Actor
from services.auth.sessions import MfaChallenge, SessionInfo, Sessions, TokenPair
from services.auth.signing import TokenSigner, load_previous_keys, load_private_key
from services.auth.users import User

log = get_logger(__name__)

AUTH = pb.DESCRIPTOR.services_by_name["Auth"]
PRODUCER = "auth"  # of its security events (clientvault/events.py PRODUCER_OF)
MIGRATIONS = Path(__file__).with_name("migrations")  # the schema is at their head before it serves
ROLE_TO_PROTO = {
    Role.ADMIN: pb.ROLE_ADMIN,
    Role.MANAGER: pb.ROLE_MANAGER,
    Role.READ_ONLY: pb.ROLE_READ_ONLY,
    Role.ROTATION_TASKS: pb.ROLE_ROTATION_TASKS,
}
MAX_EMAIL = 320
MAX_TOKEN = 512
MAX_PASSWORD = 1024
MAX_CODE = 64  # a TOTP code is 6 digits, a recovery code 19 characters
DEFAULT_PAGE_SIZE = 20


def user_to_proto(user: User) -> pb.User:
    return pb.User(
        id=str(user.id),
        email=user.email,
        full_name=user.full_name,
        role=ROLE_TO_PROTO[user.role],
        created_at=timestamp(user.created_at),
        disabled=user.disabled_at is not None,
        mfa_enabled=user.mfa_enabled,
        password_change_required=user.password_change_required,
    )


def pair_to_proto(pair: TokenPair) -> pb.TokenPair:
    return pb.TokenPair(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


def role_of(number: int) -> str:
    """A proto role as the domain's name; the unspecified zero (or an unknown number) is refused by the domain."""
    return enum_name(pb.Role.DESCRIPTOR, number) or ""


def _bounded(value: str, name: str, limit: int = MAX_PASSWORD) -> str:
    if len(value) > limit:
        raise Invalid(f"{name} is too long", name)
    return value


class AuthServicer(auth_pb2_grpc.AuthServicer):
    def __init__(
        self, db: Database, sessions: Sessions, signer: TokenSigner, factors: Factors, revoker: Revoker
    ) -> None:
        self._db = db
        self._sessions = sessions
        self._signer = signer
        self._factors = factors
        self._revoker = revoker

    async def SignIn(self, request: pb.SignInRequest, context: grpc.aio.ServicerContext) -> pb.SignInResponse:
        if len(request.email) > MAX_EMAIL or len(request.password) > MAX_PASSWORD:
            raise Invalid("email or password is too long")
        result = await self._sessions.sign_in(request.email, request.password, rpc.current_request())
        if isinstance(result, MfaChallenge):
            return pb.SignInResponse(mfa=pb.MfaChallenge(mfa_token=result.mfa_token, methods=result.methods))
        return pb.SignInResponse(tokens=pair_to_proto(result))

    async def CompleteMfa(self, request: pb.CompleteMfaRequest, context: grpc.aio.ServicerContext) -> pb.TokenPair:
        if not request.mfa_token or len(request.mfa_token) > MAX_TOKEN:
            raise Unauthenticated("invalid or expired mfa token; sign in again")
        code = _bounded(request.code, "code", MAX_CODE)
        return pair_to_proto(await self._sessions.complete_mfa(request.mfa_token, code, rpc.current_request()))

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
        page, page_size = request.page or 1, request.page_size or DEFAULT_PAGE_SIZE
        role = Role(role_of(request.role)) if request.role else None
        disabled = request.disabled if request.HasField("disabled") else None
        found, total = await users.find_users(
            self._db, term=request.q, role=role, disabled=disabled, page=page, page_size=page_size
        )
        items = [user_to_proto(user) for user in found]
        return pb.ListUsersResponse(items=items, total=total, page=page, page_size=page_size)

    async def CreateUser(
        self, request: pb.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateUserResponse:
        password = _bounded(request.password, "password") if request.HasField("password") else None
        user, temporary = await users.create_user(
            self._db,
            email=_bounded(request.email, "email", MAX_EMAIL),
            full_name=request.full_name,
            role=role_of(request.role),
            password=password,
            actor=Actor.of(rpc.current_caller()),
            context=rpc.current_request(),
        )
        return pb.CreateUserResponse(user=user_to_proto(user), temporary_password=temporary)

    async def GetUser(self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext) -> pb.User:
        return user_to_proto(await users.get_user(self._db, parse_id(request.user_id, "user")))

    async def UpdateUser(self, request: pb.UpdateUserRequest, context: grpc.aio.ServicerContext) -> pb.User:
        user = await users.update_user(
            self._db,
            self._revoker,
            parse_id(request.user_id, "user"),
            full_name=request.full_name if request.HasField("full_name") else None,
            role=role_of(request.role) if request.HasField("role") else None,
            disabled=request.disabled if request.HasField("disabled") else None,
            actor=Actor.of(rpc.current_caller()),
            context=rpc.current_request(),
        )
        return user_to_proto(user)

    async def ResetPassword(
        self, request: pb.ResetPasswordRequest, context: grpc.aio.ServicerContext
    ) -> pb.TemporaryPassword:
        temporary = await users.reset_password(
            self._db,
            self._revoker,
            parse_id(request.user_id, "user"),
            actor=Actor.of(rpc.current_caller()),
            context=rpc.current_request(),
        )
        return pb.TemporaryPassword(temporary_password=temporary)

    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChangePasswordResponse:
        current = _bounded(request.current_password, "current_password")
        new = _bounded(request.new_password, "new_password")
        await self._sessions.change_password(rpc.current_caller(), current, new, rpc.current_request())
        return pb.ChangePasswordResponse()

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSessionsResponse:
        found = await self._sessions.list_sessions(rpc.current_caller())
        return pb.ListSessionsResponse(sessions=[session_to_proto(item) for item in found])

    async def RevokeSession(
        self, request: pb.RevokeSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeSessionResponse:
        session_id = parse_id(request.session_id, "session")
        await self._sessions.revoke_session(rpc.current_caller(), session_id, rpc.current_request())
        return pb.RevokeSessionResponse()

    async def RevokeUserSessions(
        self, request: pb.RevokeUserSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeUserSessionsResponse:
        user_id = parse_id(request.user_id, "user")
        await self._sessions.revoke_user_sessions(rpc.current_caller(), user_id, rpc.current_request())
        return pb.RevokeUserSessionsResponse()

    async def StartTotp(self, request: pb.StartTotpRequest, context: grpc.aio.ServicerContext) -> pb.TotpEnrolment:
        enrolment = await self._factors.start_totp(rpc.current_caller().user_id)
        return pb.TotpEnrolment(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)

    async def ConfirmTotp(self, request: pb.ConfirmTotpRequest, context: grpc.aio.ServicerContext) -> pb.RecoveryCodes:
        code = _bounded(request.code, "code", MAX_CODE)
        codes = await self._factors.confirm_totp(rpc.current_caller(), code, rpc.current_request())
        return pb.RecoveryCodes(codes=codes)

    async def DisableMfa(
        self, request: pb.DisableMfaRequest, context: grpc.aio.ServicerContext
    ) -> pb.DisableMfaResponse:
        password, code = _bounded(request.password, "password"), _bounded(request.code, "code", MAX_CODE)
        await self._sessions.disable_mfa(rpc.current_caller(), password, code, rpc.current_request())
        return pb.DisableMfaResponse()

    async def ResetMfa(self, request: pb.ResetMfaRequest, context: grpc.aio.ServicerContext) -> pb.ResetMfaResponse:
        user_id = parse_id(request.user_id, "user")
        await self._factors.reset(user_id, actor=Actor.of(rpc.current_caller()), context=rpc.current_request())
        return pb.ResetMfaResponse()


def session_to_proto(item: SessionInfo) -> pb.Session:
    return pb.Session(
        id=str(item.id),
        created_at=timestamp(item.created_at),
        last_used_at=timestamp(item.last_used_at),
        ip=item.ip,
        user_agent=item.user_agent,
        current=item.current,
    )


async def main(settings: AuthSettings) -> None:
    signer = TokenSigner(
        load_private_key(settings.token_signing_key),
        kid=settings.token_key_id,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        ttl_s=settings.access_token_ttl_s,
        previous=load_previous_keys(settings.token_previous_keys, settings.token_key_id),
    )
    sealer = Sealer(settings.mfa_key)
    if settings.mfa_key is None:
        log.warning("mfa.not_configured", detail="CLIENTVAULT_MFA_KEY is not set: users cannot enrol MFA")

    async def own_keys() -> dict[str, Ed25519PublicKey]:
        return signer.public_keys()

    event_signer = EventSigner.from_setting(PRODUCER, settings.event_signing_key)
    async with Service("auth", settings, MIGRATIONS) as service:
        service.verify_with(own_keys)  # auth verifies with its own keys, not by asking itself
        revoker = Revoker(settings.require_nats_url())
        service.on_close(revoker.close)
        relay = Relay.of(service.db, store.outbox, event_signer, settings)
        service.on_close(relay.close)
        factors = Factors(service.db, sealer, relay.wake)
        sessions = Sessions(service.db, signer, revoker, settings, factors, relay.wake)
        servicer = AuthServicer(service.db, sessions, signer, factors, revoker)
        await service.serve(
            auth_pb2_grpc.add_AuthServicer_to_server,
            servicer,
            AUTH,
            sessions.purge_forever(),
            relay.run(),
            relay.purge_forever(),
        )
