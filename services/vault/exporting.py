"""An export file: a client's credentials in Bitwarden's unencrypted JSON export shape, encrypted with age.

The shape is the one Bitwarden (and the importers of KeePassXC, 1Password and Proton Pass) read: `{"encrypted":
false, "folders": [], "items": [...]}`, each item a login (type 1) with name, notes, login.username,
login.uris[0].uri, login.password and login.totp. The JSON never touches a disk or leaves the vault process
unencrypted: it is age-encrypted (pyrage, X25519) to the recipient the caller names (`age1…`), and only the
holder of the matching identity decrypts it (`age -d -i key.txt export.age > export.json`).
"""

import json
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import pyrage
from pyrage import x25519

from clientvault.errors import Invalid


@dataclass(frozen=True, slots=True)
class Item:
    id: UUID
    label: str
    username: str | None
    url: str | None
    created_at: datetime
    updated_at: datetime
    secret: str = field(repr=False)
    notes: str | None = field(default=None, repr=False)
    totp: str | None = field(default=None, repr=False)


def recipient(value: str) -> x25519.Recipient:
    """The age recipient, or Invalid (422) naming the field."""
    try:
        return x25519.Recipient.from_str(value.strip())
    except (pyrage.RecipientError, ValueError):
        raise Invalid(
            "recipient must be an age public key (age1…, as `age-keygen -y` prints it)", "recipient"
        ) from None


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bitwarden_json(items: list[Item]) -> bytes:
    """The export's plaintext: Bitwarden's unencrypted JSON export of `items`, as logins."""
    document = {
        "encrypted": False,
        "folders": [],
        "items": [
            {
                "id": str(item.id),
                "organizationId": None,
                "folderId": None,
                "type": 1,
                "reprompt": 0,
                "name": item.label,
                "notes": item.notes,
                "favorite": False,
                "login": {
                    "uris": [] if item.url is None else [{"match": None, "uri": item.url}],
                    "username": item.username,
                    "password": item.secret,
                    "totp": item.totp,
                },
                "collectionIds": None,
                "creationDate": _stamp(item.created_at),
                "revisionDate": _stamp(item.updated_at),
            }
            for item in items
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2).encode()


def encrypt(plaintext: bytes, to: x25519.Recipient) -> bytes:
    """The age file (binary format) of `plaintext` for the recipient."""
    return bytes(pyrage.encrypt(plaintext, [to]))
