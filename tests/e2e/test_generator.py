"""POST /tools/generate-password: passwords and passphrases that meet what was asked, never cached, never logged."""

import asyncio
import math
import string
from typing import Any

import grpc
import pytest

from clientvault.v1 import vault_pb2, vault_pb2_grpc
from services.vault.generator import SYMBOLS, word_list
from tests.system import Api, Session

PROBLEM = "application/problem+json"
ROUTE = "/tools/generate-password"


async def generate(api: Api, session: Session, **body: Any) -> dict[str, Any]:
    r = await api.raw.post(ROUTE, headers=session.headers, json=body)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("length", [8, 20, 64, 128])
async def test_a_password_has_the_length_and_every_kind_of_character(
    api: Api, sessions: dict[str, Session], length: int
) -> None:
    made = await generate(api, sessions["read_only"], length=length)

    password = made["password"]
    assert len(password) == length
    assert set(password) <= set(string.ascii_letters + string.digits + SYMBOLS)
    for kind in (string.ascii_lowercase, string.ascii_uppercase, string.digits, SYMBOLS):
        assert any(char in kind for char in password), (kind, password)
    assert made["entropyBits"] == pytest.approx(length * math.log2(26 + 26 + 10 + len(SYMBOLS)))


async def test_without_symbols_only_letters_and_digits(api: Api, sessions: dict[str, Session]) -> None:
    for _ in range(20):
        password = (await generate(api, sessions["manager"], length=12, symbols=False))["password"]
        assert len(password) == 12
        assert set(password) <= set(string.ascii_letters + string.digits), password
        assert any(c.isdigit() for c in password)
        assert any(c.isupper() for c in password)


async def test_the_default_is_twenty_characters_with_symbols(api: Api, sessions: dict[str, Session]) -> None:
    password = (await generate(api, sessions["admin"]))["password"]

    assert len(password) == 20
    assert any(char in SYMBOLS for char in password)


@pytest.mark.parametrize("words", [3, 6, 12])
async def test_a_passphrase_has_that_many_words_of_the_eff_long_list(
    api: Api, sessions: dict[str, Session], words: int
) -> None:
    made = await generate(api, sessions["read_only"], words=words)

    chosen = made["password"].split(" ")
    assert len(chosen) == words
    assert set(chosen) <= set(word_list())
    assert len(word_list()) == 7776
    assert "abacus" in word_list()
    assert made["entropyBits"] == pytest.approx(words * math.log2(7776))


async def test_two_answers_differ(api: Api, sessions: dict[str, Session]) -> None:
    session = sessions["read_only"]
    made = await asyncio.gather(*(generate(api, session, length=16) for _ in range(10)))

    assert len({m["password"] for m in made}) == 10


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"length": 7}, "length", "greater than or equal to 8"),
        ({"length": 129}, "length", "less than or equal to 128"),
        ({"words": 2}, "words", "greater than or equal to 3"),
        ({"words": 13}, "words", "less than or equal to 12"),
        ({"words": 4, "length": 20}, "body", "words makes a passphrase: give it alone, without length or symbols"),
        ({"words": 4, "symbols": False}, "body", "words makes a passphrase: give it alone, without length or symbols"),
        ({"length": "twenty"}, "length", "valid integer"),
        ({"length": None}, "length", "cannot be null"),
        ({"size": 20}, "size", "unknown field"),
    ],
)
async def test_out_of_range_or_contradictory_is_422_with_a_reason(
    api: Api, sessions: dict[str, Session], body: dict[str, Any], field: str, message: str
) -> None:
    r = await api.raw.post(ROUTE, headers=sessions["read_only"].headers, json=body)

    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    [error] = r.json()["errors"]
    assert error["field"] == field
    assert message in error["message"]


async def test_the_vault_refuses_contradictions_itself(api: Api, sessions: dict[str, Session]) -> None:
    """The service's own check (a direct caller skips the gateway's model)."""
    token = sessions["read_only"].access_token
    async with grpc.aio.insecure_channel(api.system.info_address("vault")) as channel:
        stub = vault_pb2_grpc.VaultStub(channel)
        for request, field in (
            (vault_pb2.GeneratePasswordRequest(words=5, length=30), "words"),
            (vault_pb2.GeneratePasswordRequest(length=4), "length"),
            (vault_pb2.GeneratePasswordRequest(words=40), "words"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GeneratePassword(request, metadata=(("authorization", f"Bearer {token}"),))
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert dict(refused.value.trailing_metadata() or ())["invalid-field"] == field


async def test_it_needs_a_token(api: Api) -> None:
    r = await api.raw.post(ROUTE, json={"length": 20})

    assert r.status_code == 401


async def test_a_generated_password_is_never_logged(api: Api, sessions: dict[str, Session]) -> None:
    made = [await generate(api, sessions["admin"], length=40), await generate(api, sessions["admin"], words=8)]
    await asyncio.sleep(0.5)  # the log lines of those requests are written

    logs = "\n".join(path.read_text(errors="replace") for path in (api.system.data_dir / "logs").glob("*.log"))
    assert '"/tools/generate-password"' in logs or "generate-password" in logs  # the requests are there…
    for each in made:
        assert each["password"] not in logs  # …their answers are not
