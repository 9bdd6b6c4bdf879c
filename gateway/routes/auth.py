"""Sign-in, refresh, sign-out and the caller's profile: validate, call auth, shape the reply."""

from fastapi import APIRouter, Response

from clientvault.v1 import auth_pb2 as pb
from gateway.calls import Call, operation
from gateway.schemas import RefreshIn, SignInIn, TokenPairOut, UserOut

router = APIRouter(tags=["auth"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@operation(
    router.post,
    "/auth/sign-in",
    "Auth/SignIn",
    errors=(401, 422, 429),
    summary="Exchange email and password for a token pair",
    description="Throttled per email and per IP (429 with Retry-After).",
)
async def sign_in(body: SignInIn, response: Response, call: Call) -> TokenPairOut:
    pair = await call.auth.SignIn(pb.SignInRequest(email=body.email, password=body.password))
    response.headers.update(NO_STORE)
    return TokenPairOut.from_proto(pair)


@operation(
    router.post,
    "/auth/refresh",
    "Auth/Refresh",
    errors=(401, 422),
    summary="Rotate a refresh token for a new token pair",
    description="The refresh token in the body is the credential; reusing a rotated one revokes its session.",
)
async def refresh(body: RefreshIn, response: Response, call: Call) -> TokenPairOut:
    pair = await call.auth.Refresh(pb.RefreshRequest(refresh_token=body.refresh_token))
    response.headers.update(NO_STORE)
    return TokenPairOut.from_proto(pair)


@operation(
    router.post,
    "/auth/sign-out",
    "Auth/SignOut",
    status_code=204,
    summary="Revoke the caller's session",
    description="Idempotent.",
)
async def sign_out(call: Call) -> Response:
    await call.auth.SignOut(pb.SignOutRequest())
    return Response(status_code=204)


@operation(router.get, "/users/me", "Auth/GetMe", summary="The caller's profile")
async def get_me(call: Call) -> UserOut:
    return UserOut.from_proto(await call.auth.GetMe(pb.GetMeRequest()))
