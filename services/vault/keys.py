"""Key providers: where the key-encryption key (KEK) lives, and wrapping data keys (DEKs) with it.

A provider wraps and unwraps 32-byte data keys and says which KEK version it used; the KEK itself never
reaches the database. Two providers:

- `env`: a keyring of versioned 256-bit KEKs, either inline (`CLIENTVAULT_KEKS="v1:<base64>,v2:<base64>"`,
  `CLIENTVAULT_KEK_ACTIVE`) or in a JSON file (`CLIENTVAULT_KEK_FILE`, keys `vault_keks` and
  `vault_kek_active`, reloaded when the file changes, so `clientvault vault rotate-key` can add a version
  while the vault runs). Wrapping is AES-256-GCM with a fresh nonce and the data key's identity (client,
  generation, KEK version) as associated data.
- `transit`: OpenBao or HashiCorp Vault Transit through hvac; the Transit key's versions are the KEK
  versions (recorded as `transit:v1`, `transit:v2`, …, so they never pass for env versions), `rotate`
  rotates it there, and `rewrap` asks Transit to rewrap without the data key leaving it.

Key material is held in bytearrays and zeroed when replaced or closed; nothing here logs or raises a key.
"""

import asyncio
import base64
import binascii
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clientvault.errors import Unavailable
from clientvault.logging import get_logger
from clientvault.settings import VaultSettings

log = get_logger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = re.compile(r"v[0-9]{1,6}")
WRAP_CONTEXT = b"clientvault.v1.dek|"


class KeyFailure(Exception):
    """A key that is missing or does not match: a startup (or operator) error, with a safe message."""


class KekNotLoaded(KeyFailure, Unavailable):
    """A data key wrapped by a KEK version this process does not have (yet): during a rotation, a replica whose
    keyring lags behind. A request answers 503 with Retry-After; the process logs the version."""


def zero(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))


def version_number(version: str) -> int:
    if not VERSION.fullmatch(version):
        raise KeyFailure(f"a KEK version must look like v1, v2, …; got {version!r}")
    return int(version[1:])


@dataclass(frozen=True, slots=True)
class Wrapped:
    """A data key wrapped by a KEK version."""

    wrapped_key: bytes
    kek_version: str


class KeyProvider(Protocol):
    name: str

    def known_versions(self) -> set[str]: ...
    async def active_version(self) -> str: ...
    async def wrap(self, dek: bytearray, context: bytes) -> Wrapped: ...
    async def unwrap(self, wrapped: Wrapped, context: bytes) -> bytearray: ...
    async def rewrap(self, items: Sequence[tuple[Wrapped, bytes]]) -> list[Wrapped]: ...
    async def rotate(self) -> str: ...
    def close(self) -> None: ...


def parse_keyring(text: str) -> dict[str, bytearray]:
    """'v1:<base64>,v2:<base64>' -> {version: key}. Errors name the version, never the key."""
    ring: dict[str, bytearray] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        version, sep, encoded = part.partition(":")
        version_number(version)
        try:
            key = bytearray(base64.b64decode(encoded, validate=True)) if sep else bytearray()
        except (binascii.Error, ValueError):
            raise KeyFailure(f"KEK {version} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise KeyFailure(f"KEK {version} must be {KEY_BYTES} bytes (base64 of 32 random bytes)")
        ring[version] = key
    return ring


def format_keyring(ring: dict[str, bytearray]) -> str:
    return ",".join(f"{v}:{base64.b64encode(bytes(k)).decode()}" for v, k in ring.items())


def new_kek() -> bytearray:
    return bytearray(secrets.token_bytes(KEY_BYTES))


def _ad(version: str, context: bytes) -> bytes:
    return WRAP_CONTEXT + version.encode() + b"|" + context


class EnvKeys:
    """Versioned KEKs from the environment or a keyring file."""

    name = "env"

    def __init__(self, ring: dict[str, bytearray], active: str | None, file: Path | None = None) -> None:
        self._ring: dict[str, bytearray] = {}
        self._active = ""
        self._file = file
        self._file_stamp: tuple[int, int] | None = None
        if file is None:
            self._install(ring, active)
        else:
            self._reload(force=True)

    @classmethod
    def from_settings(cls, settings: VaultSettings) -> "EnvKeys":
        if settings.keks is not None:
            return cls(parse_keyring(settings.keks.get_secret_value()), settings.kek_active)
        if settings.kek_file:
            return cls({}, None, Path(settings.kek_file))
        raise KeyFailure("no KEK: set CLIENTVAULT_KEKS (or CLIENTVAULT_KEK_FILE), or use `clientvault up`")

    def _install(self, ring: dict[str, bytearray], active: str | None) -> None:
        if not ring:
            raise KeyFailure("the KEK keyring is empty")
        active = active or max(ring, key=version_number)
        if active not in ring:
            raise KeyFailure(f"the active KEK version {active} is not in the keyring")
        for old in self._ring.values():
            zero(old)
        self._ring, self._active = ring, active

    def _reload(self, *, force: bool = False) -> None:
        """Re-reads the keyring file when it changed (a cheap stat otherwise)."""
        if self._file is None:
            return
        try:
            stat = self._file.stat()
        except OSError:
            raise KeyFailure(f"cannot read the KEK file {self._file}") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if not force and stamp == self._file_stamp:
            return
        try:
            values = json.loads(self._file.read_text())
        except (OSError, ValueError):
            raise KeyFailure(f"the KEK file {self._file} is not readable JSON") from None
        self._install(parse_keyring(str(values.get("vault_keks", ""))), values.get("vault_kek_active"))
        self._file_stamp = stamp

    def known_versions(self) -> set[str]:
        self._reload()
        return set(self._ring)

    async def active_version(self) -> str:
        self._reload()
        return self._active

    def _kek(self, version: str) -> bytearray:
        if version not in self._ring:
            self._reload()
        key = self._ring.get(version)
        if key is None:
            log.error("keys.kek_not_loaded", kek_version=version)
            raise KekNotLoaded(f"KEK {version} is not in the keyring")
        return key

    async def wrap(self, dek: bytearray, context: bytes) -> Wrapped:
        version = await self.active_version()
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._kek(version)).encrypt(nonce, dek, _ad(version, context))
        return Wrapped(nonce + sealed, version)

    async def unwrap(self, wrapped: Wrapped, context: bytes) -> bytearray:
        key = self._kek(wrapped.kek_version)
        blob = wrapped.wrapped_key
        try:
            return bytearray(
                AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _ad(wrapped.kek_version, context))
            )
        except InvalidTag:
            raise KeyFailure(f"KEK {wrapped.kek_version} does not unwrap this data key (wrong key?)") from None

    async def rewrap(self, items: Sequence[tuple[Wrapped, bytes]]) -> list[Wrapped]:
        done = []
        for wrapped, context in items:
            dek = await self.unwrap(wrapped, context)
            try:
                done.append(await self.wrap(dek, context))
            finally:
                zero(dek)
        return done

    async def rotate(self) -> str:
        """A new version in the keyring file becomes active. Inline keyrings are changed by the operator."""
        if self._file is None:
            raise KeyFailure(
                "the keyring is inline (CLIENTVAULT_KEKS): add a new version there and in CLIENTVAULT_KEK_ACTIVE "
                "on every vault replica first, then run rotate-key again"
            )
        self._reload()
        version = f"v{max(version_number(v) for v in self._ring) + 1}"
        ring = {**self._ring, version: new_kek()}
        values = json.loads(self._file.read_text())
        values |= {"vault_keks": format_keyring(ring), "vault_kek_active": version}
        write_private_json(self._file, values)
        self._reload(force=True)
        return version

    def close(self) -> None:
        for key in self._ring.values():
            zero(key)


def write_private_json(path: Path, values: dict[str, Any]) -> None:
    """Replaces a JSON file atomically, readable by its owner only."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(values, out, indent=2)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


TRANSIT_VERSION = re.compile(r"vault:(v[0-9]+):")


class TransitKeys:
    """OpenBao / HashiCorp Vault Transit. hvac is synchronous, so every call runs in a worker thread."""

    name = "transit"

    def __init__(self, addr: str, token: str, *, mount: str, key: str, timeout_s: float) -> None:
        import hvac

        self._client = hvac.Client(url=addr, token=token, timeout=timeout_s)
        self._mount = mount
        self._key = key
        self._versions: set[str] = set()

    @classmethod
    def from_settings(cls, settings: VaultSettings) -> "TransitKeys":
        if not settings.transit_addr or settings.transit_token is None:
            raise KeyFailure("the transit key provider needs CLIENTVAULT_TRANSIT_ADDR and CLIENTVAULT_TRANSIT_TOKEN")
        return cls(
            settings.transit_addr,
            settings.transit_token.get_secret_value(),
            mount=settings.transit_mount,
            key=settings.transit_key,
            timeout_s=settings.rpc_timeout_s,
        )

    async def _call(self, method: str, **arguments: Any) -> Any:
        import hvac.exceptions
        import requests

        call = getattr(self._client.secrets.transit, method)
        try:
            return await asyncio.to_thread(call, name=self._key, mount_point=self._mount, **arguments)
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            raise KeyFailure("the transit token is not allowed to use the key") from None
        except hvac.exceptions.InvalidRequest:
            raise KeyFailure("transit refused to unwrap a data key (wrong key?)") from None
        except (hvac.exceptions.VaultDown, hvac.exceptions.InternalServerError, requests.RequestException):
            raise Unavailable("the key service is unavailable") from None

    async def ensure_key(self) -> None:
        """Creates the Transit key (aes256-gcm96) when it does not exist yet."""
        import hvac.exceptions
        import requests

        try:
            await asyncio.to_thread(self._client.secrets.transit.read_key, name=self._key, mount_point=self._mount)
        except hvac.exceptions.InvalidPath:
            await self._call("create_key", key_type="aes256-gcm96")
            log.info("keys.transit_key_created")
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            raise KeyFailure("the transit token is not allowed to read the key") from None
        except (hvac.exceptions.VaultError, requests.RequestException) as error:
            raise KeyFailure(f"cannot reach transit: {type(error).__name__}") from None
        await self.active_version()

    def known_versions(self) -> set[str]:
        return set(self._versions)

    async def active_version(self) -> str:
        info = await self._call("read_key")
        latest = int(info["data"]["latest_version"])
        minimum = int(info["data"].get("min_decryption_version", 1))
        self._versions = {f"transit:v{n}" for n in range(minimum, latest + 1)}
        return f"transit:v{latest}"

    @staticmethod
    def _wrapped(ciphertext: str) -> Wrapped:
        found = TRANSIT_VERSION.match(ciphertext)
        if found is None:
            raise KeyFailure("transit answered an unexpected ciphertext")
        return Wrapped(ciphertext.encode(), f"transit:{found[1]}")

    async def wrap(self, dek: bytearray, context: bytes) -> Wrapped:
        reply = await self._call("encrypt_data", plaintext=base64.b64encode(dek).decode())
        return self._wrapped(reply["data"]["ciphertext"])

    async def unwrap(self, wrapped: Wrapped, context: bytes) -> bytearray:
        reply = await self._call("decrypt_data", ciphertext=wrapped.wrapped_key.decode())
        return bytearray(base64.b64decode(reply["data"]["plaintext"]))

    async def rewrap(self, items: Sequence[tuple[Wrapped, bytes]]) -> list[Wrapped]:
        batch = [{"ciphertext": wrapped.wrapped_key.decode()} for wrapped, _ in items]
        reply = await self._call("rewrap_data", ciphertext="", batch_input=batch)
        results = reply["data"]["batch_results"]
        if any("error" in result and result["error"] for result in results):
            raise KeyFailure("transit refused to rewrap a data key")
        return [self._wrapped(result["ciphertext"]) for result in results]

    async def rotate(self) -> str:
        await self._call("rotate_key")
        return await self.active_version()

    def close(self) -> None:
        self._client.adapter.close()


def provider_for(settings: VaultSettings) -> KeyProvider:
    if settings.key_provider == "transit":
        return TransitKeys.from_settings(settings)
    return EnvKeys.from_settings(settings)
