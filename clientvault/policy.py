"""The one role policy: which roles may call which operation. Imported by the gateway and every service.

Operations are keyed "<Service>/<Rpc>" after the gRPC methods in protos/. Each public route maps to one
operation; a unit test fails if an RPC or a route lacks its entry here.
No role check is written anywhere else.
"""

from collections.abc import Collection, Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from clientvault.tokens import Caller


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    READ_ONLY = "read_only"
    # A service identity, not a person's: the vault's account that turns a leaver's exposed credentials into
    # rotation tasks (services/vault/leavers.py). The operator issues it (`clientvault up`, `clientvault migrate`
    # with CLIENTVAULT_ROTATION_TASKS_PASSWORD); it may call exactly Clients/CreateTask (docs/security.md).
    ROTATION_TASKS = "rotation_tasks"


PUBLIC: Final = "public"  # no access token needed (sign-in, refresh, public keys)
Rule = frozenset[Role] | Literal["public"]

# The roles of people (the staff's accounts); a service role is in no group, only in the rows that name it.
PEOPLE: Final = frozenset({Role.ADMIN, Role.MANAGER, Role.READ_ONLY})
SERVICE_ROLES: Final = frozenset(Role) - PEOPLE  # issued by the operator, never given through the API
ANYONE: Final = PEOPLE  # any signed-in person
STAFF: Final = frozenset({Role.ADMIN, Role.MANAGER})
ADMIN: Final = frozenset({Role.ADMIN})
# Who may ask for time-boxed access to a client: anyone who does not see every client already (an admin does).
REQUESTERS: Final = ANYONE - ADMIN

POLICY: Final[Mapping[str, Rule]] = MappingProxyType(
    {
        # auth: POST /auth/sign-in, POST /auth/refresh, POST /auth/sign-out, GET /users/me
        "Auth/SignIn": PUBLIC,
        "Auth/CompleteMfa": PUBLIC,  # POST /auth/mfa; the mfaToken in the body is the credential
        "Auth/Refresh": PUBLIC,  # the refresh token in the body is the credential
        "Auth/SignOut": ANYONE,
        "Auth/GetMe": ANYONE,
        "Auth/GetPublicKeys": PUBLIC,  # verifiers fetch the token keys; they are public by nature
        "Auth/GetUsers": ANYONE,  # internal: a service checks that a user id exists
        # staff identity: the caller's own account (any role) and every account (admin)
        "Auth/ChangePassword": ANYONE,  # POST /users/me/password
        "Auth/ListSessions": ANYONE,  # GET /users/me/sessions
        "Auth/RevokeSession": ANYONE,  # DELETE /users/me/sessions/{sessionId}
        "Auth/StartTotp": ANYONE,  # POST /users/me/mfa/totp
        "Auth/ConfirmTotp": ANYONE,  # POST /users/me/mfa/totp/confirm
        "Auth/DisableMfa": ANYONE,  # DELETE /users/me/mfa
        "Auth/ListUsers": ADMIN,  # GET /users
        "Auth/CreateUser": ADMIN,  # POST /users
        "Auth/GetUser": ADMIN,  # GET /users/{userId}
        "Auth/UpdateUser": ADMIN,  # PATCH /users/{userId}
        "Auth/ResetPassword": ADMIN,  # POST /users/{userId}/reset-password
        "Auth/RevokeUserSessions": ADMIN,  # DELETE /users/{userId}/sessions
        "Auth/ResetMfa": ADMIN,  # DELETE /users/{userId}/mfa
        # clients and tasks
        "Clients/ListClients": ANYONE,  # GET /clients
        "Clients/CreateClient": STAFF,  # POST /clients
        "Clients/GetClient": ANYONE,  # GET /clients/{clientId}
        "Clients/GetClients": ANYONE,  # internal: the gateway names the clients of a report
        "Clients/UpdateClient": STAFF,  # PATCH /clients/{clientId}
        "Clients/ArchiveClient": ADMIN,  # POST /clients/{clientId}/archive
        "Clients/ListTasks": ANYONE,  # GET /clients/{clientId}/tasks
        # POST /clients/{clientId}/tasks; and the vault's rotation work when a user leaves (services/vault/leavers.py)
        "Clients/CreateTask": ANYONE | {Role.ROTATION_TASKS},
        "Clients/UpdateTask": ANYONE,  # PATCH /clients/{clientId}/tasks/{taskId}
        "Clients/DeleteTask": STAFF,  # DELETE /clients/{clientId}/tasks/{taskId}
        "Clients/GetTask": ANYONE,  # GET /clients/{clientId}/tasks/{taskId}
        "Clients/ListArchivedClients": ADMIN,  # GET /clients?status=archived
        "Clients/UnarchiveClient": ADMIN,  # POST /clients/{clientId}/unarchive
        "Clients/ListMembers": ANYONE,  # GET /clients/{clientId}/members (the service: admin, or a member)
        "Clients/PutMember": ADMIN,  # PUT /clients/{clientId}/members/{userId}
        "Clients/RemoveMember": ADMIN,  # DELETE /clients/{clientId}/members/{userId}
        # time-boxed access (services/clients/grants.py; the service: nobody decides their own request)
        "Clients/RequestAccess": REQUESTERS,  # POST /clients/{clientId}/access-requests
        "Clients/ListAccessRequests": ANYONE,  # GET /access-requests (admin: all; others: their own)
        "Clients/ApproveAccessRequest": ADMIN,  # POST /access-requests/{requestId}/approve
        "Clients/DenyAccessRequest": ADMIN,  # POST /access-requests/{requestId}/deny
        "Clients/RevokeGrant": ADMIN,  # DELETE /grants/{grantId}
        "Clients/BreakGlass": STAFF,  # POST /clients/{clientId}/break-glass (when CLIENTVAULT_BREAK_GLASS=on)
        # vault
        "Vault/ListCredentials": ANYONE,  # GET /clients/{clientId}/credentials
        "Vault/CreateCredential": ANYONE,  # POST /clients/{clientId}/credentials
        "Vault/RevealCredential": STAFF,  # GET /clients/{clientId}/credentials/{credentialId}
        "Vault/UpdateCredential": ANYONE,  # PATCH /clients/{clientId}/credentials/{credentialId}
        "Vault/DeleteCredential": ADMIN,  # DELETE /clients/{clientId}/credentials/{credentialId}
        "Vault/ListDeletedCredentials": ADMIN,  # GET /clients/{clientId}/credentials?deleted=true
        "Vault/RestoreCredential": ADMIN,  # POST /clients/{clientId}/credentials/{credentialId}/restore
        "Vault/ListCredentialVersions": STAFF,  # GET .../credentials/{credentialId}/versions
        "Vault/RevealCredentialVersion": STAFF,  # POST .../credentials/{credentialId}/versions/{version}/reveal
        "Vault/RestoreCredentialVersion": STAFF,  # POST .../credentials/{credentialId}/versions/{version}/restore
        "Vault/GetExposureReport": ADMIN,  # GET /reports/exposure
        "Vault/ShredClient": ADMIN,  # POST /clients/{clientId}/shred
        "Vault/GetCredential": ANYONE,  # GET /clients/{clientId}/credentials/{credentialId}/metadata
        "Vault/GeneratePassword": ANYONE,  # POST /tools/generate-password
        "Vault/GetCredentialTotp": STAFF,  # GET .../credentials/{credentialId}/totp (who may reveal)
        "Vault/ImportCredentials": ADMIN,  # POST /clients/{clientId}/credentials:import
        "Vault/ExportCredentials": ADMIN,  # POST /clients/{clientId}/credentials:export
        # audit
        "Audit/ListEvents": ADMIN,  # GET /audit-logs
    }
)

# Operations whose refusal the service records (a denied reveal or TOTP code is audited by the vault, rpc.py
# `on_forbidden`): the gateway passes a refused caller's call on instead of refusing it itself, and the service
# refuses it, with the same 403.
REFUSED_BY_SERVICE: Final = frozenset({"Vault/RevealCredential", "Vault/GetCredentialTotp"})

# Per-client access (CLIENTVAULT_CLIENT_SCOPING=on): these roles see every client; the others only the clients they
# are a member of (checked by the services that own the data: clients and vault). The rotation-tasks identity
# makes a leaver's rotation tasks in whichever client they revealed in; the table above lets it call nothing
# but Clients/CreateTask.
SEES_EVERY_CLIENT: Final = ADMIN | {Role.ROTATION_TASKS}

# Fields that fewer roles may change than may call the operation: a manager updates a client, but only an admin
# decides that its reveals must name a reason (docs/access.md). The clients service checks it, and the gateway.
FIELD_POLICY: Final[Mapping[tuple[str, str], frozenset[Role]]] = MappingProxyType(
    {("Clients/UpdateClient", "reveal_reason_required"): ADMIN}
)

# Sign-out stays idempotent: a validly signed, unexpired token of an already revoked session is accepted.
ACCEPTS_REVOKED_TOKEN: Final = frozenset({"Auth/SignOut"})
# All a token of a temporary password may do (its `pwd_change` claim): choose a new password, or sign out.
DURING_PASSWORD_CHANGE: Final = frozenset({"Auth/ChangePassword", "Auth/SignOut"})
# What the roles of CLIENTVAULT_MFA_REQUIRED_ROLES may do only with a second factor (`otp` in the token's `amr`).
# A TOTP code and an export give what a reveal gives, so they need what a reveal needs.
NEEDS_MFA: Final = frozenset({"Vault/RevealCredential", "Vault/GetCredentialTotp", "Vault/ExportCredentials"})


def rule_for(operation: str) -> Rule:
    """The rule of an operation; one missing from the table is open to nobody."""
    return POLICY.get(operation, frozenset())


def is_public(operation: str) -> bool:
    return rule_for(operation) == PUBLIC


def allows(operation: str, role: Role) -> bool:
    rule = rule_for(operation)
    return rule == PUBLIC or role in rule


def sees_every_client(role: Role) -> bool:
    return role in SEES_EVERY_CLIENT


def field_refusal(operation: str, names: Iterable[str], role: Role) -> str | None:
    """Why the role may not change one of these fields (snake_case) through the operation, or None."""
    for name in sorted(names):
        roles = FIELD_POLICY.get((operation, name))
        if roles is not None and role not in roles:
            return f"your role may not change {name}"
    return None


def refusal(operation: str, caller: "Caller", mfa_required_roles: Collection[Role]) -> str | None:
    """Why the caller may not call a (non-public) operation, or None. The gateway and every service's edge
    ask this, so a direct call to a service is refused alike."""
    if not allows(operation, caller.role):
        return "your role does not allow this operation"
    if caller.password_change_required and operation not in DURING_PASSWORD_CHANGE:
        return "password change required"
    if operation in NEEDS_MFA and caller.role in mfa_required_roles and "otp" not in caller.amr:
        return "mfa required"
    return None
