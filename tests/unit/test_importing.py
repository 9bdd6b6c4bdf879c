"""Reading other tools' export files (services/vault/importing.py) and TOTP seeds (services/vault/totp.py):
the variants the e2e files do not carry."""

import base64
import json

import pytest

from clientvault.errors import Invalid
from services.vault import importing, totp

SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def keepass(*strings: tuple[str, str]) -> bytes:
    fields = "".join(f"<String><Key>{k}</Key><Value>{v}</Value></String>" for k, v in strings)
    return f"<KeePassFile><Root><Group><Entry>{fields}</Entry></Group></Root></KeePassFile>".encode()


def test_keepass_hex_and_base32_seeds_with_their_settings_become_otpauth_uris() -> None:
    hex_seed = base64.b32decode(SEED).hex()
    [entry] = importing.parse(
        "keepass-xml",
        keepass(("Title", "T"), ("Password", "p"), ("TimeOtp-Secret-Hex", hex_seed), ("TimeOtp-Length", "8"),
                ("TimeOtp-Period", "60"), ("TimeOtp-Algorithm", "HMAC-SHA-256")),
    )  # fmt: skip

    assert entry.totp == f"otpauth://totp/T?secret={SEED}&algorithm=SHA256&digits=8&period=60"
    assert totp.code_now(totp.normalized(entry.totp), 0).digits == 8


def test_a_protected_keepass_value_is_a_problem_of_its_row() -> None:
    content = b"<KeePassFile><Root><Group><Entry><String><Key>Password</Key><Value Protected='True'>eA==</Value>"
    content += b"</String></Entry></Group></Root></KeePassFile>"

    [entry] = importing.parse("keepass-xml", content)

    assert entry.problem is not None
    assert "protected" in entry.problem


@pytest.mark.parametrize(
    "header",
    [
        "url,username,password,totp,extra,name,grouping,fav",  # LastPass
        "Title,Url,Username,Password,OTPAuth,Notes",  # 1Password 8 (some versions)
        '"Account","Login Name","Password","Web Site","Comments"',  # KeePass 2 CSV
    ],
)
def test_csv_headers_of_other_tools_are_understood(header: str) -> None:
    names = [n.strip('"').lower() for n in header.split(",")]
    values = {
        "name": "Lbl",
        "title": "Lbl",
        "account": "Lbl",
        "password": "pw",
        "url": "https://u",
        "web site": "https://u",
    }
    row = ",".join(values.get(n, "") for n in names)

    [entry] = importing.parse("csv", f"{header}\n{row}\n".encode())

    assert (entry.label, entry.secret, entry.url, entry.problem) == ("Lbl", "pw", "https://u", None)


def test_a_bitwarden_item_with_a_number_for_a_field_is_a_problem_not_a_crash() -> None:
    document = {"items": [{"type": 1, "name": 5, "login": {"password": "p"}}, {"type": 3, "name": "Card"}]}

    entries = importing.parse("bitwarden-json", json.dumps(document).encode())

    assert [e.problem for e in entries] == [
        "a field of the item is not text",
        "the item is a card, not a login (type 1)",
    ]


def test_more_rows_than_an_import_takes_is_refused_as_a_whole() -> None:
    rows = "".join(f"n{i},p\n" for i in range(importing.MAX_ROWS + 1))

    with pytest.raises(Invalid, match="split it"):
        importing.parse("csv", f"name,password\n{rows}".encode())


@pytest.mark.parametrize(
    "seed", ["otpauth://totp/x?secret=" + SEED + "&encoder=steam", "otpauth://totp/x?secret=A&secret=B"]
)
def test_steam_and_doubled_parameters_are_refused(seed: str) -> None:
    with pytest.raises(Invalid) as refused:
        totp.normalized(seed)
    assert refused.value.field == "totp_secret"
