"""Forged and stale access tokens are refused by the gateway (by the services: tests/service/test_auth.py)."""

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.forgeries import FORGERIES, Forgery, resigned
from tests.system import Api, Session


def real_key(api: Api) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(api.system.secrets()["token_signing_key"]))


@pytest.fixture(scope="module")
async def reader(api: Api) -> Session:
    return await api.session("read_only")


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
async def test_gateway_refuses_forged_tokens(api: Api, reader: Session, forge: Forgery) -> None:
    forged = forge(reader.access_token, real_key(api))

    r = await api.raw.get("/users/me", headers={"Authorization": f"Bearer {forged}"})

    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] in {"invalid access token", "access token expired"}


async def test_the_real_key_with_the_real_claims_is_accepted(api: Api, reader: Session) -> None:
    # The control for the forgeries above: re-signing the same claims with the real key passes.
    r = await api.raw.get(
        "/users/me", headers={"Authorization": f"Bearer {resigned()(reader.access_token, real_key(api))}"}
    )

    assert r.status_code == 200


async def test_missing_or_malformed_authorization_is_401(api: Api) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}, {"Authorization": "Bearer x.y"}):
        r = await api.raw.get("/users/me", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
