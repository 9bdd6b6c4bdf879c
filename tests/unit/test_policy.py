"""The one policy table covers every RPC and every public route, with the roles of the contract."""

import importlib
import pkgutil

import pytest
from fastapi.routing import APIRoute

import clientvault.v1
from clientvault.policy import ADMIN, ANYONE, POLICY, PUBLIC, STAFF, Role, allows
from clientvault.settings import GatewaySettings
from gateway.app import create_app

# The contract's route catalogue (spec/API.md): route -> (operation, roles).
CATALOGUE = {
    ("POST", "/auth/sign-in"): ("Auth/SignIn", PUBLIC),
    ("POST", "/auth/refresh"): ("Auth/Refresh", PUBLIC),
    ("POST", "/auth/sign-out"): ("Auth/SignOut", ANYONE),
    ("GET", "/users/me"): ("Auth/GetMe", ANYONE),
    ("GET", "/clients"): ("Clients/ListClients", ANYONE),
    ("POST", "/clients"): ("Clients/CreateClient", STAFF),
    ("GET", "/clients/{client_id}"): ("Clients/GetClient", ANYONE),
    ("PATCH", "/clients/{client_id}"): ("Clients/UpdateClient", STAFF),
    ("POST", "/clients/{client_id}/archive"): ("Clients/ArchiveClient", ADMIN),
    ("GET", "/clients/{client_id}/tasks"): ("Clients/ListTasks", ANYONE),
    ("POST", "/clients/{client_id}/tasks"): ("Clients/CreateTask", ANYONE),
    ("PATCH", "/clients/{client_id}/tasks/{task_id}"): ("Clients/UpdateTask", ANYONE),
    ("DELETE", "/clients/{client_id}/tasks/{task_id}"): ("Clients/DeleteTask", STAFF),
    ("GET", "/clients/{client_id}/credentials"): ("Vault/ListCredentials", ANYONE),
    ("POST", "/clients/{client_id}/credentials"): ("Vault/CreateCredential", ANYONE),
    ("GET", "/clients/{client_id}/credentials/{credential_id}"): ("Vault/RevealCredential", STAFF),
    ("PATCH", "/clients/{client_id}/credentials/{credential_id}"): ("Vault/UpdateCredential", ANYONE),
    ("DELETE", "/clients/{client_id}/credentials/{credential_id}"): ("Vault/DeleteCredential", ADMIN),
    ("GET", "/audit-logs"): ("Audit/ListEvents", ADMIN),
}
OPERATIONS_ROUTES = {"/healthz", "/readyz"}


def proto_rpcs() -> set[str]:
    found = set()
    for module in pkgutil.iter_modules(clientvault.v1.__path__):
        if module.name.endswith("_pb2"):
            descriptor = importlib.import_module(f"clientvault.v1.{module.name}").DESCRIPTOR
            for service in descriptor.services_by_name.values():
                found |= {f"{service.name}/{method.name}" for method in service.methods}
    return found


def test_the_catalogue_has_nineteen_routes_each_in_the_policy_with_its_roles() -> None:
    assert len(CATALOGUE) == 19
    for operation, roles in CATALOGUE.values():
        assert POLICY[operation] == roles, operation


def test_every_rpc_has_a_policy_entry() -> None:
    missing = proto_rpcs() - set(POLICY)
    assert not missing, f"add these RPCs to clientvault/policy.py: {sorted(missing)}"


def test_every_gateway_route_requires_exactly_one_operation_of_the_catalogue() -> None:
    app = create_app(GatewaySettings())
    for route in app.routes:
        if not isinstance(route, APIRoute) or route.path in OPERATIONS_ROUTES:
            continue
        operations = [getattr(d.call, "operation", None) for d in route.dependant.dependencies]
        operations = [operation for operation in operations if operation is not None]
        for method in route.methods or ():
            assert (method, route.path) in CATALOGUE, f"{method} {route.path} is not in the contract"
            assert operations == [CATALOGUE[(method, route.path)][0]], f"{method} {route.path}"


@pytest.mark.parametrize("role", list(Role))
def test_an_operation_missing_from_the_table_is_open_to_nobody(role: Role) -> None:
    assert not allows("Clients/DropDatabase", role)


def test_reveal_is_for_admins_and_managers_only() -> None:
    assert [r for r in Role if allows("Vault/RevealCredential", r)] == [Role.ADMIN, Role.MANAGER]
