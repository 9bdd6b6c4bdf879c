"""Request bodies read as strict JSON: a key given twice is refused (422), not settled by the last value.

Parsers disagree on duplicate keys (first wins, last wins, error), so a body that a proxy, a WAF or an audit
reader sees one way could reach the service meaning another. Every router is built with `StrictJsonRoute`.
"""

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

DUPLICATE_KEY = "a key appears twice in the JSON body"


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            # FastAPI answers a JSONDecodeError as a 422 on the body (gateway/errors.py words it).
            raise json.JSONDecodeError(DUPLICATE_KEY, "", 0)
        found[key] = value
    return found


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), object_pairs_hook=_one_value_per_key)
        return self._json


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handle(StrictJsonRequest(request.scope, request.receive))

        return strict
