"""Sign-in, refresh, sign-out and the caller's profile: validate, call auth, shape the reply."""

from typing import Any

from fastapi import APIRouter, Response

from clientvault.v1 import auth_pb2 as pb
from gateway.calls import Call, operation
from gateway.schemas import MfaChallengeOut, MfaIn, MfaMethod, RefreshIn, SignInIn, TokenPairOut, UserOut
from gateway.strict_json import StrictJsonRoute

router = APIRouter(tags=["auth"], route_class=StrictJsonRoute)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def not_stored(response: Response, pair: Any) -> TokenPairOut:
    """A token pair, answered with headers that keep it out of every cache."""
    response.headers.update(NO_STORE)
    return TokenPairOut.from_proto(pair)


@operation(router.post, "/auth/sign-in", "Auth/SignIn", errors=(401, 422, 429))
async def sign_in(body: SignInIn, response: Response, call: Call) -> TokenPairOut | MfaChallengeOut:
    """Exchange email and password for a token pair.

    A user with MFA gets `{mfaRequired: true, mfaToken, methods}` instead, to send with a code to
    POST /auth/mfa. Throttled per email and per IP (429 with Retry-After)."""
    reply = await call.auth.SignIn(pb.SignInRequest(email=body.email, password=body.password))
    if reply.HasField("mfa"):
        response.headers.update(NO_STORE)
        methods = [MfaMethod(method) for method in reply.mfa.methods]
        return MfaChallengeOut(mfa_token=reply.mfa.mfa_token, methods=methods)
    return not_stored(response, reply.tokens)


@operation(router.post, "/auth/mfa", "Auth/CompleteMfa", errors=(401, 422, 429))
async def complete_mfa(body: MfaIn, response: Response, call: Call) -> TokenPairOut:
    """Answer a sign-in's MFA challenge with a code for a token pair.

    `code` is a 6-digit TOTP code (each accepted once) or an unused recovery code. The mfaToken lives 5
    minutes and works once; a wrong code counts as a failed sign-in (429 with Retry-After past the limit)."""
    return not_stored(
        response, await call.auth.CompleteMfa(pb.CompleteMfaRequest(mfa_token=body.mfa_token, code=body.code))
    )


@operation(router.post, "/auth/refresh", "Auth/Refresh", errors=(401, 422))
async def refresh(body: RefreshIn, response: Response, call: Call) -> TokenPairOut:
    """Rotate a refresh token for a new token pair.

    The refresh token in the body is the credential; reusing a rotated one revokes its session."""
    return not_stored(response, await call.auth.Refresh(pb.RefreshRequest(refresh_token=body.refresh_token)))


@operation(router.post, "/auth/sign-out", "Auth/SignOut", status_code=204)
async def sign_out(call: Call) -> Response:
    """Revoke the caller's session.

    Idempotent."""
    await call.auth.SignOut(pb.SignOutRequest())
    return Response(status_code=204)


@operation(router.get, "/users/me", "Auth/GetMe")
async def get_me(call: Call) -> UserOut:
    """The caller's profile."""
    return UserOut.from_proto(await call.auth.GetMe(pb.GetMeRequest()))
