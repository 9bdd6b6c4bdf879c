"""Forged and stale access tokens are refused by the gateway and by the services themselves."""

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from clientvault.v1 import auth_pb2, auth_pb2_grpc
from tests.system import Api, Session


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def real_key(api: Api) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(api.system.secrets()["token_signing_key"]))


def claims_of(session: Session) -> dict[str, Any]:
    return jwt.decode(session.access_token, options={"verify_signature": False})


def alg_none(session: Session, api: Api) -> str:
    _header, payload, _ = session.access_token.split(".")
    return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'}).encode())}.{payload}."


def changed_payload(session: Session, api: Api) -> str:
    header, _, signature = session.access_token.split(".")
    claims = claims_of(session) | {"role": "admin"}
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


def hs256_with_public_key(session: Session, api: Api) -> str:
    public = real_key(api).public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    payload = b64(json.dumps(claims_of(session) | {"role": "admin"}).encode())
    import hashlib
    import hmac

    signature = hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def resigned(**changes: Any) -> Callable[[Session, Api], str]:
    def make(session: Session, api: Api) -> str:
        claims = claims_of(session) | changes
        return jwt.encode(claims, real_key(api), algorithm="EdDSA", headers={"kid": "k1"})

    return make


def another_key(session: Session, api: Api) -> str:
    return jwt.encode(claims_of(session), Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "k1"})


def unknown_kid(session: Session, api: Api) -> str:
    return jwt.encode(claims_of(session), real_key(api), algorithm="EdDSA", headers={"kid": "k-other"})


def missing_claim(session: Session, api: Api) -> str:
    claims = claims_of(session)
    del claims["sid"]
    return jwt.encode(claims, real_key(api), algorithm="EdDSA", headers={"kid": "k1"})


FORGERIES = {
    "alg none": alg_none,
    "changed payload": changed_payload,
    "HS256 signed with the public key": hs256_with_public_key,
    "expired": resigned(iat=int(time.time()) - 3600, exp=int(time.time()) - 60),
    "wrong issuer": resigned(iss="someone-else"),
    "wrong audience": resigned(aud="another-api"),
    "audience as a list": resigned(aud=["clientvault", "another-api"]),
    "lives longer than auth signs": resigned(exp=int(time.time()) + 7 * 24 * 3600),
    "signed by another key": another_key,
    "unknown key id": unknown_kid,
    "no session id": missing_claim,
    "unknown role": resigned(role="root"),
}


@pytest.fixture(scope="module")
async def reader(api: Api) -> Session:
    return await api.session("read_only")


@pytest.fixture(scope="module")
async def admin(api: Api) -> Session:
    return await api.session("admin")


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
async def test_gateway_refuses_forged_tokens(api: Api, reader: Session, forge: Callable[[Session, Api], str]) -> None:
    session = reader

    r = await api.raw.get("/users/me", headers={"Authorization": f"Bearer {forge(session, api)}"})

    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] in {"invalid access token", "access token expired"}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
async def test_auth_service_refuses_forged_tokens_on_a_direct_call(
    api: Api, admin: Session, forge: Callable[[Session, Api], str]
) -> None:
    session = admin
    async with grpc.aio.insecure_channel(api.system.info_address("auth")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await auth_pb2_grpc.AuthStub(channel).GetMe(
                auth_pb2.GetMeRequest(), metadata=[("authorization", f"Bearer {forge(session, api)}")], timeout=5
            )

    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_the_real_key_with_the_real_claims_is_accepted(api: Api, reader: Session) -> None:
    # The control for the forgeries above: re-signing the same claims with the real key passes.
    r = await api.raw.get("/users/me", headers={"Authorization": f"Bearer {resigned()(reader, api)}"})

    assert r.status_code == 200


async def test_missing_or_malformed_authorization_is_401(api: Api) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}, {"Authorization": "Bearer x.y"}):
        r = await api.raw.get("/users/me", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"


async def test_the_service_refuses_a_role_the_policy_does_not_allow(api: Api, reader: Session, admin: Session) -> None:
    async with grpc.aio.insecure_channel(api.system.info_address("auth")) as channel:
        stub = auth_pb2_grpc.AuthStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListUsers(
                auth_pb2.ListUsersRequest(), metadata=[("authorization", f"Bearer {reader.access_token}")]
            )
        listed = await stub.ListUsers(
            auth_pb2.ListUsersRequest(), metadata=[("authorization", f"Bearer {admin.access_token}")]
        )

    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert reader.account.email in {user.email for user in listed.users}


async def test_a_direct_call_without_a_token_is_refused(api: Api) -> None:
    async with grpc.aio.insecure_channel(api.system.info_address("auth")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await auth_pb2_grpc.AuthStub(channel).GetMe(auth_pb2.GetMeRequest(), timeout=5)

    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
