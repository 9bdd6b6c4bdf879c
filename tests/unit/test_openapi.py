"""The gateway's OpenAPI document, read from the app without servers: every property typed, enums named,
operationIds short and pinned, path parameters in camelCase, security as the policy says, servers set; and
`operation`, the one declaration of a route, refuses what it cannot check."""

from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from google.protobuf.descriptor import EnumDescriptor

from clientvault.convert import enum_name
from clientvault.policy import PUBLIC, Role
from clientvault.settings import GatewaySettings
from clientvault.v1 import auth_pb2, clients_pb2, events_pb2
from gateway.app import create_app
from gateway.calls import Call, operation
from gateway.schemas import AuditAction, ClientStatus, TaskPriority, TaskStatus
from tests.policy_support import CATALOGUE

SPEC: dict[str, Any] = create_app(GatewaySettings()).openapi()
SCHEMAS: dict[str, Any] = SPEC["components"]["schemas"]
OPERATIONS = {(method.upper(), path): op for path, item in SPEC["paths"].items() for method, op in item.items()}
# Pinned: a generated client's function names. Changing one breaks every client that calls it.
OPERATION_IDS = {
    "Auth/SignIn": "signIn",
    "Auth/Refresh": "refresh",
    "Auth/SignOut": "signOut",
    "Auth/GetMe": "getMe",
    "Clients/ListClients": "listClients",
    "Clients/CreateClient": "createClient",
    "Clients/GetClient": "getClient",
    "Clients/UpdateClient": "updateClient",
    "Clients/ArchiveClient": "archiveClient",
    "Clients/ListTasks": "listTasks",
    "Clients/CreateTask": "createTask",
    "Clients/UpdateTask": "updateTask",
    "Clients/DeleteTask": "deleteTask",
    "Clients/UnarchiveClient": "unarchiveClient",
    "Clients/ListMembers": "listMembers",
    "Clients/PutMember": "putMember",
    "Clients/RemoveMember": "removeMember",
    "Clients/RequestAccess": "requestAccess",
    "Clients/ListAccessRequests": "listAccessRequests",
    "Clients/ApproveAccessRequest": "approveAccessRequest",
    "Clients/DenyAccessRequest": "denyAccessRequest",
    "Clients/RevokeGrant": "revokeGrant",
    "Clients/BreakGlass": "breakGlass",
    "Vault/ListCredentials": "listCredentials",
    "Vault/CreateCredential": "createCredential",
    "Vault/RevealCredential": "revealCredential",
    "Vault/UpdateCredential": "updateCredential",
    "Vault/DeleteCredential": "deleteCredential",
    "Vault/RestoreCredential": "restoreCredential",
    "Vault/ListCredentialVersions": "listCredentialVersions",
    "Vault/RevealCredentialVersion": "revealCredentialVersion",
    "Vault/RestoreCredentialVersion": "restoreCredentialVersion",
    "Vault/GetExposureReport": "getExposureReport",
    "Vault/ShredClient": "shredClient",
    "Vault/GetCredentialTotp": "getCredentialTotp",
    "Vault/ImportCredentials": "importCredentials",
    "Vault/ExportCredentials": "exportCredentials",
    "Audit/ListEvents": "listAuditLogs",
    "Auth/CompleteMfa": "completeMfa",
    "Auth/ChangePassword": "changePassword",
    "Auth/ListSessions": "listSessions",
    "Auth/RevokeSession": "revokeSession",
    "Auth/StartTotp": "startTotp",
    "Auth/ConfirmTotp": "confirmTotp",
    "Auth/DisableMfa": "disableMfa",
    "Auth/ListUsers": "listUsers",
    "Auth/CreateUser": "createUser",
    "Auth/GetUser": "getUser",
    "Auth/UpdateUser": "updateUser",
    "Auth/ResetPassword": "resetPassword",
    "Auth/RevokeUserSessions": "revokeUserSessions",
    "Auth/ResetMfa": "resetMfa",
    "Clients/GetTask": "getTask",
    "Vault/GetCredential": "getCredential",
    "Vault/GeneratePassword": "generatePassword",
}
ENUMS: dict[str, tuple[type[StrEnum], EnumDescriptor]] = {
    "Role": (Role, auth_pb2.Role.DESCRIPTOR),
    "ClientStatus": (ClientStatus, clients_pb2.ClientStatus.DESCRIPTOR),
    "TaskStatus": (TaskStatus, clients_pb2.TaskStatus.DESCRIPTOR),
    "TaskPriority": (TaskPriority, clients_pb2.TaskPriority.DESCRIPTOR),
    "AuditAction": (AuditAction, events_pb2.AuditAction.DESCRIPTOR),
}


def resolved(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].removeprefix("#/components/schemas/")]
    return schema


def typed(schema: dict[str, Any]) -> bool:
    """Whether a generator can give it a type: it says one, or every alternative does."""
    schema = resolved(schema)
    if "type" in schema or "enum" in schema or "const" in schema:
        return True
    alternatives: list[dict[str, Any]] = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf") or []
    return bool(alternatives) and all(typed(s) for s in alternatives)


def every_schema(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "type" in node or "$ref" in node or "anyOf" in node:
            yield where, node
        for key, value in node.items():
            yield from every_schema(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from every_schema(value, f"{where}/{i}")


def test_every_property_of_every_schema_has_a_type() -> None:
    properties = {f"{name}.{p}": s for name, model in SCHEMAS.items() for p, s in model.get("properties", {}).items()}
    assert len(properties) > 100

    assert [name for name, schema in properties.items() if not typed(schema)] == []


def test_every_parameter_and_body_has_a_type() -> None:
    parameters = [(key, p["name"], p["schema"]) for key, op in OPERATIONS.items() for p in op.get("parameters", [])]
    bodies = [
        (key, content["schema"])  # JSON, or an import's multipart/form-data
        for key, op in OPERATIONS.items()
        if "requestBody" in op
        for content in op["requestBody"]["content"].values()
    ]
    responses = [
        (key, status, content["schema"])
        for key, op in OPERATIONS.items()
        for status, response in op["responses"].items()
        for content in response.get("content", {}).values()
    ]

    assert [(key, name) for key, name, schema in parameters if not typed(schema)] == []
    assert [key for key, schema in bodies if not typed(schema)] == []
    assert [(key, status) for key, status, schema in responses if not typed(schema)] == []


@pytest.mark.parametrize("name", list(ENUMS))
def test_each_enum_is_one_named_schema_with_the_values_of_its_proto_enum(name: str) -> None:
    values, proto = ENUMS[name]
    proto_values = [enum_name(proto, number) for number in proto.values_by_number if number != 0]

    assert SCHEMAS[name]["enum"] == [v.value for v in values] == proto_values


def test_no_enum_is_written_inline() -> None:
    inline = [where for where, schema in every_schema(SPEC) if "enum" in schema and where.count("/") > 3]
    # Only the probes' own status (ok, ready) and a service's health (serving, unavailable) are small enums of
    # their own, not the domain's.
    assert sorted(inline) == [
        "/components/schemas/ServicesOut/properties/services/additionalProperties",
        "/components/schemas/StatusOut/properties/status",
    ]


# A second route of an operation, with an operationId of its own.
SECOND_ROUTES = {("POST", "/clients/{clientId}/credentials/{credentialId}/reveal"): "revealCredentialWithReason"}


def test_operation_ids_are_short_stable_and_unique() -> None:
    found = {
        CATALOGUE[key][0]: op["operationId"]
        for key, op in OPERATIONS.items()
        if key in CATALOGUE and key not in SECOND_ROUTES
    }

    assert found == OPERATION_IDS
    assert {key: OPERATIONS[key]["operationId"] for key in SECOND_ROUTES} == SECOND_ROUTES
    assert len({op["operationId"] for op in OPERATIONS.values()}) == len(OPERATIONS)


def test_path_parameters_are_named_as_in_the_contract() -> None:
    names = {p["name"] for op in OPERATIONS.values() for p in op.get("parameters", []) if p["in"] == "path"}

    assert names == {"clientId", "taskId", "credentialId", "version", "userId", "sessionId", "requestId", "grantId"}
    assert {path for _, path in CATALOGUE} <= set(SPEC["paths"])


@pytest.mark.parametrize(("method", "path"), list(CATALOGUE))
def test_security_roles_and_errors_follow_from_the_policy(method: str, path: str) -> None:
    op, (_, rule) = OPERATIONS[(method, path)], CATALOGUE[(method, path)]

    if rule == PUBLIC:
        assert (op["security"], op["description"][:7]) == ([], "Public.")
        assert "403" not in op["responses"]
    else:
        assert op["security"] == [{"HTTPBearer": []}]
        assert op["description"].startswith("Roles: " + ", ".join(sorted(rule)) + ".")
        assert "401" in op["responses"]
        assert "403" in op["responses"]  # a role left out, or a token of a temporary password


def test_servers_are_set() -> None:
    assert SPEC["servers"] == [{"url": "/", "description": SPEC["servers"][0]["description"]}]


def test_an_operation_must_be_in_the_policy_take_a_call_and_say_what_it_does() -> None:
    router = APIRouter()

    with pytest.raises(LookupError, match="Clients/DropDatabase"):
        operation(router.delete, "/clients", "Clients/DropDatabase")

    async def unchecked(client_id: str) -> None:
        """A client."""

    async def undocumented(call: Call) -> None: ...

    for endpoint in (unchecked, undocumented):
        with pytest.raises(TypeError, match="needs a docstring and one parameter typed Call"):
            operation(router.get, "/clients/{clientId}", "Clients/GetClient")(endpoint)

    async def users(call: Call) -> None:
        """Every user.

        For administration tools."""

    operation(router.get, "/users", "Auth/ListUsers", errors=(422,))(users)
    route = router.routes[0]
    assert isinstance(route, APIRoute)
    assert (route.operation_id, route.summary, route.description) == (
        "listUsers",
        "Every user",
        "Roles: admin. For administration tools.",
    )
    assert sorted(route.responses) == [401, 403, 422, 503]


EDITS = {  # issue 18: what reads an ETag, what takes If-Match (and may answer 412), what takes an Idempotency-Key
    ("GET", "/clients/{clientId}"): "ETag",
    ("GET", "/clients/{clientId}/tasks/{taskId}"): "ETag",
    ("GET", "/clients/{clientId}/credentials/{credentialId}/metadata"): "ETag",
    ("PATCH", "/clients/{clientId}"): "If-Match",
    ("PATCH", "/clients/{clientId}/tasks/{taskId}"): "If-Match",
    ("PATCH", "/clients/{clientId}/credentials/{credentialId}"): "If-Match",
    ("POST", "/clients"): "Idempotency-Key",
    ("POST", "/clients/{clientId}/tasks"): "Idempotency-Key",
    ("POST", "/clients/{clientId}/credentials"): "Idempotency-Key",
}


@pytest.mark.parametrize(("method", "path"), list(EDITS))
def test_etags_if_match_and_idempotency_keys_are_in_the_document(method: str, path: str) -> None:
    op, header = OPERATIONS[(method, path)], EDITS[(method, path)]
    headers = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "header"}

    if header == "ETag":
        assert "ETag" in op["responses"]["200"]["headers"]
        return
    assert header in headers, op.get("parameters")
    assert headers[header]["required"] is False
    assert headers[header]["description"]
    if header == "If-Match":
        assert "412" in op["responses"]
        assert "ETag" in op["responses"]["200"]["headers"]
    else:
        assert headers[header]["schema"]["anyOf"][0]["maxLength"] == 255
        assert "422" in op["responses"]
        assert "ETag" in op["responses"]["201"]["headers"]


def test_the_generator_is_documented_no_store() -> None:
    op = OPERATIONS[("POST", "/tools/generate-password")]

    assert "no-store" in op["description"]
    assert op["responses"]["200"]["headers"]["Cache-Control"]["schema"] == {"type": "string", "const": "no-store"}
    assert "422" in op["responses"]


def test_the_reveal_with_a_reason_is_typed_and_428_is_documented() -> None:
    post = OPERATIONS[("POST", "/clients/{clientId}/credentials/{credentialId}/reveal")]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    reveal_in = SCHEMAS["RevealIn"]["properties"]

    assert body["anyOf"][0] == {"$ref": "#/components/schemas/RevealIn"}
    assert post["requestBody"].get("required", False) is False  # the body is optional
    assert reveal_in["reason"]["anyOf"][0]["maxLength"] == 500
    assert reveal_in["ticketRef"]["anyOf"][0]["maxLength"] == 100
    assert post["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RevealedOut"
    }
    for key in [
        ("GET", "/clients/{clientId}/credentials/{credentialId}"),
        ("POST", "/clients/{clientId}/credentials/{credentialId}/reveal"),
        ("POST", "/clients/{clientId}/credentials/{credentialId}/versions/{version}/reveal"),
        ("GET", "/clients/{clientId}/credentials/{credentialId}/totp"),
    ]:
        assert "428" in OPERATIONS[key]["responses"], key
    assert SCHEMAS["ClientOut"]["properties"]["revealReasonRequired"]["type"] == "boolean"
    assert "revealReasonRequired" in SCHEMAS["ClientOut"]["required"]
    assert SCHEMAS["ClientPatch"]["properties"]["revealReasonRequired"]["type"] == "boolean"
