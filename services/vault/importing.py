"""Reading the export files other password tools write, into rows the vault can check and store.

Formats (docs/credential-tools.md has examples of each):
- `bitwarden-json`: Bitwarden's unencrypted JSON export (`{"encrypted": false, "items": [...]}`); login items
  (type 1) become credentials: name, login.username, the first login.uris[].uri, login.password, notes,
  login.totp. Other item types (notes, cards, identities) are reported and skipped. An encrypted export is
  refused as a whole.
- `keepass-xml`: KeePass 2's "KeePass XML (2.x)" export; every entry of every group (not their history, not the
  recycle bin): Title, UserName, URL, Password, Notes, and a TOTP seed from KeePassXC's `otp` field (an otpauth
  URI) or KeePass 2.47's `TimeOtp-Secret-Base32` (with `TimeOtp-Length`, `-Period`, `-Algorithm`). Parsed with
  defusedxml: entity expansion, external entities and DTDs are refused.
- `csv`: a header row, then one credential a row. Columns are found by name, case-insensitively, under the
  names Bitwarden, LastPass, 1Password and KeePass give them (`name`/`title`/`label`, `login_username`/
  `username`, `login_uri`/`url`, `login_password`/`password`, `notes`/`extra`, `login_totp`/`totp`/`otp`).

Rows are numbered from 1 in the file's order (items, entries, or the data rows after the CSV header). A row
that cannot be read is returned with its problem, never with any of its values in the message.
"""

import base64
import binascii
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from xml.etree.ElementTree import Element  # the type only; parsing goes through defusedxml

import defusedxml.ElementTree
from defusedxml import DefusedXmlException

from clientvault.errors import Invalid

FORMATS = ("bitwarden-json", "keepass-xml", "csv")
MAX_ROWS = 10_000
BITWARDEN_LOGIN = 1
BITWARDEN_TYPES = {2: "a secure note", 3: "a card", 4: "an identity", 5: "an SSH key"}

CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "label": ("name", "title", "label", "account"),
    "username": ("login_username", "username", "user name", "login name", "login", "user"),
    "url": ("login_uri", "url", "uri", "web site", "website"),
    "secret": ("login_password", "password", "secret"),
    "notes": ("notes", "extra", "comments", "note"),
    "totp": ("login_totp", "totp", "otp", "otpauth", "one-time password"),
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of an export: its values as the file has them (None when absent), or why it cannot be read."""

    row: int
    label: str | None = None
    username: str | None = None
    url: str | None = None
    secret: str | None = None
    notes: str | None = None
    totp: str | None = None
    problem: str | None = None


def parse(format_: str, content: bytes) -> list[Entry]:
    """Every row of the file. Invalid (422) when the file as a whole cannot be read."""
    if format_ not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}", "format")
    if format_ == "keepass-xml":
        entries = list(_keepass(content))
    else:
        text = _text(content)
        entries = list(_bitwarden(text) if format_ == "bitwarden-json" else _csv(text))
    if not entries:
        raise Invalid("the file has no rows to import", "file")
    if len(entries) > MAX_ROWS:
        raise Invalid(f"the file has {len(entries)} rows; at most {MAX_ROWS} are imported at once: split it", "file")
    return entries


def _text(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("the file is not UTF-8 text", "file") from None


def _string(value: Any) -> str | None:
    """A JSON value the row's field may take: text (empty is absent), or None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError
    return value


# --- Bitwarden ---------------------------------------------------------------------------------------------


def _bitwarden(text: str) -> Iterator[Entry]:
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise Invalid("the file is not JSON", "file") from None
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise Invalid("the file is not a Bitwarden JSON export: it has no items list", "file")
    if document.get("encrypted") is True:
        raise Invalid("the Bitwarden export is encrypted: export it as unencrypted JSON (.json) instead", "file")
    for number, item in enumerate(document["items"], start=1):
        yield _bitwarden_item(number, item)


def _bitwarden_item(row: int, item: Any) -> Entry:
    if not isinstance(item, dict):
        return Entry(row, problem="the item is not a JSON object")
    kind = item.get("type")
    if kind != BITWARDEN_LOGIN:
        what = BITWARDEN_TYPES.get(kind, "not a login") if isinstance(kind, int) else "not a login"
        return Entry(row, problem=f"the item is {what}, not a login (type 1)")
    login = item.get("login")
    if not isinstance(login, dict):
        return Entry(row, problem="the login item has no login object")
    uris = login.get("uris") or []
    try:
        if not isinstance(uris, list) or not all(isinstance(u, dict) for u in uris):
            raise TypeError
        url = next((u for u in (_string(u.get("uri")) for u in uris) if u is not None), None)
        return Entry(
            row,
            label=_string(item.get("name")),
            username=_string(login.get("username")),
            url=url,
            secret=_string(login.get("password")),
            notes=_string(item.get("notes")),
            totp=_string(login.get("totp")),
        )
    except TypeError:
        return Entry(row, problem="a field of the item is not text")


# --- KeePass 2 XML -----------------------------------------------------------------------------------------


def _keepass(content: bytes) -> Iterator[Entry]:
    try:
        root = defusedxml.ElementTree.fromstring(content, forbid_dtd=True)
    except DefusedXmlException:
        raise Invalid("the XML file declares a DTD or entities, which are refused", "file") from None
    except defusedxml.ElementTree.ParseError:
        raise Invalid("the file is not well-formed XML", "file") from None
    top = root.find("Root")
    if root.tag != "KeePassFile" or top is None:
        raise Invalid("the file is not a KeePass 2 XML export: no KeePassFile/Root element", "file")
    recycle_bin = None
    if (root.findtext("Meta/RecycleBinEnabled") or "").strip().lower() == "true":
        recycle_bin = (root.findtext("Meta/RecycleBinUUID") or "").strip() or None
    for row, entry in enumerate(_keepass_entries(top, recycle_bin), start=1):
        yield _keepass_entry(row, entry)


def _keepass_entries(parent: Element, recycle_bin: str | None) -> Iterator[Element]:
    """The entries of every group under `parent`, depth first in document order; never an entry's <History>."""
    for group in parent.findall("Group"):
        if recycle_bin is not None and (group.findtext("UUID") or "").strip() == recycle_bin:
            continue
        yield from group.findall("Entry")
        yield from _keepass_entries(group, recycle_bin)


def _keepass_entry(row: int, entry: Element) -> Entry:
    values: dict[str, str] = {}
    for string in entry.findall("String"):
        key, value = string.findtext("Key"), string.find("Value")
        if key is None or value is None:
            continue
        if (value.get("Protected") or "").lower() == "true":
            return Entry(
                row, problem="the entry has a protected value: export as KeePass XML (2.x), not the KDBX's XML"
            )
        values[key] = value.text or ""
    try:
        seed = _keepass_totp(values)
    except ValueError:
        return Entry(row, problem="the entry's TimeOtp settings are not valid")
    return Entry(
        row,
        label=values.get("Title") or None,
        username=values.get("UserName") or None,
        url=values.get("URL") or None,
        secret=values.get("Password") or None,
        notes=values.get("Notes") or None,
        totp=seed,
    )


def _keepass_totp(values: dict[str, str]) -> str | None:
    """KeePassXC keeps an otpauth URI in `otp`; KeePass 2.47+ keeps the seed in `TimeOtp-Secret-Base32` (or
    `-Hex`, or as UTF-8 text in `TimeOtp-Secret`), with its settings in `TimeOtp-Length`, `-Period` and
    `-Algorithm` (HMAC-SHA-1, HMAC-SHA-256, HMAC-SHA-512)."""
    if values.get("otp"):
        return values["otp"]
    if values.get("TimeOtp-Secret-Base32"):
        raw = base64.b32decode(_padded("".join(values["TimeOtp-Secret-Base32"].split()).upper()))
    elif values.get("TimeOtp-Secret-Hex"):
        try:
            raw = bytes.fromhex(values["TimeOtp-Secret-Hex"])
        except ValueError:
            raise ValueError from None
    elif values.get("TimeOtp-Secret"):
        raw = values["TimeOtp-Secret"].encode()
    else:
        return None
    seed = base64.b32encode(raw).decode().rstrip("=")
    algorithm = values.get("TimeOtp-Algorithm", "HMAC-SHA-1").upper().removeprefix("HMAC-").replace("-", "")
    digits = int(values.get("TimeOtp-Length") or 6)
    period = int(values.get("TimeOtp-Period") or 30)
    label = quote(values.get("Title") or "entry")
    return f"otpauth://totp/{label}?secret={seed}&algorithm={algorithm}&digits={digits}&period={period}"


def _padded(value: str) -> str:
    try:
        base64.b32decode(value + "=" * (-len(value) % 8))
    except binascii.Error:
        raise ValueError from None
    return value + "=" * (-len(value) % 8)


# --- CSV ---------------------------------------------------------------------------------------------------


def _csv(text: str) -> Iterator[Entry]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error:
        raise Invalid("the CSV file's header row cannot be read", "file") from None
    if not header:
        raise Invalid("the CSV file has no header row", "file")
    names = [name.strip().lower() for name in header]
    columns: dict[str, int] = {}
    for field, aliases in CSV_COLUMNS.items():
        found = next((names.index(alias) for alias in aliases if alias in names), None)
        if found is not None:
            columns[field] = found
    missing = [CSV_COLUMNS[field][0] for field in ("label", "secret") if field not in columns]
    if missing:
        raise Invalid(
            "the CSV header has no " + " and no ".join(missing) + " column (see docs/credential-tools.md for names)",
            "file",
        )
    row = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error:
            row += 1
            yield Entry(row, problem="the row is not valid CSV (an unclosed quote?)")
            return  # the reader cannot go on after a broken quote
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        row += 1
        if len(cells) != len(header):
            yield Entry(row, problem=f"the row has {len(cells)} fields; the header has {len(header)}")
            continue
        get = {field: cells[index] or None for field, index in columns.items()}
        yield Entry(row, **get)
