"""Everyday credential tools through the gateway, as an agency uses them on the day it moves its passwords in:
TOTP codes from a seed kept with a credential, importing the files other tools export (Bitwarden's unencrypted
JSON, KeePass 2's XML, a CSV), and exporting a client's credentials encrypted with age.

The export files are written here in the shapes the tools document (Bitwarden's "Export vault" .json, KeePass's
"KeePass XML (2.x)" export, Bitwarden's CSV header), with Unicode, empty fields, TOTP seeds and a broken row.
TOTP codes are checked against RFC 6238 computed here with hmac alone, not with the library the vault uses.
"""

import base64
import hashlib
import hmac
import json
import os
import pty
import struct
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pyrage
from pyrage import x25519

from tests.audit_support import wait_for_entries
from tests.e2e.test_cli import _read
from tests.system import Api, Session, System
from tests.vault_support import create, new_client

PROBLEM = "application/problem+json"
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits, base32


def rfc6238(seed: str, at: float, *, digits: int = 6, period: int = 30, digest: str = "sha1") -> str:
    """RFC 6238 (HOTP of the time step, RFC 4226 dynamic truncation), independent of pyotp."""
    key = base64.b32decode(seed.upper() + "=" * (-len(seed) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(at) // period), getattr(hashlib, digest)).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def credentials_path(client_id: str, *rest: str) -> str:
    return "/".join([f"/clients/{client_id}/credentials", *rest])


async def totp(api: Api, session: Session, client_id: str, credential_id: str) -> Any:
    return await api.raw.get(credentials_path(client_id, credential_id, "totp"), headers=session.headers)


async def listed(api: Api, session: Session, client_id: str) -> dict[str, dict[str, Any]]:
    r = await api.raw.get(credentials_path(client_id), headers=session.headers)
    assert r.status_code == 200, r.text
    return {item["label"]: item for item in r.json()}


async def reveal(api: Api, session: Session, client_id: str, credential_id: str) -> dict[str, Any]:
    r = await api.raw.get(credentials_path(client_id, credential_id), headers=session.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def import_file(
    api: Api, session: Session, client_id: str, fmt: str, content: bytes, *, dry_run: bool = False
) -> Any:
    return await api.raw.post(
        f"/clients/{client_id}/credentials:import",
        headers=session.headers,
        params={"dryRun": "true"} if dry_run else {},
        files={"file": ("export", content, "application/octet-stream")},
        data={"format": fmt},
    )


# --- TOTP ----------------------------------------------------------------------------------------------------


async def test_a_seed_from_an_otpauth_uri_gives_the_independent_code_and_each_read_is_audited(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin, manager = sessions["admin"], sessions["manager"]
    client_id = await new_client(api, admin)
    uri = f"otpauth://totp/Acme:ana%40acme.example?secret={SEED}&issuer=Acme&algorithm=SHA256&digits=8&period=60"
    credential_id = await create(api, manager, client_id, label="Acme SSO", secret="pw", totpSecret=uri)

    before = time.time()
    first = await totp(api, manager, client_id, credential_id)
    second = await totp(api, admin, client_id, credential_id)
    after = time.time()

    for r in (first, second):
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        expected = {rfc6238(SEED, t, digits=8, period=60, digest="sha256") for t in (before, after)}
        assert body["code"] in expected
        assert (body["period"], body["digits"]) == (60, 8)
        assert 0 < body["expiresIn"] <= 60
    assert SEED not in first.text
    metadata = (await listed(api, manager, client_id))["Acme SSO"]
    assert metadata["hasTotp"] is True
    assert "totpSecret" not in metadata
    assert SEED not in json.dumps(metadata)
    assert (await reveal(api, manager, client_id, credential_id))["secret"] == "pw"  # the seed is not the secret
    entries = await wait_for_entries(api, admin, 2, credentialId=credential_id, action="credential_totp")
    assert entries["total"] == 2
    assert {e["credential"]["label"] for e in entries["items"]} == {"Acme SSO"}


async def test_a_base32_seed_with_spaces_and_lowercase_works_and_clearing_it_removes_it(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin, manager = sessions["admin"], sessions["manager"]
    client_id = await new_client(api, admin)
    spaced = " ".join(SEED.lower()[i : i + 4] for i in range(0, len(SEED), 4))
    credential_id = await create(api, manager, client_id, label="Router", secret="pw", totpSecret=spaced)

    before = time.time()
    r = await totp(api, manager, client_id, credential_id)
    assert r.status_code == 200, r.text
    assert r.json()["code"] in {rfc6238(SEED, t) for t in (before, time.time())}

    cleared = await api.raw.patch(
        credentials_path(client_id, credential_id), headers=manager.headers, json={"totpSecret": None}
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["hasTotp"] is False
    gone = await totp(api, manager, client_id, credential_id)
    assert (gone.status_code, gone.headers["content-type"]) == (404, PROBLEM)

    added = await api.raw.patch(
        credentials_path(client_id, credential_id), headers=manager.headers, json={"totpSecret": SEED}
    )
    assert added.json()["hasTotp"] is True
    assert (await totp(api, manager, client_id, credential_id)).status_code == 200


async def test_a_bad_seed_is_a_422_naming_totp_secret_and_nothing_is_stored(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin, manager = sessions["admin"], sessions["manager"]
    client_id = await new_client(api, admin)
    for bad in ("not base32!", "otpauth://hotp/x?secret=" + SEED + "&counter=1", "AAAA", "otpauth://totp/x?digits=6"):
        r = await api.raw.post(
            credentials_path(client_id), headers=manager.headers, json={"label": "X", "secret": "s", "totpSecret": bad}
        )
        assert r.status_code == 422, (bad, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["totpSecret"]
    assert await listed(api, manager, client_id) == {}


async def test_who_may_not_reveal_may_not_read_a_code(api: Api, sessions: dict[str, Session]) -> None:
    admin, reader = sessions["admin"], sessions["read_only"]
    client_id = await new_client(api, admin)
    credential_id = await create(api, admin, client_id, label="Mail", secret="pw", totpSecret=SEED)
    plain_id = await create(api, admin, client_id, label="No seed", secret="pw")

    refused = await totp(api, reader, client_id, credential_id)
    no_seed = await totp(api, admin, client_id, plain_id)
    other_client = await totp(api, admin, await new_client(api, admin), credential_id)

    assert refused.status_code == 403
    assert no_seed.status_code == 404
    assert other_client.status_code == 404  # scoped to the client in the path


# --- import ------------------------------------------------------------------------------------------------


def bitwarden_export() -> bytes:
    """Bitwarden's "Export vault" in .json (unencrypted): folders, then items; type 1 logins, type 2 a note."""
    return json.dumps(
        {
            "encrypted": False,
            "folders": [{"id": str(uuid.uuid4()), "name": "Clients"}],
            "items": [
                {
                    "id": str(uuid.uuid4()),
                    "organizationId": None,
                    "folderId": None,
                    "type": 1,
                    "reprompt": 0,
                    "name": "Zürich Büro — Wi-Fi 🛜",
                    "notes": "Schlüssel im Safe\nzweite Zeile",
                    "favorite": False,
                    "login": {
                        "uris": [{"match": None, "uri": "https://wifi.zürich.example/admin"}],
                        "username": "admin@büro.example",
                        "password": 'pässwörd-🔑-"quoted"',
                        "totp": f"otpauth://totp/Wifi:admin?secret={SEED}&issuer=Wifi",
                    },
                    "collectionIds": None,
                },
                {
                    "id": str(uuid.uuid4()),
                    "type": 1,
                    "name": "Printer",
                    "notes": None,
                    "login": {"uris": [], "username": "", "password": "  spaces kept  ", "totp": None},
                },
                {"id": str(uuid.uuid4()), "type": 2, "name": "A secure note", "notes": "x", "secureNote": {"type": 0}},
                {
                    "id": str(uuid.uuid4()),
                    "type": 1,
                    "name": "No password",
                    "login": {"username": "u", "password": None},
                },
            ],
        },
        ensure_ascii=False,
    ).encode()


def keepass_export() -> bytes:
    """KeePass 2's "KeePass XML (2.x)" export: nested groups, an entry's history, the recycle bin."""
    recycle = base64.b64encode(uuid.uuid4().bytes).decode()

    def entry(*strings: tuple[str, str], history: str = "") -> str:
        protect = {"Password": ' ProtectInMemory="True"'}
        fields = "".join(f"<String><Key>{k}</Key><Value{protect.get(k, '')}>{v}</Value></String>" for k, v in strings)
        return f"<Entry><UUID>{base64.b64encode(uuid.uuid4().bytes).decode()}</UUID>{fields}{history}</Entry>"

    old = entry(("Title", "Old title"), ("Password", "old-password"))
    return f"""<?xml version="1.0" encoding="utf-8" standalone="yes"?>
<KeePassFile>
  <Meta><Generator>KeePass</Generator><DatabaseName>Agency</DatabaseName>
    <RecycleBinEnabled>True</RecycleBinEnabled><RecycleBinUUID>{recycle}</RecycleBinUUID></Meta>
  <Root>
    <Group><UUID>{base64.b64encode(uuid.uuid4().bytes).decode()}</UUID><Name>Agency</Name>
      {
        entry(
            ("Title", "Firewall"),
            ("UserName", "root"),
            ("Password", "fw&lt;p@ss&gt;"),
            ("URL", "https://fw.example"),
            ("Notes", "rack 2"),
            ("TimeOtp-Secret-Base32", SEED),
            ("TimeOtp-Period", "30"),
            history=f"<History>{old}</History>",
        )
    }
      <Group><UUID>{base64.b64encode(uuid.uuid4().bytes).decode()}</UUID><Name>Network</Name>
        {
        entry(
            ("Title", "Контроллер Wi-Fi"),
            ("UserName", ""),
            ("Password", "пароль-日本"),
            ("URL", ""),
            ("otp", f"otpauth://totp/x?secret={SEED}&amp;period=30"),
        )
    }
        {entry(("Title", "Switch without password"), ("UserName", "admin"), ("Password", ""))}
      </Group>
      <Group><UUID>{recycle}</UUID><Name>Recycle Bin</Name>
        {entry(("Title", "Deleted"), ("Password", "deleted-password"))}
      </Group>
    </Group>
    <DeletedObjects />
  </Root>
</KeePassFile>""".encode()


def csv_export() -> bytes:
    """Bitwarden's CSV export header; a quoted field with a comma and a newline; a row with a field too few."""
    return (
        "folder,favorite,type,name,notes,fields,reprompt,login_uri,login_username,login_password,login_totp\r\n"
        ',,login,Café "Le Zinc",,,0,https://zinc.example,"zinc, admin",motdepasse-é,' + SEED + "\r\n"
        ',,login,Backup NAS,"line one\nline two",,0,,,"nas,pass",\r\n'
        ",,login,Broken row,,,0,https://x.example,user\r\n"
        ",,login,Empty password,,,0,,user,,\r\n"
    ).encode()


async def test_a_bitwarden_json_export_imports_with_the_right_counts_and_every_secret_reveals_exactly(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin = sessions["admin"]
    client_id = await new_client(api, admin)

    r = await import_file(api, admin, client_id, "bitwarden-json", bitwarden_export())

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["imported"], body["skipped"], body["dryRun"]) == (2, 2, False)
    assert [p["row"] for p in body["problems"]] == [3, 4]
    assert "secure note" in body["problems"][0]["message"]
    assert "password" in body["problems"][1]["message"]
    found = await listed(api, admin, client_id)
    assert set(found) == {"Zürich Büro — Wi-Fi 🛜", "Printer"}
    wifi = found["Zürich Büro — Wi-Fi 🛜"]
    assert (wifi["username"], wifi["url"], wifi["hasTotp"]) == (
        "admin@büro.example",
        "https://wifi.zürich.example/admin",
        True,
    )
    shown = await reveal(api, admin, client_id, wifi["id"])
    assert (shown["secret"], shown["notes"]) == ('pässwörd-🔑-"quoted"', "Schlüssel im Safe\nzweite Zeile")
    printer = await reveal(api, admin, client_id, found["Printer"]["id"])
    assert (printer["secret"], printer["username"], printer["url"], printer["notes"]) == (
        "  spaces kept  ",
        None,
        None,
        None,
    )
    before = time.time()
    code = (await totp(api, admin, client_id, wifi["id"])).json()["code"]
    assert code in {rfc6238(SEED, t) for t in (before, time.time())}
    entries = await wait_for_entries(api, admin, 2, clientId=client_id, action="credential_create")
    assert sorted(e["detail"]["row"] for e in entries["items"]) == [1, 2]
    assert {e["detail"]["source"] for e in entries["items"]} == {"bitwarden-json"}


async def test_a_keepass_xml_export_imports_every_group_but_not_history_or_the_recycle_bin(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin = sessions["admin"]
    client_id = await new_client(api, admin)

    r = await import_file(api, admin, client_id, "keepass-xml", keepass_export())

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["imported"], body["skipped"]) == (2, 1)
    assert [p["row"] for p in body["problems"]] == [3]
    found = await listed(api, admin, client_id)
    assert set(found) == {"Firewall", "Контроллер Wi-Fi"}
    firewall = await reveal(api, admin, client_id, found["Firewall"]["id"])
    assert (firewall["secret"], firewall["username"], firewall["url"], firewall["notes"]) == (
        "fw<p@ss>",
        "root",
        "https://fw.example",
        "rack 2",
    )
    wifi = await reveal(api, admin, client_id, found["Контроллер Wi-Fi"]["id"])
    assert (wifi["secret"], wifi["username"], wifi["url"]) == ("пароль-日本", None, None)
    before = time.time()
    for label in ("Firewall", "Контроллер Wi-Fi"):
        code = (await totp(api, admin, client_id, found[label]["id"])).json()["code"]
        assert code in {rfc6238(SEED, t) for t in (before, time.time())}


async def test_a_csv_export_imports_with_its_broken_row_reported_by_number(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin = sessions["admin"]
    client_id = await new_client(api, admin)

    r = await import_file(api, admin, client_id, "csv", csv_export())

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["imported"], body["skipped"]) == (2, 2)
    assert [(p["row"], p["message"]) for p in body["problems"]] == [
        (3, "the row has 9 fields; the header has 11"),
        (4, "the row has no password"),
    ]
    assert "user" not in json.dumps(body["problems"])  # a bad row's values are never echoed
    found = await listed(api, admin, client_id)
    cafe = await reveal(api, admin, client_id, found['Café "Le Zinc"']["id"])
    assert (cafe["secret"], cafe["username"], found['Café "Le Zinc"']["hasTotp"]) == (
        "motdepasse-é",
        "zinc, admin",
        True,
    )
    nas = await reveal(api, admin, client_id, found["Backup NAS"]["id"])
    assert (nas["secret"], nas["notes"], nas["url"]) == ("nas,pass", "line one\nline two", None)


async def test_a_dry_run_reports_the_same_and_writes_nothing(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    client_id = await new_client(api, admin)

    r = await import_file(api, admin, client_id, "csv", csv_export(), dry_run=True)

    assert r.status_code == 200, r.text
    assert (r.json()["imported"], r.json()["skipped"], r.json()["dryRun"], r.json()["ids"]) == (2, 2, True, [])
    assert await listed(api, admin, client_id) == {}


async def test_a_file_that_cannot_be_read_is_a_422_and_nothing_is_written(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin = sessions["admin"]
    client_id = await new_client(api, admin)
    xxe = b"""<?xml version="1.0"?><!DOCTYPE KeePassFile [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<KeePassFile><Root><Group><Entry><String><Key>Title</Key><Value>&x;</Value></String>
<String><Key>Password</Key><Value>p</Value></String></Entry></Group></Root></KeePassFile>"""
    bomb = b"""<?xml version="1.0"?><!DOCTYPE b [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>
<KeePassFile><Root>&b;</Root></KeePassFile>"""
    cases = {
        "keepass-xml": [xxe, bomb, b"<KeePassFile><Root>", b'{"items": []}'],
        "bitwarden-json": [b'{"encrypted": true, "items": []}', b"not json", b'{"items": "x"}', b"\xff\xfe"],
        "csv": [b"a,b\r\n1,2\r\n", b""],
    }
    for fmt, files in cases.items():
        for content in files:
            r = await import_file(api, admin, client_id, fmt, content)
            assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM), (fmt, content, r.text)
            assert "root:" not in r.text
    unknown = await import_file(api, admin, client_id, "lastpass", csv_export())
    assert unknown.status_code == 422
    extra = await api.raw.post(
        f"/clients/{client_id}/credentials:import",
        headers=admin.headers,
        files={"file": ("export.csv", csv_export(), "text/csv")},
        data={"format": "csv", "dryrun": "true"},  # a misspelt dryRun is refused, not ignored into a real import
    )
    assert (extra.status_code, extra.json()["errors"]) == (422, [{"field": "dryrun", "message": "unknown field"}])
    assert await listed(api, admin, client_id) == {}


async def test_an_import_into_an_archived_client_writes_nothing(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    client_id = await new_client(api, admin)
    assert (await api.raw.post(f"/clients/{client_id}/archive", headers=admin.headers)).status_code == 204

    r = await import_file(api, admin, client_id, "csv", csv_export())

    assert r.status_code == 409
    assert (await api.raw.get(credentials_path(client_id), headers=admin.headers)).json() == []


async def test_an_import_over_1_mib_is_taken_and_one_over_10_mib_is_a_413(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin = sessions["admin"]
    client_id = await new_client(api, admin)
    rows = "".join(f"Server {n},pw-{n},{'n' * 9000}\r\n" for n in range(250))  # ~2.2 MiB
    big = ("name,password,notes\r\n" + rows).encode()
    assert len(big) > 2 * 1024 * 1024

    taken = await import_file(api, admin, client_id, "csv", big)
    too_big = await import_file(api, admin, client_id, "csv", b"name,password\r\n" + b"x" * (10 * 1024 * 1024 + 1))

    assert taken.status_code == 200, taken.text
    assert taken.json()["imported"] == 250
    assert (too_big.status_code, too_big.headers["content-type"]) == (413, PROBLEM)
    assert "10 MiB" in too_big.json()["detail"]
    elsewhere = await api.raw.post(
        credentials_path(client_id), headers=admin.headers, content=b"{" + b" " * (2 * 1024 * 1024) + b"}"
    )
    assert elsewhere.status_code == 413  # the 1 MiB limit still holds on every other route


async def test_only_an_admin_imports_and_exports(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    client_id = await new_client(api, admin)
    recipient = str(x25519.Identity.generate().to_public())
    for role in ("manager", "read_only"):
        session = sessions[role]
        imported = await import_file(api, session, client_id, "csv", csv_export())
        exported = await api.raw.post(
            f"/clients/{client_id}/credentials:export", headers=session.headers, json={"recipient": recipient}
        )
        assert (imported.status_code, exported.status_code) == (403, 403), role
    assert (
        await import_file(api, Session(sessions["admin"].account, "x", "y"), client_id, "csv", b"")
    ).status_code == 401
    assert await listed(api, admin, client_id) == {}


# --- export ------------------------------------------------------------------------------------------------


async def test_the_exported_file_decrypts_with_the_age_identity_to_the_same_secrets(
    api: Api, sessions: dict[str, Session]
) -> None:
    admin, manager = sessions["admin"], sessions["manager"]
    client_id = await new_client(api, admin)
    assert (await import_file(api, admin, client_id, "bitwarden-json", bitwarden_export())).status_code == 200
    own = await create(api, manager, client_id, label="Hosting", username="ops", secret="ħøśŧ-🔐", notes="Ünïcode")
    trashed = await create(api, manager, client_id, label="Trashed", secret="gone")
    assert (await api.raw.delete(credentials_path(client_id, trashed), headers=admin.headers)).status_code == 204
    identity = x25519.Identity.generate()

    r = await api.raw.post(
        f"/clients/{client_id}/credentials:export",
        headers=admin.headers,
        json={"recipient": str(identity.to_public())},
    )

    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-exported-count"] == "3"
    assert r.content.startswith(b"age-encryption.org/v1\n")
    assert b"Hosting" not in r.content
    assert "ħøśŧ".encode() not in r.content
    document = json.loads(pyrage.decrypt(r.content, [identity]))
    assert document["encrypted"] is False
    items = {item["name"]: item for item in document["items"]}
    assert set(items) == {"Zürich Büro — Wi-Fi 🛜", "Printer", "Hosting"}
    for item in items.values():
        shown = await reveal(api, admin, client_id, item["id"])
        assert item["login"]["password"] == shown["secret"]
        assert item["notes"] == shown["notes"]
        assert item["type"] == 1
    assert items["Hosting"]["login"]["username"] == "ops"
    assert items["Hosting"]["id"] == own
    assert items["Zürich Büro — Wi-Fi 🛜"]["login"]["totp"].startswith("otpauth://totp/")
    assert items["Zürich Büro — Wi-Fi 🛜"]["login"]["uris"] == [
        {"match": None, "uri": "https://wifi.zürich.example/admin"}
    ]
    entries = await wait_for_entries(api, admin, 3, clientId=client_id, action="credential_export")
    assert entries["total"] == 3
    assert {e["credential"]["label"] for e in entries["items"]} == set(items)
    assert {e["detail"]["recipient"] for e in entries["items"]} == {str(identity.to_public())}

    # The file is what another tool (or this one) imports: a round trip into a new client.
    other = await new_client(api, admin)
    again = await import_file(api, admin, other, "bitwarden-json", pyrage.decrypt(r.content, [identity]))
    assert (again.json()["imported"], again.json()["skipped"]) == (3, 0)
    moved = await listed(api, admin, other)
    assert (await reveal(api, admin, other, moved["Hosting"]["id"]))["secret"] == "ħøśŧ-🔐"


async def test_a_bad_recipient_is_a_422_and_nothing_is_audited(api: Api, sessions: dict[str, Session]) -> None:
    admin = sessions["admin"]
    client_id = await new_client(api, admin)
    await create(api, admin, client_id, label="Kept", secret="s")
    for bad in ("age1notakey", "ssh-rsa AAAA", ""):
        r = await api.raw.post(
            f"/clients/{client_id}/credentials:export", headers=admin.headers, json={"recipient": bad}
        )
        assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM), r.text
        assert [e["field"] for e in r.json()["errors"]] == ["recipient"]
    unknown = await api.raw.post(
        f"/clients/{uuid.uuid4()}/credentials:export",
        headers=admin.headers,
        json={"recipient": str(x25519.Identity.generate().to_public())},
    )
    assert unknown.status_code == 404
    page = await wait_for_entries(api, admin, 1, timeout_s=1, clientId=client_id, action="credential_export")
    assert page["total"] == 0


# --- the CLI -----------------------------------------------------------------------------------------------


async def test_the_cli_imports_as_an_admin_with_a_dry_run_first_then_exports_a_file_the_identity_opens(
    api: Api, system: System, tmp_path: Path
) -> None:
    operator = await api.new_account("admin")
    client_id = await new_client(api, await api.sign_in(operator))
    source = tmp_path / "keepass.xml"
    source.write_bytes(keepass_export())
    base = ("--client-id", client_id, "--email", operator.email, "--password-stdin")

    dry = system.cli("credentials", "import", str(source), "--format", "keepass-xml", "--dry-run", *base,
                     stdin=operator.password + "\n")  # fmt: skip
    done = system.cli("credentials", "import", str(source), "--format", "keepass-xml", "--output", "json", *base,
                      stdin=operator.password + "\n")  # fmt: skip

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "would import 2 credentials, skipped 1 row",
        "row 3: the row has no password",
    ]
    assert done.returncode == 0, done.stderr
    assert (json.loads(done.stdout)["imported"], json.loads(done.stdout)["skipped"]) == (2, 1)
    identity = x25519.Identity.generate()
    out = tmp_path / "export.age"
    exported = system.cli("credentials", "export", "--recipient", str(identity.to_public()), "--out", str(out),
                          *base, stdin=operator.password + "\n")  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith("exported 2 credentials to ")
    assert out.stat().st_mode & 0o777 == 0o600
    items = {i["name"]: i for i in json.loads(pyrage.decrypt(out.read_bytes(), [identity]))["items"]}
    assert items["Контроллер Wi-Fi"]["login"]["password"] == "пароль-日本"
    assert items["Firewall"]["login"]["password"] == "fw<p@ss>"
    again = system.cli("credentials", "export", "--recipient", str(identity.to_public()), "--out", str(out),
                       *base, stdin=operator.password + "\n")  # fmt: skip
    assert again.returncode == 2  # never overwrites a file
    one = tmp_path / "one.csv"
    one.write_text("name,password\nRouter,r0uter-pass\nNo password,\n")
    counted = system.cli("credentials", "import", str(one), "--format", "csv", "--dry-run", *base,
                         stdin=operator.password + "\n")  # fmt: skip
    assert counted.stdout.splitlines()[0] == "would import 1 credential, skipped 1 row"  # one, in the singular


async def test_the_cli_refuses_a_manager_and_a_wrong_password_and_names_the_file_problem(
    api: Api, system: System, tmp_path: Path
) -> None:
    manager = await api.new_account("manager")
    operator = await api.new_account("admin")
    client_id = await new_client(api, await api.sign_in(operator))
    source = tmp_path / "export.csv"
    source.write_bytes(csv_export())

    refused = system.cli("credentials", "import", str(source), "--format", "csv", "--client-id", client_id,
                         "--email", manager.email, "--password-stdin", stdin=manager.password)  # fmt: skip
    wrong = system.cli("credentials", "import", str(source), "--format", "csv", "--client-id", client_id,
                       "--email", operator.email, "--password-stdin", stdin="not-the-password")  # fmt: skip
    source.write_bytes(b'{"encrypted": true, "items": []}')
    unreadable = system.cli("credentials", "import", str(source), "--format", "bitwarden-json", "--client-id",
                            client_id, "--email", operator.email, "--password-stdin",
                            stdin=operator.password)  # fmt: skip

    assert (refused.returncode, wrong.returncode, unreadable.returncode) == (1, 1, 1)
    assert "your role does not allow this operation" in refused.stderr
    assert "not-the-password" not in wrong.stderr + wrong.stdout
    assert "export it as unencrypted JSON" in unreadable.stderr
    assert await listed(api, await api.sign_in(operator), client_id) == {}


async def test_the_cli_draws_a_progress_bar_on_a_terminal(api: Api, system: System, tmp_path: Path) -> None:
    operator = await api.new_account("admin")
    client_id = await new_client(api, await api.sign_in(operator))
    source = tmp_path / "export.csv"
    source.write_bytes(csv_export())

    parent, child = pty.openpty()
    try:
        env = {k: v for k, v in system.env.items() if k not in ("DATABASE_URL", "NATS_URL")}
        done = subprocess.run(  # noqa: ASYNC221  # the system runs in processes of its own
            system.command("credentials", "import", str(source), "--format", "csv", "--client-id", client_id,
                           "--email", operator.email, "--password-stdin", "--data-dir", str(system.data_dir)),
            input=operator.password.encode(), stdout=subprocess.PIPE, stderr=child, env=env | {"TERM": "xterm"},
            timeout=60, check=False,
        )  # fmt: skip
        os.close(child)
        drawn = b""
        while chunk := _read(parent):
            drawn += chunk
    finally:
        os.close(parent)

    assert done.returncode == 0
    assert b"upload" in drawn
    assert done.stdout.decode().startswith("imported 2 credentials")


# --- the sealed fields through the key lifecycle -------------------------------------------------------------


async def test_a_seed_and_notes_survive_a_reencrypting_key_rotation_and_go_with_a_shred(
    api: Api, system: System, sessions: dict[str, Session]
) -> None:
    admin = sessions["admin"]
    client_id = await new_client(api, admin)
    credential_id = await create(api, admin, client_id, label="Rotated", secret="s1", totpSecret=SEED, notes="n1")

    rotated = system.cli("vault", "rotate-key", "--reencrypt")

    assert rotated.returncode == 0, rotated.stderr
    assert "could not" not in rotated.stdout + rotated.stderr
    before = time.time()
    code = await totp(api, admin, client_id, credential_id)
    assert code.status_code == 200, code.text
    assert code.json()["code"] in {rfc6238(SEED, t) for t in (before, time.time())}
    assert (await reveal(api, admin, client_id, credential_id))["notes"] == "n1"
    status = system.cli("vault", "status", "--output", "json")
    assert json.loads(status.stdout)["secrets_on_old_keys"] == 0, status.stdout

    name = (await api.raw.get(f"/clients/{client_id}", headers=admin.headers)).json()["name"]
    assert (await api.raw.post(f"/clients/{client_id}/archive", headers=admin.headers)).status_code == 204
    shredded = await api.raw.post(f"/clients/{client_id}/shred", headers=admin.headers, json={"confirmName": name})
    assert shredded.status_code == 200, shredded.text
    assert (await totp(api, admin, client_id, credential_id)).status_code == 410
