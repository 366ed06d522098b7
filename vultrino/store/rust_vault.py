"""Reading the original (Rust) Vultrino's ``credentials.enc``: the only importer of
``cryptography``.

The original seals its store as JSON::

    {"version": 2, "salt": "<base64 of 16 bytes>",
     "data": {"nonce": "<base64 of 12 bytes>", "ciphertext": "<base64>"}}

(``"credentials"`` is an older name of ``"data"``). The key is Argon2id (version 0x13,
m = 19456 KiB, t = 2, p = 1, 32 bytes: the ``argon2`` crate's defaults) over the password and
the raw salt; the ciphertext is AES-256-GCM with no associated data. The plaintext is JSON
``{"credentials": {id: …}, "roles": {id: …}, "api_keys": {id: …}}``, or, from the first
versions, the credentials map alone.

This module only opens the file and hands back plain data (:class:`RustVault`); what each
record becomes in this store is decided above it. Nothing here keeps the password or the key
longer than the call.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from vultrino.errors import StoreCorruptError, StoreError, StoreFormatError, WrongPasswordError

__all__ = ["ARGON2_MEMORY_KIB", "ARGON2_TIME", "RustVault", "derive_key", "read_rust_vault"]

ARGON2_MEMORY_KIB = 19456
ARGON2_TIME = 2
ARGON2_LANES = 1
_SALT_BYTES = 16
_NONCE_BYTES = 12
_KEY_BYTES = 32
_MAX_FILE = 64 * 1024 * 1024


@dataclass
class RustVault:
    """What the original's store holds, as it holds it (maps keyed by the original's ids).
    ``credentials`` values carry secrets; ``repr()`` shows only how many there are."""

    version: int
    credentials: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_keys: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"RustVault(version={self.version}, credentials=<{len(self.credentials)}, values "
            f"hidden>, roles={len(self.roles)}, api_keys={len(self.api_keys)})"
        )


def derive_key(password: bytes, salt: bytes) -> bytes:
    """The original's key: Argon2id(m=19456 KiB, t=2, p=1) over ``password`` and ``salt``."""
    try:
        kdf = Argon2id(
            salt=salt,
            length=_KEY_BYTES,
            iterations=ARGON2_TIME,
            lanes=ARGON2_LANES,
            memory_cost=ARGON2_MEMORY_KIB,
        )
    except UnsupportedAlgorithm as exc:  # an OpenSSL older than 3.2 under cryptography
        raise StoreError(
            "reading the original Vultrino's store needs Argon2id from the `cryptography` "
            "package built against OpenSSL 3.2 or newer; upgrade it (`pip install -U "
            "cryptography`)"
        ) from exc
    return kdf.derive(password)


def _b64(value: object, what: str, where: Path) -> bytes:
    if not isinstance(value, str):
        raise StoreFormatError(
            f"{where}: {what} is missing or not a string; is this the "
            "original Vultrino's credentials.enc?"
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise StoreCorruptError(
            f"{where}: {what} is not valid base64; the file is damaged (truncated or edited)"
        ) from None


def read_rust_vault(path: Path, password: str) -> RustVault:
    """Open the original's store at ``path`` with ``password``.

    StoreFormatError when the file is not that store's JSON envelope, StoreCorruptError when it
    is damaged (cut short, bad base64, a nonce or salt of the wrong size, a payload that is not
    the original's JSON), WrongPasswordError when the password does not open it (AES-GCM cannot
    tell a wrong password from a tampered ciphertext: the message says both)."""
    try:
        size = path.stat().st_size
        if size > _MAX_FILE:
            raise StoreFormatError(f"{path}: {size} bytes is too large for a credentials.enc")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(
            f"{path}: no such file; give the original's credentials.enc "
            "(by default ~/.config/vultrino/credentials.enc or the path its "
            "config.toml names)"
        ) from None
    except IsADirectoryError:
        raise StoreError(f"{path} is a directory; give its credentials.enc file") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read it: {exc.strerror}") from None
    try:
        envelope = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if raw.lstrip()[:1] == b"{":
            raise StoreCorruptError(
                f"{path}: the JSON ends or breaks at byte {getattr(exc, 'pos', 0)}; "
                "the file is truncated or damaged"
            ) from None
        raise StoreFormatError(
            f"{path} is not the original Vultrino's store (not JSON); "
            "`vultrino import --from-rust` reads its credentials.enc"
        ) from None
    if not isinstance(envelope, dict) or "salt" not in envelope:
        raise StoreFormatError(
            f"{path} is JSON but not the original Vultrino's store (no "
            "'salt'); `vultrino import --from-rust` reads its credentials.enc"
        )
    version = envelope.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 2:
        raise StoreFormatError(
            f"{path}: store version {str(version)[:20]!r} is not one this importer knows (1 or 2)"
        )
    sealed = envelope.get("data", envelope.get("credentials"))
    if not isinstance(sealed, dict):
        raise StoreFormatError(f"{path}: 'data' is missing or not an object")
    salt = _b64(envelope.get("salt"), "the salt", path)
    nonce = _b64(sealed.get("nonce"), "the nonce", path)
    ciphertext = _b64(sealed.get("ciphertext"), "the ciphertext", path)
    if len(salt) != _SALT_BYTES:
        raise StoreCorruptError(f"{path}: the salt is {len(salt)} bytes, not {_SALT_BYTES}")
    if len(nonce) != _NONCE_BYTES:
        raise StoreCorruptError(f"{path}: the nonce is {len(nonce)} bytes, not {_NONCE_BYTES}")
    if len(ciphertext) < 16:
        raise StoreCorruptError(
            f"{path}: the ciphertext is {len(ciphertext)} bytes, shorter "
            "than its 16-byte tag; the file is truncated"
        )
    key = derive_key(password.encode("utf-8"), salt)
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, None)
    except InvalidTag:
        raise WrongPasswordError(
            f"wrong password for {path}, or the file was altered: "
            "give the password the original Vultrino used"
        ) from None
    return _parse_payload(plaintext, version, path)


def _parse_payload(plaintext: bytes, version: int, path: Path) -> RustVault:
    try:
        doc = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StoreCorruptError(f"{path}: it opened, but what it holds is not JSON") from None
    if not isinstance(doc, dict):
        raise StoreCorruptError(f"{path}: it opened, but holds a {type(doc).__name__}")

    def section(value: object, what: str) -> dict[str, dict[str, Any]]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise StoreCorruptError(f"{path}: its {what} are not a map of records")
        return {str(k): v for k, v in value.items()}

    if (
        "credentials" in doc
        and isinstance(doc["credentials"], dict)
        and (
            not doc["credentials"]
            or all(isinstance(v, dict) and "alias" in v for v in doc["credentials"].values())
        )
    ):
        return RustVault(
            version=version,
            credentials=section(doc["credentials"], "credentials"),
            roles=section(doc.get("roles"), "roles"),
            api_keys=section(doc.get("api_keys"), "API keys"),
        )
    # the first format: the credentials map alone
    return RustVault(version=version, credentials=section(doc, "credentials"))
