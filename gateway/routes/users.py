"""Staff accounts: the caller's own password, sessions and second factor, and an admin's users. Validate,
call auth, shape the reply. The caller's own routes (/users/me/...) are declared first, so that `me` is
never taken for a user id."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from clientvault import fields
from clientvault.policy import Role
from clientvault.v1 import auth_pb2 as pb
from gateway.calls import Call, operation
from gateway.routes.auth import NO_STORE
from gateway.schemas import (
    ROLE_TO_PROTO,
    AccountOut,
    CodeIn,
    CreatedUserOut,
    MfaOffIn,
    PasswordChangeIn,
    RecoveryCodesOut,
    SessionId,
    SessionOut,
    TemporaryPasswordOut,
    TotpEnrolmentOut,
    UserId,
    UserIn,
    UserPage,
    UserPatch,
)
from gateway.strict_json import StrictJsonRoute

router = APIRouter(prefix="/users", tags=["users"], route_class=StrictJsonRoute)
PageNumber = Annotated[int, Query(ge=1, le=fields.PAGE_MAX, description="1-based page number.")]
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=fields.PAGE_SIZE_MAX, description="Items per page.")]
Search = Annotated[
    str,
    Query(max_length=fields.SEARCH_MAX, json_schema_extra={"pattern": fields.NO_CONTROL}, description="Search term."),
]


@operation(router.post, "/me/password", "Auth/ChangePassword", status_code=204, errors=(422, 429))
async def change_password(body: PasswordChangeIn, call: Call) -> Response:
    """Change your own password.

    Ends every other session of yours. The one way out of a temporary password: its tokens may call only
    this and sign-out (403 `password change required` elsewhere); refresh afterwards for unrestricted
    tokens. 422 names the rule a new password breaks: 12 to 1024 characters, not the email, not easy to
    guess."""
    request = pb.ChangePasswordRequest(current_password=body.current_password, new_password=body.new_password)
    await call.auth.ChangePassword(request)
    return Response(status_code=204)


@operation(router.get, "/me/sessions", "Auth/ListSessions")
async def list_sessions(call: Call) -> list[SessionOut]:
    """Your live sessions, most recently used first (`current`: the one of this token)."""
    reply = await call.auth.ListSessions(pb.ListSessionsRequest())
    return [SessionOut.from_proto(item) for item in reply.sessions]


@operation(router.delete, "/me/sessions/{sessionId}", "Auth/RevokeSession", status_code=204, errors=(404,))
async def revoke_session(session_id: SessionId, call: Call) -> Response:
    """End one of your sessions.

    Its refresh and access tokens stop working within a second."""
    await call.auth.RevokeSession(pb.RevokeSessionRequest(session_id=session_id))
    return Response(status_code=204)


@operation(router.post, "/me/mfa/totp", "Auth/StartTotp", errors=(409,))
async def start_totp(response: Response, call: Call) -> TotpEnrolmentOut:
    """Start enrolling an authenticator app (TOTP).

    The secret stays pending until POST /users/me/mfa/totp/confirm; starting again replaces it. 409 when MFA
    is on already."""
    reply = await call.auth.StartTotp(pb.StartTotpRequest())
    response.headers.update(NO_STORE)
    return TotpEnrolmentOut(secret=reply.secret, otpauth_uri=reply.otpauth_uri)


@operation(router.post, "/me/mfa/totp/confirm", "Auth/ConfirmTotp", errors=(409, 422))
async def confirm_totp(body: CodeIn, response: Response, call: Call) -> RecoveryCodesOut:
    """Confirm the pending authenticator app with a code: MFA is on.

    Answers ten one-time recovery codes, shown this once. From now on sign-in asks for a code."""
    reply = await call.auth.ConfirmTotp(pb.ConfirmTotpRequest(code=body.code))
    response.headers.update(NO_STORE)
    return RecoveryCodesOut(recovery_codes=list(reply.codes))


@operation(router.delete, "/me/mfa", "Auth/DisableMfa", status_code=204, errors=(409, 422, 429))
async def disable_mfa(body: MfaOffIn, call: Call) -> Response:
    """Turn your MFA off, with your password and a current code.

    Your recovery codes stop working too. A wrong password or code counts as a failed sign-in (429 with
    Retry-After past the limit)."""
    await call.auth.DisableMfa(pb.DisableMfaRequest(password=body.password, code=body.code))
    return Response(status_code=204)


@operation(router.get, "", "Auth/ListUsers", errors=(422,))
async def list_users(
    call: Call,
    q: Search = "",
    role: Role | None = None,
    disabled: bool | None = None,
    page: PageNumber = 1,
    page_size: PageSize = 20,
) -> UserPage:
    """List users, newest first.

    `q` matches a case-insensitive substring of the email or full name; `role` and `disabled` filter."""
    request = pb.ListUsersRequest(q=q, page=page, page_size=page_size)
    if role is not None:
        request.role = ROLE_TO_PROTO[role]
    if disabled is not None:
        request.disabled = disabled
    return UserPage.of(await call.auth.ListUsers(request), AccountOut.from_proto)


@operation(router.post, "", "Auth/CreateUser", status_code=201, errors=(409, 422))
async def create_user(body: UserIn, response: Response, call: Call) -> CreatedUserOut:
    """Create a user.

    Without `password` the answer carries a one-time `temporaryPassword` (shown this once), which the user
    must change at first sign-in. 409 when the email (compared case-insensitively) is taken; 422 names the
    password rule a given password breaks."""
    request = pb.CreateUserRequest(email=body.email, full_name=body.full_name, role=ROLE_TO_PROTO[body.role])
    if body.password is not None:
        request.password = body.password
    reply = await call.auth.CreateUser(request)
    response.headers.update(NO_STORE)
    temporary = reply.temporary_password if reply.HasField("temporary_password") else None
    return CreatedUserOut(**AccountOut.from_proto(reply.user).model_dump(), temporary_password=temporary)


@operation(router.get, "/{userId}", "Auth/GetUser", errors=(404,))
async def get_user(user_id: UserId, call: Call) -> AccountOut:
    """A user, disabled or not."""
    return AccountOut.from_proto(await call.auth.GetUser(pb.GetUserRequest(user_id=user_id)))


@operation(router.patch, "/{userId}", "Auth/UpdateUser", errors=(404, 409, 422))
async def update_user(user_id: UserId, body: UserPatch, call: Call) -> AccountOut:
    """Rename a user, change their role, disable or enable them.

    A role change or disabling ends every session of the user at once (their access tokens stop within a
    second). 409 when it would leave no active admin."""
    request = pb.UpdateUserRequest(user_id=user_id)
    if body.full_name is not None:
        request.full_name = body.full_name
    if body.role is not None:
        request.role = ROLE_TO_PROTO[body.role]
    if body.disabled is not None:
        request.disabled = body.disabled
    return AccountOut.from_proto(await call.auth.UpdateUser(request))


@operation(router.post, "/{userId}/reset-password", "Auth/ResetPassword", errors=(404,))
async def reset_password(user_id: UserId, response: Response, call: Call) -> TemporaryPasswordOut:
    """Give a user a one-time temporary password.

    Shown this once; the user must change it at next sign-in. Ends every session of the user."""
    reply = await call.auth.ResetPassword(pb.ResetPasswordRequest(user_id=user_id))
    response.headers.update(NO_STORE)
    return TemporaryPasswordOut(temporary_password=reply.temporary_password)


@operation(router.delete, "/{userId}/sessions", "Auth/RevokeUserSessions", status_code=204, errors=(404,))
async def revoke_user_sessions(user_id: UserId, call: Call) -> Response:
    """End every session of a user.

    Their refresh and access tokens stop working within a second."""
    await call.auth.RevokeUserSessions(pb.RevokeUserSessionsRequest(user_id=user_id))
    return Response(status_code=204)


@operation(router.delete, "/{userId}/mfa", "Auth/ResetMfa", status_code=204, errors=(404,))
async def reset_mfa(user_id: UserId, call: Call) -> Response:
    """Turn a user's MFA off (a lost device).

    They sign in with their password alone until they enrol again."""
    await call.auth.ResetMfa(pb.ResetMfaRequest(user_id=user_id))
    return Response(status_code=204)
