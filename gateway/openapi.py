"""The OpenAPI document as the gateway really answers: FastAPI describes each route's own responses, but not
what the error handlers and the middleware do to every response, so that is added here once.

- Errors are `application/problem+json` with the `Problem` schema (FastAPI would file a response model
  under `application/json`), and FastAPI's own 422 shape, which the gateway never sends, is dropped.
- Every response carries `X-Request-ID`; 401 carries `WWW-Authenticate`, 429 and 503 `Retry-After`.
- Every route that takes a body can answer 413 (the middleware's size limit).
- A multipart form (an import's) is closed like every JSON body: `additionalProperties: false` (the route
  refuses another field with 422), so a generated client types it without a catch-all.
- The bearer scheme is declared here: the operations name it (gateway/calls.py `operation`), but no route runs it as
  a dependency, so FastAPI does not find it.
"""

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder

from gateway.calls import BEARER, BEARER_NAME
from gateway.errors import MEDIA_TYPE
from gateway.middleware import REQUEST_ID

UNUSED_SCHEMAS = ("HTTPValidationError", "ValidationError")
PROBLEM = {"schema": {"$ref": "#/components/schemas/Problem"}}
REQUEST_ID_HEADER = {
    "description": "The request's id: the caller's own X-Request-ID when it is safe, else a new one.",
    "required": True,
    "schema": {"type": "string", "pattern": f"^{REQUEST_ID.pattern}$"},
}
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "pattern": "^Bearer"}}},
    429: {"Retry-After": {"description": "Seconds to wait.", "required": True, "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "Seconds to wait.", "required": True, "schema": {"type": "integer"}}},
}


def install(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            as_answered(generate())  # FastAPI keeps the document in app.openapi_schema
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to change the document


def as_answered(spec: dict[str, Any]) -> dict[str, Any]:
    for item in spec["paths"].values():
        for operation in item.values():
            responses: dict[str, Any] = operation["responses"]
            form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {})
            if ref := form.get("schema", {}).get("$ref"):
                spec["components"]["schemas"][ref.rpartition("/")[2]]["additionalProperties"] = False
            if "requestBody" in operation and "413" not in responses:
                responses["413"] = {"description": HTTPStatus(413).phrase, "content": {MEDIA_TYPE: PROBLEM}}
            for status, response in list(responses.items()):
                content = response.get("content", {})
                if _is_fastapi_validation_error(content):
                    del responses[status]
                    continue
                if MEDIA_TYPE in content:  # `documented` errors, whose model FastAPI filed under application/json
                    response["content"] = {MEDIA_TYPE: PROBLEM}
                response["headers"] = {
                    "X-Request-ID": REQUEST_ID_HEADER,
                    **ERROR_HEADERS.get(int(status), {}),
                    **response.get("headers", {}),
                }
    for name in UNUSED_SCHEMAS:
        spec["components"]["schemas"].pop(name, None)
    bearer = jsonable_encoder(BEARER.model, by_alias=True, exclude_none=True)
    spec["components"]["securitySchemes"] = {BEARER_NAME: bearer}
    return spec


def _is_fastapi_validation_error(content: dict[str, Any]) -> bool:
    schema = content.get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))
