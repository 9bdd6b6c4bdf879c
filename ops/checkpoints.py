"""Audit checkpoints: the chain's head (seq, hash, time), signed with the audit checkpoint key and kept outside the
database, so that `audit verify --checkpoints` catches what a chain that verifies by itself cannot show: the
newest entries removed, or the chain rewritten and re-hashed forward by someone who can write the table.

A destination is a directory (one file per checkpoint, created exclusively and never rewritten: what a
write-once bucket or a WORM volume takes) or a file (one JSON line appended per checkpoint). Each checkpoint is
`{"v": 1, "seq": …, "hash": hex, "time": ISO-8601 UTC, "key_id": …, "signature": base64}`; the signature covers
the canonical JSON of the other fields (sorted keys, no whitespace).
"""

import base64
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from clientvault import ed25519

VERSION = 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: bytes
    time: datetime
    key_id: str
    signature: bytes

    @property
    def name(self) -> str:
        """The file name in a directory destination: sorts by seq, unique per head and time."""
        return f"checkpoint-{self.seq:020d}-{self.time:%Y%m%dT%H%M%S%fZ}.json"


def _signed_bytes(seq: int, digest: bytes, time: datetime, key_id: str) -> bytes:
    fields = {"v": VERSION, "seq": seq, "hash": digest.hex(), "time": _iso(time), "key_id": key_id}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _iso(time: datetime) -> str:
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sign(seq: int, digest: bytes, key: ed25519.Ed25519PrivateKey, time: datetime | None = None) -> Checkpoint:
    time = time or datetime.now(UTC)
    key_id = ed25519.key_id(key.public_key())
    return Checkpoint(seq, digest, time, key_id, key.sign(_signed_bytes(seq, digest, time, key_id)))


def encode(checkpoint: Checkpoint) -> str:
    fields = json.loads(_signed_bytes(checkpoint.seq, checkpoint.hash, checkpoint.time, checkpoint.key_id))
    fields["signature"] = base64.b64encode(checkpoint.signature).decode()
    return json.dumps(fields, sort_keys=True)


def write(checkpoint: Checkpoint, destination: Path) -> Path:
    """Adds the checkpoint to the destination (a directory: a new file; else a line appended to the file, which
    is created if missing); the path written. Flushed to disk before it returns."""
    line = encode(checkpoint) + "\n"
    if destination.is_dir():
        path = destination / checkpoint.name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)  # never overwrites an earlier checkpoint
    else:
        path = destination
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


class BadCheckpoint(Exception):
    """A checkpoint that cannot be read, or whose signature does not verify: itself a sign of tampering."""


def _parse(text: str, where: str, trusted: dict[str, ed25519.Ed25519PublicKey]) -> Checkpoint:
    try:
        fields = json.loads(text)
        checkpoint = Checkpoint(
            seq=int(fields["seq"]),
            hash=bytes.fromhex(fields["hash"]),
            time=datetime.fromisoformat(fields["time"]),
            key_id=str(fields["key_id"]),
            signature=base64.b64decode(fields["signature"], validate=True),
        )
        if fields["v"] != VERSION or checkpoint.seq < 0:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise BadCheckpoint(f"{where}: not a checkpoint") from None
    key = trusted.get(checkpoint.key_id)
    if key is None:
        raise BadCheckpoint(f"{where}: signed by unknown key {checkpoint.key_id}")
    signed = _signed_bytes(checkpoint.seq, checkpoint.hash, checkpoint.time, checkpoint.key_id)
    try:
        key.verify(checkpoint.signature, signed)
    except InvalidSignature:
        raise BadCheckpoint(f"{where}: its signature does not verify (edited or forged)") from None
    return checkpoint


def read(source: Path, trusted_keys: Iterable[ed25519.Ed25519PublicKey]) -> list[Checkpoint]:
    """Every checkpoint at `source` (a directory of checkpoint files or a file of lines), each signature checked;
    BadCheckpoint names the first that fails. Sorted by seq."""
    trusted = {ed25519.key_id(key): key for key in trusted_keys}
    texts: list[tuple[str, str]] = []
    if source.is_dir():
        for path in sorted(source.glob("checkpoint-*.json")):
            texts.append((str(path), path.read_text()))
    elif source.is_file():
        for number, line in enumerate(source.read_text().splitlines(), start=1):
            if line.strip():
                texts.append((f"{source}:{number}", line))
    else:
        raise BadCheckpoint(f"{source}: no such file or directory")
    return sorted((_parse(text, where, trusted) for where, text in texts), key=lambda c: c.seq)
