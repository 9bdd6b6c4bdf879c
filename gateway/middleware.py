"""Pure ASGI middleware (no per-request task or body copy): the request id, the body size limit, the
security headers and the access log.

- `X-Request-ID` is echoed when it matches `[A-Za-z0-9._-]{1,128}`, otherwise a new one is made; it is
  bound to the logs, forwarded to services as `x-request-id` and set on every response.
- A body over the limit is answered 413 before the route runs, whether it declares its length or not.
- Every response says: do not sniff, do not cache (unless the route said otherwise), do not frame, send
  no referrer, HTTPS only; and, except on the interactive docs, that it may load nothing (JSON only).
- One observation of `clientvault_http_request_duration_seconds` per request, labelled with the route template
  (never the path with its ids) and a method from a fixed set.
- One `http.request` log line per request (the access log; uvicorn's own is off): method, the route's
  template (`/clients/{clientId}`; none when no route matched), path (never the query string), status,
  duration, and the client IP and user id once a route's operation check (`gateway.calls`) has resolved them
  (bound to the log context).
"""

import json
import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clientvault import metrics
from clientvault.logging import get_logger

log = get_logger(__name__)

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
]
API_ONLY = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
NO_STORE = (b"cache-control", b"no-store")
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect")  # Swagger UI's page loads its scripts and styles
# A client chooses the method: any other is labelled "other", so no one can mint series at will.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a request no route matched (404, 405)


class RequestContext:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, large_bodies: tuple[re.Pattern[str], int] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.large_bodies = large_bodies  # (the paths it covers, their limit): a route that takes a file
        self._timings: dict[tuple[str, str, int], Any] = {}  # (method, route, status) -> histogram child

    def _timing(self, method: str, route: str, status: int) -> Any:
        key = (method, route, status)
        timing = self._timings.get(key)
        if timing is None:
            timing = self._timings[key] = metrics.HTTP_REQUESTS.labels(method, route, str(status))
        return timing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        added = [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]
        if scope["path"] not in DOCS_PATHS:
            added.append(API_ONLY)
        status = 500  # what the client gets if the app fails before it answers
        started_at = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                own = message.get("headers", [])
                cached = any(name.lower() == b"cache-control" for name, _ in own)
                message["headers"] = [*own, *added] if cached else [*own, *added, NO_STORE]
            await send(message)

        try:
            await self._limited(scope, receive, send_with_id, headers)
        finally:
            elapsed = time.perf_counter() - started_at
            route = getattr(scope.get("route"), "path", None)  # set by the router once it matched: its template
            method = scope["method"] if scope["method"] in METHODS else "other"
            self._timing(method, route or UNMATCHED, status).observe(elapsed)
            log.info(
                "http.request",
                method=scope["method"],
                route=route,
                path=scope["path"][:512],
                status=status,
                ms=round(elapsed * 1000, 2),
            )

    async def _limited(self, scope: Scope, receive: Receive, send_with_id: Any, headers: dict[bytes, bytes]) -> None:
        limit = self.max_body_bytes
        if self.large_bodies is not None and self.large_bodies[0].fullmatch(scope["path"]):
            limit = self.large_bodies[1]
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(send_with_id, limit)
            return
        if declared.isdigit() and b"transfer-encoding" not in headers:
            # No body, or one framed by a Content-Length within the limit: the HTTP server reads no more than that,
            # so only a chunked body needs counting (two wrappers less on every GET).
            await self.app(scope, receive, send_with_id)
            return

        received = 0
        started = answered = False

        async def limited_receive() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer now and tell the route the client left: whatever it answers is dropped.
                    if not started and not answered:
                        answered = True
                        await _too_large(send_with_id, limit)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if answered:
                return
            started = started or message["type"] == "http.response.start"
            await send_with_id(message)

        await self.app(scope, limited_receive, tracking_send)


async def _too_large(send: Any, limit: int) -> None:
    size = f"{limit / 2**20:.0f} MiB" if limit >= 2**20 else f"{limit} bytes"  # an import's: 10 MiB and framing
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Content Too Large",
            "status": 413,
            "detail": f"the request body is over {size}",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
