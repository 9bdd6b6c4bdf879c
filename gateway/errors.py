"""The only place a failure becomes HTTP: RFC 9457 problem+json for every error the gateway answers."""

from http import HTTPStatus
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException

from clientvault import errors
from clientvault.logging import get_logger
from clientvault.rpc import GONE_TRAILER, PRECONDITION_TRAILER, REQUIRED_TRAILER
from gateway.strict_json import DUPLICATE_KEY

log = get_logger(__name__)

HTTP = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
DOMAIN = {
    errors.Gone: 410,  # before NotFound, its base
    errors.PreconditionFailed: 412,  # before Conflict, its base
    errors.PreconditionRequired: 428,  # before Conflict, its base
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.Conflict: 409,
    errors.Forbidden: 403,
    errors.Unauthenticated: 401,
    errors.Invalid: 422,
    errors.Throttled: 429,
    errors.Unavailable: 503,
    errors.DataLoss: 500,
}
RETRY_AFTER_UNAVAILABLE_S = "5"
MEDIA_TYPE = "application/problem+json"
NOT_JSON = "the body is not valid JSON"


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid")  # documented as it is sent: no other members

    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details; 422 adds `errors`."""

    model_config = ConfigDict(extra="forbid")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status == 503:
        headers.setdefault("Retry-After", RETRY_AFTER_UNAVAILABLE_S)
    return JSONResponse(body, status, headers, media_type=MEDIA_TYPE)


async def on_rpc_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, grpc.aio.AioRpcError)
    trailers = {key: value for key, value in error.trailing_metadata() or () if isinstance(value, str)}
    status = HTTP.get(error.code(), 500)
    if status == 404 and trailers.get(GONE_TRAILER) == "true":
        status = 410  # destroyed for good (errors.Gone)
    if status == 409 and trailers.get(PRECONDITION_TRAILER) == "true":
        status = 412  # an If-Match that no longer holds (errors.PreconditionFailed)
    if status == 409 and trailers.get(REQUIRED_TRAILER) == "true":
        status = 428  # a reveal of a client whose reveals need a reason, without one (errors.PreconditionRequired)
    if status == 429 and "retry-after" not in trailers:
        status = 503  # not a limit of ours (those say when to retry): a service at its concurrency bound
    if status >= 500:
        log.warning("rpc.unanswered", code=error.code().name)
    shown = status < 500 or error.code() is grpc.StatusCode.DATA_LOSS  # a data loss's message is for the user
    detail = (error.details() or "") if shown else "a service could not answer; try again later"
    headers = {"Retry-After": trailers["retry-after"]} if "retry-after" in trailers else {}
    if status == 422:  # a service's own validation: the same shape as the gateway's
        return _invalid({_named(trailers.get("invalid-field")): detail})
    return problem(status, detail, headers)


async def on_domain_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, errors.DomainError)
    status = next(code for kind, code in DOMAIN.items() if isinstance(error, kind))
    if isinstance(error, errors.Invalid):
        return _invalid({_named(error.field): str(error)})
    headers = {"Retry-After": str(error.retry_after_s)} if isinstance(error, errors.Throttled) else None
    return problem(status, str(error), headers)


async def on_validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    found: dict[str, str] = {}
    for e in error.errors():
        # A value that fits no member of a nullable field fails once per member: one error a field, the first.
        found.setdefault(_field(e), _message(e))
    return _invalid(found)


def _invalid(found: dict[str, str]) -> JSONResponse:
    """The one 422 shape, whoever found the request invalid: an `errors` entry per field and its message."""
    return problem(422, "the request is not valid", errors=[{"field": f, "message": m} for f, m in found.items()])


def _named(field: str | None) -> str:
    """A field a service named (snake_case) as the caller wrote it; the body as a whole when it named none."""
    return to_camel(field) if field else "body"


def _field(error: dict[str, Any]) -> str:
    """'pageSize' for a query parameter, 'email' for a body field, 'idempotencyKey' for a header, 'body' for the
    body as a whole. The wire models are flat, so what pydantic puts after the name is the inside of a type (a
    union member such as `literal['low','medium','high']`, `function-after[...]`), which means nothing to a
    caller."""
    if error["type"] == "json_invalid":
        return "body"
    location = error["loc"]
    if location[0] == "header" and len(location) > 1:  # Idempotency-Key -> idempotencyKey, as the services name it
        return to_camel(str(location[1]).lower().replace("-", "_"))
    return str(location[1] if len(location) > 1 else location[0])


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "json_invalid":
        return DUPLICATE_KEY if error.get("ctx", {}).get("error") == DUPLICATE_KEY else NOT_JSON
    said = error.get("ctx", {}).get("error")  # what our validator raised, without pydantic's "Value error, " before it
    if error["type"] == "value_error" and said is not None:
        return str(said)
    return str(error["msg"])


async def on_http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    if error.status_code == 400 and error.__cause__ is not None:
        # FastAPI's one 400: a body that json.loads raised on other than a syntax error (not UTF-8, nested too
        # deep, an integer of thousands of digits). To the caller it is as much not JSON as a syntax error.
        return _invalid({"body": NOT_JSON})
    if error.status_code == 400:
        # Starlette's one 400: a form body it could not parse ("Invalid multipart data.", "Missing boundary in
        # multipart."): an invalid body like any other, named as the one 422 names it. Its words hold no input.
        return _invalid({"body": f"not valid form data: {error.detail}"})
    detail = error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
    return problem(error.status_code, detail, dict(error.headers or {}))


async def on_bug(_request: Request, error: Exception) -> JSONResponse:
    log.error("gateway.failed", exc_info=error)
    return problem(500, "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(grpc.aio.AioRpcError, on_rpc_error)
    app.add_exception_handler(errors.DomainError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_bug)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the problem+json errors a route can answer."""
    return {
        status: {"model": Problem, "description": HTTPStatus(status).phrase, "content": {MEDIA_TYPE: {}}}
        for status in sorted({*statuses, 503})
    }
