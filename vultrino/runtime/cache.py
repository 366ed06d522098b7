"""The on-disk cache of compiled modules (``$VULTRINO_HOME/cache``).

A large plugin compiles once (about half a second for 1.5 MB of wasm) and afterwards loads in a
few milliseconds. An entry is keyed by the module's sha256, the engine name, the engine version
and ``engine.fingerprint(limits)`` (whatever else the compiled code depends on).

Engines load serialized code without checking it — wasmtime's ``deserialize`` on garbage can
crash the process — so an entry is never handed to an engine blindly. Each file starts with a
header naming exactly what it holds, followed by a CRC-32 of the payload; the header must match
the key and the checksum must match the payload before :meth:`ModuleCache.load` returns it.
Anything else (truncated, corrupt, foreign, from another engine build) is reported as a miss,
removed, and rebuilt by the caller. Writes go to a temporary file in the same directory and are
renamed into place, so a crash never leaves a half-written entry under an entry's name.

The cache is an optimisation: a directory that cannot be written is logged and skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Final

from vultrino._fs import atomic_writer

__all__ = ["ModuleCache"]

log = logging.getLogger("vultrino.runtime.cache")

MAGIC: Final = b"VULTRINO-MODULE-CACHE\x00v1\x00"
_HEAD = struct.Struct("<I")  # header length
_MAX_HEADER: Final = 4096
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
SUFFIX: Final = ".vmc"


class ModuleCache:
    """Compiled artifacts under ``directory``; ``None`` keeps nothing on disk."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def path(self, sha256: str, engine: str, version: str, fingerprint: str) -> Path | None:
        """Where the entry for this key lives (None without a directory)."""
        if self.directory is None:
            return None
        _check_sha(sha256)
        build = hashlib.sha256(f"{version}\0{fingerprint}".encode()).hexdigest()[:16]
        return self.directory / f"{sha256}.{_safe(engine)}.{build}{SUFFIX}"

    def load(self, sha256: str, engine: str, version: str, fingerprint: str) -> bytes | None:
        """The verified payload, or None (miss, or an invalid entry, which is removed)."""
        path = self.path(sha256, engine, version, fingerprint)
        if path is None:
            return None
        expected = _header(sha256, engine, version, fingerprint)
        try:
            with path.open("rb") as fh:
                payload, problem = _read_entry(fh, expected)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read cached module %s: %s; compiling instead", path, exc)
            return None
        if problem:
            log.warning("ignoring cached module %s: %s; it will be rebuilt", path, problem)
            self._remove(path)
            return None
        return payload

    def store(
        self, sha256: str, engine: str, version: str, fingerprint: str, payload: bytes
    ) -> Path | None:
        """Write an entry atomically; returns its path, or None when nothing was written."""
        path = self.path(sha256, engine, version, fingerprint)
        if path is None:
            return None
        header = _header(sha256, engine, version, fingerprint)
        header["payload_bytes"] = len(payload)
        header["payload_crc32"] = zlib.crc32(payload)
        head = json.dumps(header, sort_keys=True).encode()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with atomic_writer(path, mode=0o600) as fh:
                fh.write(MAGIC + _HEAD.pack(len(head)) + head)
                fh.write(payload)
        except OSError as exc:
            log.warning("cannot write the module cache in %s: %s", path.parent, exc)
            return None
        return path

    def invalidate(self, sha256: str, engine: str, version: str, fingerprint: str) -> None:
        """Remove one entry (the engine rejected it even though its checksum matched)."""
        path = self.path(sha256, engine, version, fingerprint)
        if path is not None:
            self._remove(path)

    def drop(self, sha256: str) -> int:
        """Remove every entry of the module ``sha256`` (all engines and versions)."""
        _check_sha(sha256)
        if self.directory is None or not self.directory.is_dir():
            return 0
        count = 0
        for path in self.directory.glob(f"{sha256}.*{SUFFIX}"):
            if self._remove(path):
                count += 1
        return count

    @staticmethod
    def _remove(path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("cannot remove cached module %s: %s", path, exc)
            return False
        return True


def _header(sha256: str, engine: str, version: str, fingerprint: str) -> dict[str, object]:
    return {"wasm_sha256": sha256, "engine": engine, "version": version, "fingerprint": fingerprint}


def _read_entry(fh: object, expected: dict[str, object]) -> tuple[bytes | None, str | None]:
    """(payload, None) when the entry matches ``expected`` and its checksum, else (None, why)."""
    read = fh.read  # type: ignore[attr-defined]
    prefix = read(len(MAGIC) + _HEAD.size)
    if len(prefix) < len(MAGIC) + _HEAD.size or not prefix.startswith(MAGIC):
        return None, "not a Vultrino cache entry"
    (head_len,) = _HEAD.unpack_from(prefix, len(MAGIC))
    if head_len > _MAX_HEADER:
        return None, "header too large"
    try:
        header = json.loads(read(head_len))
    except ValueError:
        return None, "unreadable header"
    if not isinstance(header, dict):
        return None, "unreadable header"
    for key, value in expected.items():
        if header.get(key) != value:
            return None, f"it was built for another {key.replace('_', ' ')}"
    size = header.get("payload_bytes")
    crc = header.get("payload_crc32")
    if type(size) is not int or type(crc) is not int or size < 0:
        return None, "unreadable header"
    remaining = os.fstat(fh.fileno()).st_size - fh.tell()  # type: ignore[attr-defined]
    if remaining != size:
        return None, "truncated or padded"
    payload = read(size)
    if len(payload) != size:
        return None, "truncated"
    if zlib.crc32(payload) != crc:
        return None, "checksum mismatch (corrupt)"
    return payload, None


def _check_sha(sha256: str) -> None:
    if not _SHA256.match(sha256):
        raise ValueError("sha256 must be 64 lowercase hex digits")


def _safe(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "_", name.lower())[:32]
