"""The role matrix on the running system: every route of the gateway and every RPC of every service, for
each role and without a token, answers what clientvault/policy.py says.

The cases are not listed here: they come from the gateway app's routes (the operation each declares with
`requires`) and from the generated protos' descriptors, crossed with the roles. What lives here is one
valid request per operation (a body for a route, a message for an RPC), so that an allowed call succeeds
for real and a refused one is refused for its role alone, never for a bad request. The direct calls go to
each service's own address, bypassing the gateway, to prove that every service enforces the table itself.
"""

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import grpc
import jwt
import pyotp
import pytest
from fastapi import Depends
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from clientvault import policy
from clientvault.policy import Role
from clientvault.settings import GatewaySettings
from clientvault.v1 import audit_pb2, auth_pb2, clients_pb2, vault_pb2
from gateway.app import create_app
from gateway.calls import Call, operation
from gateway.schemas import ClientId
from tests.policy_support import QUERY_VARIANTS, Route, proto_methods, routes_of
from tests.system import Api, Session, me, new_task, unique_ip
from tests.vault_support import create, new_client

PROBLEM = "application/problem+json"
ROLES: tuple[Role | None, ...] = (*Role, None)  # None: no token at all
# Whose account stands in where a case without a token still needs one (the body of a sign-in or refresh).
STAND_IN = Role.READ_ONLY
RPC_TIMEOUT_S = 5
VERSION = 1  # the shared credential's old version (its secret is updated once)
NEW_PASSWORD = "plum orbit ferry cactus 42"  # a test account's, chosen by the matrix
TOTP_SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # the shared credential's, so that its code can be read
IMPORT_CSV = b"name,password\r\nMatrix import,matrix-imported\r\n"
AGE_RECIPIENT = "age1zw5gmvmgec7dhk26lv63xv3pqtpy64lsyjkpxh7l35x3ru9m4vsq6h8cyt"  # nobody's identity is needed


class Fresh(Enum):
    """What a destructive operation uses up, so each of its cases gets a new one instead of the shared one."""

    SESSION = "session"  # sign-out ends the session it is sent with; a refresh token works once
    CLIENT = "client"
    TASK = "task"
    CREDENTIAL = "credential"
    TRASHED = "trashed"  # a credential in the trash, to restore
    ARCHIVED = "archived"  # an archived client with a credential, to shred
    ACCOUNT = "account"  # a password change ends the user's other sessions: a new account of the role
    TARGET = "target"  # a reset or a revocation of all sessions ends them: a new user to act on
    ENROLLING = "enrolling"  # a new account of the role with a TOTP enrolment pending
    ENROLLED = "enrolled"  # a new account of the role with TOTP on, and an MFA challenge of its sign-in
    MEMBER = "member"  # a new client, whose creator (the shared admin, the case's user) is its member to remove
    REQUEST = "request"  # a new client and the shared manager's pending access request for it (an admin decides)
    GRANT = "grant"  # the same request approved by the shared admin: a grant in force, to revoke


FRESH = {
    "Auth/SignOut": Fresh.SESSION,
    "Auth/Refresh": Fresh.SESSION,
    "Auth/RevokeSession": Fresh.SESSION,
    "Auth/ChangePassword": Fresh.ACCOUNT,
    "Auth/ResetPassword": Fresh.TARGET,
    "Auth/RevokeUserSessions": Fresh.TARGET,
    "Auth/ConfirmTotp": Fresh.ENROLLING,
    "Auth/DisableMfa": Fresh.ENROLLED,
    "Auth/CompleteMfa": Fresh.ENROLLED,
    "Clients/ArchiveClient": Fresh.CLIENT,
    "Clients/DeleteTask": Fresh.TASK,
    "Vault/DeleteCredential": Fresh.CREDENTIAL,
    "Vault/RestoreCredential": Fresh.TRASHED,
    "Vault/ShredClient": Fresh.ARCHIVED,
    "Clients/RemoveMember": Fresh.MEMBER,
    "Clients/RequestAccess": Fresh.CLIENT,  # one pending request per user and client
    "Clients/ApproveAccessRequest": Fresh.REQUEST,
    "Clients/DenyAccessRequest": Fresh.REQUEST,
    "Clients/RevokeGrant": Fresh.GRANT,
}


@dataclass(frozen=True)
class Ids:
    """What one case works on: the module's shared objects, or a fresh one where the operation uses it up."""

    session: Session  # the role's (sent as the bearer token unless the case has none), or the stand-in's
    client_id: str
    task_id: str
    credential_id: str
    user_id: str  # the user an admin's operation acts on
    client_name: str = ""  # the fresh archived client's, for a shred
    seed: str = ""  # the TOTP seed of the session's account (ENROLLING, ENROLLED)
    mfa_token: str = ""  # a sign-in's MFA challenge of that account (ENROLLED)
    request_id: str = ""  # an access request (REQUEST) or grant (GRANT) of the shared manager's

    @property
    def session_id(self) -> str:
        return str(jwt.decode(self.session.access_token, options={"verify_signature": False})["sid"])

    def path(self, route: Route) -> str:
        return route.path.format(
            clientId=self.client_id,
            taskId=self.task_id,
            credentialId=self.credential_id,
            version=VERSION,
            userId=self.user_id,
            sessionId=self.session_id,
            requestId=self.request_id,
            grantId=self.request_id,
        )

    def next_code(self) -> str:
        """A TOTP code not used yet (the confirmation used the current step's)."""
        return pyotp.TOTP(self.seed).at(time.time() + 30)


# One valid body per gateway operation; the method and the path come from the app's route itself.
Body = Callable[[Ids], dict[str, Any] | None]


def no_body(_: Ids) -> None:
    return None


GATEWAY_BODIES: Mapping[str, Body] = {
    "Auth/SignIn": lambda ids: {"email": ids.session.account.email, "password": ids.session.account.password},
    "Auth/Refresh": lambda ids: {"refreshToken": ids.session.refresh_token},
    "Auth/SignOut": no_body,
    "Auth/GetMe": no_body,
    "Clients/ListClients": no_body,
    "Clients/CreateClient": lambda _: {"name": f"Matrix {uuid.uuid4()}"},
    "Clients/GetClient": no_body,
    "Clients/UpdateClient": lambda _: {"notes": "changed by the role matrix"},
    "Clients/ArchiveClient": no_body,
    "Clients/ListTasks": no_body,
    "Clients/CreateTask": lambda _: {"title": "Matrix task"},
    "Clients/UpdateTask": lambda _: {"title": "Matrix task, renamed"},
    "Clients/DeleteTask": no_body,
    "Clients/GetTask": no_body,
    "Vault/GetCredential": no_body,
    "Vault/GeneratePassword": lambda _: {"words": 4},
    "Clients/UnarchiveClient": no_body,
    "Clients/ListMembers": no_body,
    "Clients/PutMember": no_body,
    "Clients/RemoveMember": no_body,
    "Vault/ListCredentials": no_body,
    "Vault/CreateCredential": lambda _: {"label": "Matrix", "secret": "matrix-secret"},
    "Vault/RevealCredential": no_body,
    "Vault/UpdateCredential": lambda _: {"label": "Matrix, relabelled"},
    "Vault/DeleteCredential": no_body,
    "Vault/RestoreCredential": no_body,
    "Vault/ListCredentialVersions": no_body,
    "Vault/RevealCredentialVersion": no_body,
    "Vault/RestoreCredentialVersion": no_body,
    "Vault/GetExposureReport": no_body,
    "Vault/ShredClient": lambda ids: {"confirmName": ids.client_name},
    "Vault/GetCredentialTotp": no_body,
    "Vault/ImportCredentials": no_body,  # a multipart form: GATEWAY_FORMS
    "Vault/ExportCredentials": lambda _: {"recipient": AGE_RECIPIENT},
    "Audit/ListEvents": no_body,
    "Auth/CompleteMfa": lambda ids: {"mfaToken": ids.mfa_token, "code": ids.next_code()},
    "Auth/ChangePassword": lambda ids: {"currentPassword": ids.session.account.password, "newPassword": NEW_PASSWORD},
    "Auth/ListSessions": no_body,
    "Auth/RevokeSession": no_body,
    "Auth/StartTotp": no_body,
    "Auth/ConfirmTotp": lambda ids: {"code": pyotp.TOTP(ids.seed).now()},
    "Auth/DisableMfa": lambda ids: {"password": ids.session.account.password, "code": ids.next_code()},
    "Auth/ListUsers": no_body,
    "Auth/CreateUser": lambda _: {
        "email": f"matrix-{uuid.uuid4().hex}@example.com",
        "fullName": "M",
        "role": "read_only",
    },
    "Auth/GetUser": no_body,
    "Auth/UpdateUser": lambda _: {"fullName": "Renamed by the role matrix"},
    "Auth/ResetPassword": no_body,
    "Auth/RevokeUserSessions": no_body,
    "Auth/ResetMfa": no_body,
    "Clients/RequestAccess": lambda _: {"reason": "matrix", "ticketRef": "MX-1", "minutes": 5},
    "Clients/ListAccessRequests": no_body,
    "Clients/ApproveAccessRequest": no_body,
    "Clients/DenyAccessRequest": no_body,
    "Clients/RevokeGrant": no_body,
    "Clients/BreakGlass": lambda _: {"reason": "matrix emergency"},
}
# The multipart form (files, fields) of a route that takes a file instead of a JSON body.
GATEWAY_FORMS: Mapping[str, tuple[dict[str, Any], dict[str, str]]] = {
    "Vault/ImportCredentials": ({"file": ("export.csv", IMPORT_CSV, "text/csv")}, {"format": "csv"}),
}
# The query a route needs besides its path, where it has a required one.
GATEWAY_QUERIES: Mapping[str, Callable[[Ids], dict[str, str]]] = {
    "Vault/GetExposureReport": lambda ids: {"userId": ids.user_id},
}

# One valid request message per RPC, internal ones included.
RPC_REQUESTS: Mapping[str, Callable[[Ids], Message]] = {
    "Auth/SignIn": lambda ids: auth_pb2.SignInRequest(
        email=ids.session.account.email, password=ids.session.account.password
    ),
    "Auth/Refresh": lambda ids: auth_pb2.RefreshRequest(refresh_token=ids.session.refresh_token),
    "Auth/SignOut": lambda _: auth_pb2.SignOutRequest(),
    "Auth/GetMe": lambda _: auth_pb2.GetMeRequest(),
    "Auth/GetPublicKeys": lambda _: auth_pb2.GetPublicKeysRequest(),
    "Auth/GetUsers": lambda ids: auth_pb2.GetUsersRequest(ids=[ids.user_id]),
    "Auth/ListUsers": lambda _: auth_pb2.ListUsersRequest(),
    "Clients/ListClients": lambda _: clients_pb2.ListClientsRequest(),
    "Clients/CreateClient": lambda _: clients_pb2.CreateClientRequest(
        client=clients_pb2.ClientFields(name=f"Matrix {uuid.uuid4()}")
    ),
    "Clients/GetClient": lambda ids: clients_pb2.GetClientRequest(client_id=ids.client_id),
    "Clients/GetClients": lambda ids: clients_pb2.GetClientsRequest(ids=[ids.client_id]),
    "Clients/UpdateClient": lambda ids: clients_pb2.UpdateClientRequest(
        client_id=ids.client_id,
        client=clients_pb2.ClientFields(notes="changed by the role matrix"),
        update_mask=FieldMask(paths=["notes"]),
    ),
    "Clients/ArchiveClient": lambda ids: clients_pb2.ArchiveClientRequest(client_id=ids.client_id),
    "Clients/ListTasks": lambda ids: clients_pb2.ListTasksRequest(client_id=ids.client_id),
    "Clients/CreateTask": lambda ids: clients_pb2.CreateTaskRequest(
        client_id=ids.client_id, task=clients_pb2.TaskFields(title="Matrix task")
    ),
    "Clients/UpdateTask": lambda ids: clients_pb2.UpdateTaskRequest(
        client_id=ids.client_id,
        task_id=ids.task_id,
        task=clients_pb2.TaskFields(title="Matrix task, renamed"),
        update_mask=FieldMask(paths=["title"]),
    ),
    "Clients/DeleteTask": lambda ids: clients_pb2.DeleteTaskRequest(client_id=ids.client_id, task_id=ids.task_id),
    "Clients/GetTask": lambda ids: clients_pb2.GetTaskRequest(client_id=ids.client_id, task_id=ids.task_id),
    "Vault/GetCredential": lambda ids: vault_pb2.GetCredentialRequest(
        client_id=ids.client_id, credential_id=ids.credential_id
    ),
    "Vault/GeneratePassword": lambda _: vault_pb2.GeneratePasswordRequest(length=24),
    "Clients/ListArchivedClients": lambda _: clients_pb2.ListClientsRequest(),
    "Clients/UnarchiveClient": lambda ids: clients_pb2.UnarchiveClientRequest(client_id=ids.client_id),
    "Clients/ListMembers": lambda ids: clients_pb2.ListMembersRequest(client_id=ids.client_id),
    "Clients/PutMember": lambda ids: clients_pb2.PutMemberRequest(client_id=ids.client_id, user_id=ids.user_id),
    "Clients/RemoveMember": lambda ids: clients_pb2.RemoveMemberRequest(client_id=ids.client_id, user_id=ids.user_id),
    "Vault/ListCredentials": lambda ids: vault_pb2.ListCredentialsRequest(client_id=ids.client_id),
    "Vault/CreateCredential": lambda ids: vault_pb2.CreateCredentialRequest(
        client_id=ids.client_id, credential=vault_pb2.CredentialFields(label="Matrix", secret="matrix-secret")
    ),
    "Vault/RevealCredential": lambda ids: vault_pb2.RevealCredentialRequest(
        client_id=ids.client_id, credential_id=ids.credential_id
    ),
    "Vault/UpdateCredential": lambda ids: vault_pb2.UpdateCredentialRequest(
        client_id=ids.client_id,
        credential_id=ids.credential_id,
        credential=vault_pb2.CredentialFields(label="Matrix, relabelled"),
        update_mask=FieldMask(paths=["label"]),
    ),
    "Vault/DeleteCredential": lambda ids: vault_pb2.DeleteCredentialRequest(
        client_id=ids.client_id, credential_id=ids.credential_id
    ),
    "Vault/ListDeletedCredentials": lambda ids: vault_pb2.ListCredentialsRequest(client_id=ids.client_id),
    "Vault/RestoreCredential": lambda ids: vault_pb2.RestoreCredentialRequest(
        client_id=ids.client_id, credential_id=ids.credential_id
    ),
    "Vault/ListCredentialVersions": lambda ids: vault_pb2.ListCredentialVersionsRequest(
        client_id=ids.client_id, credential_id=ids.credential_id
    ),
    "Vault/RevealCredentialVersion": lambda ids: vault_pb2.RevealCredentialVersionRequest(
        client_id=ids.client_id, credential_id=ids.credential_id, version=VERSION
    ),
    "Vault/RestoreCredentialVersion": lambda ids: vault_pb2.RestoreCredentialVersionRequest(
        client_id=ids.client_id, credential_id=ids.credential_id, version=VERSION
    ),
    "Vault/GetExposureReport": lambda ids: vault_pb2.GetExposureReportRequest(user_id=ids.user_id),
    "Vault/ShredClient": lambda ids: vault_pb2.ShredClientRequest(
        client_id=ids.client_id, confirm_name=ids.client_name
    ),
    "Vault/GetCredentialTotp": lambda ids: vault_pb2.GetCredentialTotpRequest(
        client_id=ids.client_id, credential_id=ids.credential_id
    ),
    "Vault/ImportCredentials": lambda ids: vault_pb2.ImportCredentialsRequest(
        client_id=ids.client_id, format="csv", content=IMPORT_CSV
    ),
    "Vault/ExportCredentials": lambda ids: vault_pb2.ExportCredentialsRequest(
        client_id=ids.client_id, recipient=AGE_RECIPIENT
    ),
    "Audit/ListEvents": lambda _: audit_pb2.ListEventsRequest(),
    "Auth/CompleteMfa": lambda ids: auth_pb2.CompleteMfaRequest(mfa_token=ids.mfa_token, code=ids.next_code()),
    "Auth/ChangePassword": lambda ids: auth_pb2.ChangePasswordRequest(
        current_password=ids.session.account.password, new_password=NEW_PASSWORD
    ),
    "Auth/ListSessions": lambda _: auth_pb2.ListSessionsRequest(),
    "Auth/RevokeSession": lambda ids: auth_pb2.RevokeSessionRequest(session_id=ids.session_id),
    "Auth/StartTotp": lambda _: auth_pb2.StartTotpRequest(),
    "Auth/ConfirmTotp": lambda ids: auth_pb2.ConfirmTotpRequest(code=pyotp.TOTP(ids.seed).now()),
    "Auth/DisableMfa": lambda ids: auth_pb2.DisableMfaRequest(
        password=ids.session.account.password, code=ids.next_code()
    ),
    "Auth/CreateUser": lambda _: auth_pb2.CreateUserRequest(
        email=f"matrix-{uuid.uuid4().hex}@example.com", full_name="M", role=auth_pb2.ROLE_READ_ONLY
    ),
    "Auth/GetUser": lambda ids: auth_pb2.GetUserRequest(user_id=ids.user_id),
    "Auth/UpdateUser": lambda ids: auth_pb2.UpdateUserRequest(
        user_id=ids.user_id, full_name="Renamed by the role matrix"
    ),
    "Auth/ResetPassword": lambda ids: auth_pb2.ResetPasswordRequest(user_id=ids.user_id),
    "Auth/RevokeUserSessions": lambda ids: auth_pb2.RevokeUserSessionsRequest(user_id=ids.user_id),
    "Auth/ResetMfa": lambda ids: auth_pb2.ResetMfaRequest(user_id=ids.user_id),
    "Clients/RequestAccess": lambda ids: clients_pb2.RequestAccessRequest(
        client_id=ids.client_id, reason="matrix", minutes=5
    ),
    "Clients/ListAccessRequests": lambda _: clients_pb2.ListAccessRequestsRequest(),
    "Clients/ApproveAccessRequest": lambda ids: clients_pb2.DecideAccessRequest(request_id=ids.request_id),
    "Clients/DenyAccessRequest": lambda ids: clients_pb2.DecideAccessRequest(request_id=ids.request_id),
    "Clients/RevokeGrant": lambda ids: clients_pb2.RevokeGrantRequest(grant_id=ids.request_id),
    "Clients/BreakGlass": lambda ids: clients_pb2.BreakGlassRequest(client_id=ids.client_id, reason="matrix"),
}


def _operation_gaps(where: str, operation: str, builders: Mapping[str, object]) -> list[str]:
    gaps = []
    if operation not in policy.POLICY:
        gaps.append(f"{where}: operation {operation} has no entry in clientvault/policy.py (open to nobody)")
    if operation not in builders:
        gaps.append(f"{where}: operation {operation} has no request builder in tests/e2e/test_role_matrix.py")
    return gaps


def route_gaps(routes: Iterable[Route], bodies: Mapping[str, Body]) -> list[str]:
    """Why some routes cannot be proven by the matrix: each one a line naming the route and what it lacks."""
    gaps = []
    for route in routes:
        if not route.operations:
            gaps.append(f"{route}: declares no operation (declare it with `@operation(...)`): no role is checked")
        elif len(route.operations) > 1:
            gaps.append(f"{route}: declares several operations {route.operations}; a route is one operation")
        else:
            gaps += _operation_gaps(str(route), route.operations[0], bodies)
    return gaps


def rpc_gaps(rpcs: Iterable[str], requests: Mapping[str, object]) -> list[str]:
    return [gap for rpc in sorted(rpcs) for gap in _operation_gaps(f"rpc {rpc}", rpc, requests)]


ROUTES = routes_of(create_app(GatewaySettings()))
RPCS = proto_methods()


def case_id(operation: str, role: Role | None) -> str:
    return f"{operation}-{role.value if role else 'no_token'}"


class Outcome(Enum):
    ALLOWED = "allowed"
    UNAUTHENTICATED = "unauthenticated"  # no token where the operation is not public
    FORBIDDEN = "forbidden"  # a token whose role the policy does not list


def expected(operation: str, role: Role | None) -> Outcome:
    if policy.is_public(operation) or (role is not None and policy.allows(operation, role)):
        return Outcome.ALLOWED
    return Outcome.UNAUTHENTICATED if role is None else Outcome.FORBIDDEN


def test_every_route_and_rpc_is_in_the_policy_and_the_matrix() -> None:
    gaps = route_gaps(ROUTES, GATEWAY_BODIES) + rpc_gaps(RPCS, RPC_REQUESTS)
    assert not gaps, "the role matrix cannot prove these:\n" + "\n".join(gaps)


def test_the_checker_names_a_route_without_requires_an_unknown_operation_and_a_missing_builder() -> None:
    app = create_app(GatewaySettings())

    @app.get("/clients/{clientId}/export")
    async def export(client_id: ClientId) -> None: ...  # no operation: the gateway would let anyone through

    @operation(app.get, "/users", "Auth/GetUsers")
    async def users(call: Call) -> None:  # in the table, no body builder
        """Every user."""

    async def drop() -> None: ...

    drop.operation = "Clients/DropDatabase"  # type: ignore[attr-defined]  # operation() refuses an unknown one

    @app.delete("/clients")
    async def drop_all(call: Any = Depends(drop)) -> None: ...

    gaps = route_gaps(routes_of(app), GATEWAY_BODIES)

    assert gaps == [
        "GET /clients/{clientId}/export: declares no operation (declare it with `@operation(...)`): no role is checked",
        "GET /users: operation Auth/GetUsers has no request builder in tests/e2e/test_role_matrix.py",
        "DELETE /clients: operation Clients/DropDatabase has no entry in clientvault/policy.py (open to nobody)",
        "DELETE /clients: operation Clients/DropDatabase has no request builder in tests/e2e/test_role_matrix.py",
    ]
    assert rpc_gaps([*RPCS, "Clients/DropDatabase"], RPC_REQUESTS) == [
        "rpc Clients/DropDatabase: operation Clients/DropDatabase has no entry in clientvault/policy.py "
        "(open to nobody)",
        "rpc Clients/DropDatabase: operation Clients/DropDatabase has no request builder in "
        "tests/e2e/test_role_matrix.py",
    ]


class World:
    """One session per role and one client, task and credential, made once for the module and shared by
    every case that does not use its object up."""

    def __init__(self, api: Api, sessions: dict[Role, Session], ids: Ids) -> None:
        self.api = api
        self.sessions = sessions
        self.shared = ids

    @classmethod
    async def make(cls, api: Api) -> "World":
        sessions = {role: await api.session(role.value) for role in Role}
        admin = sessions[Role.ADMIN]
        client_id = await new_client(api, admin)
        task_id = (await new_task(api, admin, client_id))["id"]
        credential_id = await create(
            api, admin, client_id, label="Matrix", secret="matrix-secret", totpSecret=TOTP_SEED
        )
        changed = await api.raw.patch(
            f"/clients/{client_id}/credentials/{credential_id}", headers=admin.headers, json={"secret": "matrix-2"}
        )
        assert changed.status_code == 200, changed.text  # the old secret is version 1
        return cls(api, sessions, Ids(admin, client_id, task_id, credential_id, await me(api, admin)))

    async def ids_for(self, operation: str, role: Role | None) -> Ids:
        session = self.sessions[role or STAND_IN]
        fresh = FRESH.get(operation)
        admin, client_id = self.sessions[Role.ADMIN], self.shared.client_id
        if fresh is Fresh.SESSION:  # the same account signed in again: no new user for every case
            session = await self.api.sign_in(session.account, ip=unique_ip())
        client_name, request_id = "", ""
        if fresh in (Fresh.CLIENT, Fresh.MEMBER, Fresh.REQUEST, Fresh.GRANT):
            client_id = await new_client(self.api, admin)
        if fresh in (Fresh.REQUEST, Fresh.GRANT):
            request_id = await self.access_request(client_id, approve=fresh is Fresh.GRANT)
        if fresh is Fresh.ARCHIVED:
            client_name = f"Matrix shred {uuid.uuid4()}"
            made = await self.api.raw.post("/clients", headers=admin.headers, json={"name": client_name})
            client_id = made.json()["id"]
            await create(self.api, admin, client_id, label="Shredded", secret="shredded")
            archived = await self.api.raw.post(f"/clients/{client_id}/archive", headers=admin.headers)
            assert archived.status_code == 204, archived.text
        task_id = (await new_task(self.api, admin, client_id))["id"] if fresh is Fresh.TASK else self.shared.task_id
        credential_id = (
            await create(self.api, admin, client_id, label="Doomed", secret="doomed")
            if fresh in (Fresh.CREDENTIAL, Fresh.TRASHED)
            else self.shared.credential_id
        )
        if fresh is Fresh.TRASHED:
            trashed = await self.api.raw.delete(
                f"/clients/{client_id}/credentials/{credential_id}", headers=admin.headers
            )
            assert trashed.status_code == 204, trashed.text
        user_id, seed, mfa_token = self.shared.user_id, "", ""
        if fresh is Fresh.ACCOUNT:
            session = await self.api.session(session.account.role)
        if fresh is Fresh.TARGET:
            user_id = await me(self.api, await self.api.session())
        if fresh in (Fresh.ENROLLING, Fresh.ENROLLED):
            # A service identity may not enrol (its calls are refused by role): a person's account enrols, and the
            # identity's own session sends the call.
            person = session.account.role not in policy.SERVICE_ROLES
            enrolling = await self.api.session(session.account.role if person else STAND_IN.value)
            session = enrolling if person else session
            started = await self.api.raw.post("/users/me/mfa/totp", headers=enrolling.headers)
            seed = started.json()["secret"]
        if fresh is Fresh.ENROLLED:
            confirm = {"code": pyotp.TOTP(seed).now()}
            assert (
                await self.api.raw.post("/users/me/mfa/totp/confirm", headers=enrolling.headers, json=confirm)
            ).is_success
            account = enrolling.account
            signed = await self.api.raw.post(
                "/auth/sign-in",
                json={"email": account.email, "password": account.password},
                headers={"X-Forwarded-For": unique_ip()},
            )
            mfa_token = signed.json()["mfaToken"]
        return Ids(session, client_id, task_id, credential_id, user_id, client_name, seed, mfa_token, request_id)

    async def access_request(self, client_id: str, *, approve: bool) -> str:
        """The shared manager's pending request for the client, or (approve) the grant the shared admin makes of it."""
        body = {"reason": "matrix", "minutes": 5}
        made = await self.api.raw.post(
            f"/clients/{client_id}/access-requests", headers=self.sessions[Role.MANAGER].headers, json=body
        )
        assert made.status_code == 201, made.text
        if approve:
            approved = await self.api.raw.post(
                f"/access-requests/{made.json()['id']}/approve", headers=self.sessions[Role.ADMIN].headers
            )
            assert approved.status_code == 200, approved.text
        return str(made.json()["id"])


@pytest.fixture(scope="module")
async def world(api: Api) -> World:
    return await World.make(api)


@pytest.mark.parametrize(
    ("route", "role"),
    [pytest.param(r, role, id=case_id(r.operation, role)) for r in ROUTES if r.operation for role in ROLES],
)
async def test_gateway(api: Api, world: World, route: Route, role: Role | None) -> None:
    operation = route.operation
    assert operation is not None
    if operation not in GATEWAY_BODIES:
        pytest.fail(f"{route}: no request builder for {operation} in GATEWAY_BODIES")
    ids = await world.ids_for(operation, role)
    # Each request from an IP of its own: the per-IP throttles of sign-in and reveal never add up here.
    headers = {"X-Forwarded-For": unique_ip(), **(ids.session.headers if role else {})}

    query = GATEWAY_QUERIES[operation](ids) if operation in GATEWAY_QUERIES else None
    if operation in GATEWAY_FORMS:
        files, data = GATEWAY_FORMS[operation]
        r = await api.raw.request(route.method, ids.path(route), files=files, data=data, params=query, headers=headers)
    else:
        r = await api.raw.request(
            route.method, ids.path(route), json=GATEWAY_BODIES[operation](ids), params=query, headers=headers
        )

    outcome = expected(operation, role)
    said = f"{route} ({operation}) as {role or 'no token'}: {r.status_code} {r.text[:300]}"
    if outcome is Outcome.ALLOWED:
        assert r.status_code == route.status_code, said
        return
    assert r.headers["content-type"] == PROBLEM, said
    if outcome is Outcome.UNAUTHENTICATED:
        assert (r.status_code, r.headers.get("www-authenticate")) == (401, "Bearer"), said
    else:
        assert r.status_code == 403, said
        assert r.json()["status"] == 403, said


@pytest.mark.parametrize(
    ("method", "path", "operation", "role"),
    [
        pytest.param(method, f"{path}?{query}", operation, role, id=case_id(operation, role))
        for (method, path), (query, operation, _) in QUERY_VARIANTS.items()
        for role in ROLES
    ],
)
async def test_gateway_query_variant(
    api: Api, world: World, method: str, path: str, operation: str, role: Role | None
) -> None:
    ids = await world.ids_for(operation, role)
    headers = {"X-Forwarded-For": unique_ip(), **(ids.session.headers if role else {})}

    r = await api.raw.request(method, path.format(clientId=ids.client_id), headers=headers)

    outcome = expected(operation, role)
    said = f"{method} {path} ({operation}) as {role or 'no token'}: {r.status_code} {r.text[:300]}"
    if outcome is Outcome.ALLOWED:
        assert r.status_code == 200, said
        return
    assert r.headers["content-type"] == PROBLEM, said
    assert r.status_code == (401 if outcome is Outcome.UNAUTHENTICATED else 403), said


@pytest.fixture(scope="module")
async def channels(api: Api) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    """A channel to each proto service's own address (from the running system's system.json), not the gateway."""
    services = {method.containing_service.name.lower() for method in RPCS.values()}
    opened = {name: grpc.aio.insecure_channel(api.system.info_address(name)) for name in services}
    yield opened
    for channel in opened.values():
        await channel.close()


async def call_rpc(
    channel: grpc.aio.Channel, method: MethodDescriptor, request: Message, metadata: Sequence[tuple[str, str]]
) -> tuple[grpc.StatusCode, str]:
    """Calls the method its descriptor names (so no per-service stub is needed); its status and details."""
    rpc = channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=type(request).SerializeToString,
        response_deserializer=GetMessageClass(method.output_type).FromString,
    )
    try:
        await rpc(request, metadata=metadata, timeout=RPC_TIMEOUT_S)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


STATUS_OF = {
    Outcome.ALLOWED: grpc.StatusCode.OK,
    Outcome.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Outcome.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
}


@pytest.mark.parametrize(
    ("operation", "role"), [pytest.param(op, role, id=case_id(op, role)) for op in sorted(RPCS) for role in ROLES]
)
async def test_direct(world: World, channels: dict[str, grpc.aio.Channel], operation: str, role: Role | None) -> None:
    method = RPCS[operation]
    if operation not in RPC_REQUESTS:
        pytest.fail(f"rpc {operation}: no request builder in RPC_REQUESTS")
    ids = await world.ids_for(operation, role)
    request = RPC_REQUESTS[operation](ids)
    assert request.DESCRIPTOR.full_name == method.input_type.full_name, f"the builder of {operation} is wrong"
    # Not vouched for by the gateway: every case counts against this process's own address in the per-IP limits
    # (high in the run's system; its sign-ins use the right password, so they add no failures).
    metadata: list[tuple[str, str]] = []
    if role is not None:
        metadata.append(("authorization", f"Bearer {ids.session.access_token}"))
    channel = channels[method.containing_service.name.lower()]

    code, details = await call_rpc(channel, method, request, metadata)

    said = f"rpc {operation} as {role or 'no token'}: {code.name} {details}"
    assert code is STATUS_OF[expected(operation, role)], said
