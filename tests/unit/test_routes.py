"""The gateway's routers may be included in any order (app.py puts the hottest first): no method and path is served
by routes of two routers, so which router is asked first never decides which route answers — but for one, which
the order settles and this test pins."""

import re

from fastapi.routing import APIRoute

from clientvault.settings import GatewaySettings
from gateway.app import create_app

APP = create_app(GatewaySettings())
# Each path parameter filled with values that also spell literal segments (`/users/me`, `.../credentials:import`).
FILLS = ("x1", "me", "totp", "import", "sessions")
# The caller's own profile (the auth router's `/users/me`) is also a user by id (the users router's `/users/{userId}`):
# app.py includes the auth router first.
ORDERED = {("GET", "/users/me"): "/users/me"}


def routers() -> list[list[APIRoute]]:
    found = []
    for route in APP.routes:
        inner = getattr(route, "original_router", None)  # an included router (FastAPI keeps it whole)
        if inner is not None:
            found.append([r for r in inner.routes if isinstance(r, APIRoute)])
    return found


def test_the_app_includes_its_routers() -> None:
    assert len(routers()) >= 9


def test_no_method_and_path_is_served_by_two_routers() -> None:
    included = routers()
    clashes = []
    for index, router in enumerate(included):
        for route in router:
            for method in route.methods or ():
                for fill in FILLS:
                    path = re.sub(r"\{[^}]+\}", fill, route.path)
                    serving = {
                        other_index
                        for other_index, other in enumerate(included)
                        for candidate in other
                        if method in (candidate.methods or ()) and candidate.path_regex.match(path)
                    }
                    if serving != {index} and (method, path) not in ORDERED:
                        clashes.append((method, path, sorted(serving)))
    assert clashes == []


def test_the_one_path_two_routers_serve_goes_to_the_route_the_order_says() -> None:
    for (method, path), template in ORDERED.items():
        first = next(
            route
            for router in routers()
            for route in router
            if method in (route.methods or ()) and route.path_regex.match(path)
        )
        assert first.path == template
