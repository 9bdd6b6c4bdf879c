"""What the policy tests read from the code itself: the gateway's routes with the operation each declares,
and every RPC of the generated protos. Both the static policy test and the role matrix enumerate these,
so that a new route or RPC is covered without anyone listing it.
"""

import importlib
import pkgutil
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from google.protobuf.descriptor import MethodDescriptor

import clientvault.v1
from clientvault.policy import ADMIN, ANYONE, PUBLIC, STAFF, Role, Rule

# The contract's route catalogue (spec/API.md, and issue 15's staff identity routes): route -> (operation, roles).
CATALOGUE: dict[tuple[str, str], tuple[str, Rule]] = {
    ("POST", "/auth/sign-in"): ("Auth/SignIn", PUBLIC),
    ("POST", "/auth/refresh"): ("Auth/Refresh", PUBLIC),
    ("POST", "/auth/sign-out"): ("Auth/SignOut", ANYONE),
    ("GET", "/users/me"): ("Auth/GetMe", ANYONE),
    ("GET", "/clients"): ("Clients/ListClients", ANYONE),
    ("POST", "/clients"): ("Clients/CreateClient", STAFF),
    ("GET", "/clients/{clientId}"): ("Clients/GetClient", ANYONE),
    ("PATCH", "/clients/{clientId}"): ("Clients/UpdateClient", STAFF),
    ("POST", "/clients/{clientId}/archive"): ("Clients/ArchiveClient", ADMIN),
    ("POST", "/clients/{clientId}/shred"): ("Vault/ShredClient", ADMIN),
    ("GET", "/clients/{clientId}/tasks"): ("Clients/ListTasks", ANYONE),
    ("POST", "/clients/{clientId}/tasks"): ("Clients/CreateTask", ANYONE | {Role.ROTATION_TASKS}),
    ("PATCH", "/clients/{clientId}/tasks/{taskId}"): ("Clients/UpdateTask", ANYONE),
    ("DELETE", "/clients/{clientId}/tasks/{taskId}"): ("Clients/DeleteTask", STAFF),
    ("GET", "/clients/{clientId}/credentials"): ("Vault/ListCredentials", ANYONE),
    ("POST", "/clients/{clientId}/credentials"): ("Vault/CreateCredential", ANYONE),
    ("GET", "/clients/{clientId}/credentials/{credentialId}"): ("Vault/RevealCredential", STAFF),
    ("PATCH", "/clients/{clientId}/credentials/{credentialId}"): ("Vault/UpdateCredential", ANYONE),
    ("DELETE", "/clients/{clientId}/credentials/{credentialId}"): ("Vault/DeleteCredential", ADMIN),
    ("POST", "/clients/{clientId}/credentials/{credentialId}/restore"): ("Vault/RestoreCredential", ADMIN),
    ("GET", "/clients/{clientId}/credentials/{credentialId}/versions"): ("Vault/ListCredentialVersions", STAFF),
    ("POST", "/clients/{clientId}/credentials/{credentialId}/versions/{version}/reveal"): (
        "Vault/RevealCredentialVersion",
        STAFF,
    ),
    ("POST", "/clients/{clientId}/credentials/{credentialId}/versions/{version}/restore"): (
        "Vault/RestoreCredentialVersion",
        STAFF,
    ),
    ("GET", "/reports/exposure"): ("Vault/GetExposureReport", ADMIN),
    # Per-client access and archive both ways (issue 16).
    ("POST", "/clients/{clientId}/unarchive"): ("Clients/UnarchiveClient", ADMIN),
    ("GET", "/clients/{clientId}/members"): ("Clients/ListMembers", ANYONE),
    ("PUT", "/clients/{clientId}/members/{userId}"): ("Clients/PutMember", ADMIN),
    ("DELETE", "/clients/{clientId}/members/{userId}"): ("Clients/RemoveMember", ADMIN),
    # Reveal reasons (issue 16 item 4): the reveal with a body {reason, ticketRef}, the same operation as the GET.
    ("POST", "/clients/{clientId}/credentials/{credentialId}/reveal"): ("Vault/RevealCredential", STAFF),
    ("POST", "/clients/{clientId}/access-requests"): ("Clients/RequestAccess", ANYONE - ADMIN),
    ("GET", "/access-requests"): ("Clients/ListAccessRequests", ANYONE),
    ("POST", "/access-requests/{requestId}/approve"): ("Clients/ApproveAccessRequest", ADMIN),
    ("POST", "/access-requests/{requestId}/deny"): ("Clients/DenyAccessRequest", ADMIN),
    ("DELETE", "/grants/{grantId}"): ("Clients/RevokeGrant", ADMIN),
    ("POST", "/clients/{clientId}/break-glass"): ("Clients/BreakGlass", STAFF),
    ("GET", "/audit-logs"): ("Audit/ListEvents", ADMIN),
    # Staff identity (issue 15): the caller's own account, and every account for admins.
    ("POST", "/auth/mfa"): ("Auth/CompleteMfa", PUBLIC),
    ("POST", "/users/me/password"): ("Auth/ChangePassword", ANYONE),
    ("GET", "/users/me/sessions"): ("Auth/ListSessions", ANYONE),
    ("DELETE", "/users/me/sessions/{sessionId}"): ("Auth/RevokeSession", ANYONE),
    ("POST", "/users/me/mfa/totp"): ("Auth/StartTotp", ANYONE),
    ("POST", "/users/me/mfa/totp/confirm"): ("Auth/ConfirmTotp", ANYONE),
    ("DELETE", "/users/me/mfa"): ("Auth/DisableMfa", ANYONE),
    ("GET", "/users"): ("Auth/ListUsers", ADMIN),
    ("POST", "/users"): ("Auth/CreateUser", ADMIN),
    ("GET", "/users/{userId}"): ("Auth/GetUser", ADMIN),
    ("PATCH", "/users/{userId}"): ("Auth/UpdateUser", ADMIN),
    ("POST", "/users/{userId}/reset-password"): ("Auth/ResetPassword", ADMIN),
    ("DELETE", "/users/{userId}/sessions"): ("Auth/RevokeUserSessions", ADMIN),
    ("DELETE", "/users/{userId}/mfa"): ("Auth/ResetMfa", ADMIN),
    # Everyday credential tools (issue 18): ETags to read, and the password generator.
    ("GET", "/clients/{clientId}/tasks/{taskId}"): ("Clients/GetTask", ANYONE),
    ("GET", "/clients/{clientId}/credentials/{credentialId}/metadata"): ("Vault/GetCredential", ANYONE),
    ("POST", "/tools/generate-password"): ("Vault/GeneratePassword", ANYONE),
    # Everyday credential tools (issue 18, docs/credential-tools.md).
    ("GET", "/clients/{clientId}/credentials/{credentialId}/totp"): ("Vault/GetCredentialTotp", STAFF),
    ("POST", "/clients/{clientId}/credentials:import"): ("Vault/ImportCredentials", ADMIN),
    ("POST", "/clients/{clientId}/credentials:export"): ("Vault/ExportCredentials", ADMIN),
}

# Routes whose query parameter switches them to another operation of the table (which the service checks
# itself): route -> (the query that does it, the operation, its roles).
QUERY_VARIANTS: dict[tuple[str, str], tuple[str, str, Rule]] = {
    ("GET", "/clients/{clientId}/credentials"): ("deleted=true", "Vault/ListDeletedCredentials", ADMIN),
    ("GET", "/clients"): ("status=archived", "Clients/ListArchivedClients", ADMIN),
}

# Liveness, readiness and the services' health answer anyone (probes carry no token); they run no operation.
OPERATIONS_ROUTES = frozenset({"/healthz", "/readyz", "/healthz/services"})


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # FastAPI's template, e.g. /clients/{clientId}
    operations: tuple[str, ...]  # what its dependencies declare (gateway.calls.operation)
    status_code: int  # what it answers on success

    @property
    def operation(self) -> str | None:
        """The one operation it checks, or None when it declares none or several."""
        return self.operations[0] if len(self.operations) == 1 else None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def routes_of(app: FastAPI) -> list[Route]:
    """Every API route of the app (one per method) but the operations probes.

    Since FastAPI 0.137 `app.routes` holds one opaque entry per `include_router` instead of its routes, so
    a walk over `app.routes` alone finds none of ours (and a check over them passes, checking nothing);
    `iter_route_contexts` expands them, with the router's prefix and dependencies applied.
    """
    found = []
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or route.path in OPERATIONS_ROUTES:
            continue
        declared = (getattr(d.call, "operation", None) for d in route.dependant.dependencies)
        operations = tuple(operation for operation in declared if operation is not None)
        for method in sorted(route.methods or ()):
            found.append(Route(method, str(route.path), operations, route.status_code or 200))
    return found


def proto_methods() -> dict[str, MethodDescriptor]:
    """Every RPC of every service in clientvault/v1, keyed "<Service>/<Rpc>" like the policy table."""
    found: dict[str, MethodDescriptor] = {}
    for module in pkgutil.iter_modules(clientvault.v1.__path__):
        if module.name.endswith("_pb2"):
            descriptor = importlib.import_module(f"clientvault.v1.{module.name}").DESCRIPTOR
            for service in descriptor.services_by_name.values():
                found |= {f"{service.name}/{method.name}": method for method in service.methods}
    return found
