"""The one policy table covers every RPC and every public route, with the roles of the contract."""

import pytest

from clientvault.policy import POLICY, Role, allows
from clientvault.settings import GatewaySettings
from gateway.app import create_app
from tests.policy_support import CATALOGUE, QUERY_VARIANTS, proto_methods, routes_of


def test_the_catalogue_has_its_routes_each_in_the_policy_with_its_roles() -> None:
    assert len(CATALOGUE) == 56
    for operation, roles in CATALOGUE.values():
        assert POLICY[operation] == roles, operation
    for _, operation, roles in QUERY_VARIANTS.values():
        assert POLICY[operation] == roles, operation


def test_every_rpc_has_a_policy_entry() -> None:
    missing = set(proto_methods()) - set(POLICY)
    assert not missing, f"add these RPCs to clientvault/policy.py: {sorted(missing)}"


def test_every_gateway_route_requires_exactly_one_operation_of_the_catalogue() -> None:
    routes = routes_of(create_app(GatewaySettings()))
    for route in routes:
        assert (route.method, route.path) in CATALOGUE, f"{route} is not in the contract"
        assert route.operations == (CATALOGUE[(route.method, route.path)][0],), str(route)
    # Every route of the contract is served: an enumeration that finds nothing must not pass.
    assert {(route.method, route.path) for route in routes} == set(CATALOGUE)


@pytest.mark.parametrize("role", list(Role))
def test_an_operation_missing_from_the_table_is_open_to_nobody(role: Role) -> None:
    assert not allows("Clients/DropDatabase", role)


def test_reveal_is_for_admins_and_managers_only() -> None:
    assert [r for r in Role if allows("Vault/RevealCredential", r)] == [Role.ADMIN, Role.MANAGER]
