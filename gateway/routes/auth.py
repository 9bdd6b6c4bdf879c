"""Sign-in, refresh, sign-out and the caller's profile: validate, call auth, shape the reply."""

from fastapi import APIRouter, Response

from clientvault.v1 import auth_pb2 as pb
from gateway.calls import Call, StubsDep, requires, roles
from gateway.errors import documented
from gateway.schemas import RefreshIn, SignInIn, TokenPairOut, UserOut

router = APIRouter(tags=["auth"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.post(
    "/auth/sign-in",
    response_model=TokenPairOut,
    summary="Exchange email and password for a token pair",
    description=roles("Auth/SignIn") + " Throttled per email and per IP (429 with Retry-After).",
    responses=documented(401, 422, 429),
)
async def sign_in(
    body: SignInIn, response: Response, stubs: StubsDep, call: Call = requires("Auth/SignIn")
) -> TokenPairOut:
    pair = await stubs.auth.SignIn(
        pb.SignInRequest(email=body.email, password=body.password),
        metadata=call.metadata,
        timeout=call.timeout,
    )
    response.headers.update(NO_STORE)
    return TokenPairOut.from_proto(pair)


@router.post(
    "/auth/refresh",
    response_model=TokenPairOut,
    summary="Rotate a refresh token for a new token pair",
    description=roles("Auth/Refresh") + " The refresh token in the body is the credential; reusing a rotated "
    "one revokes its session.",
    responses=documented(401, 422),
)
async def refresh(
    body: RefreshIn, response: Response, stubs: StubsDep, call: Call = requires("Auth/Refresh")
) -> TokenPairOut:
    pair = await stubs.auth.Refresh(
        pb.RefreshRequest(refresh_token=body.refresh_token), metadata=call.metadata, timeout=call.timeout
    )
    response.headers.update(NO_STORE)
    return TokenPairOut.from_proto(pair)


@router.post(
    "/auth/sign-out",
    status_code=204,
    summary="Revoke the caller's session",
    description=roles("Auth/SignOut") + " Idempotent.",
    responses=documented(401),
)
async def sign_out(stubs: StubsDep, call: Call = requires("Auth/SignOut")) -> Response:
    await stubs.auth.SignOut(pb.SignOutRequest(), metadata=call.metadata, timeout=call.timeout)
    return Response(status_code=204)


@router.get(
    "/users/me",
    response_model=UserOut,
    summary="The caller's profile",
    description=roles("Auth/GetMe"),
    responses=documented(401),
)
async def me(stubs: StubsDep, call: Call = requires("Auth/GetMe")) -> UserOut:
    return UserOut.from_proto(await stubs.auth.GetMe(pb.GetMeRequest(), metadata=call.metadata, timeout=call.timeout))
