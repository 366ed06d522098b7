"""A cache of parsed manifests and verified modules, so a scan of the plugins directory (every
``vultrino plugin list``, every start of the MCP server) does not re-parse every ``plugin.toml``
nor re-hash every installed module.

It is one JSON file, ``<home>/cache/manifest-cache.json`` (mode 0600, replaced atomically; kept
out of the plugins directory, whose every entry the installer accounts for). An entry is used
only when the file it describes is provably unchanged:

- a manifest entry holds the manifest's exact text and its (inode, size, mtime_ns); it is used
  when the file has the same inode, size and mtime and its bytes, read again, equal the stored
  text;
- a module entry holds the module's (device, inode, size, mtime_ns, ctime_ns) and the exact
  text of ``.installed.json`` whose sha256 the module was checked against; any difference
  (including a rewrite that restored the mtime: the ctime cannot be set back) means the module
  is hashed again. Only a module that passed is recorded.

Anything odd about the cache file (missing, unreadable, too large, not JSON, another format or
Vultrino version, an entry of the wrong shape, a manifest that does not decode into the spec
classes) makes that entry, or the whole file, a miss: the plugin is loaded the slow way and the
cache is rewritten. The cache is as trusted as the plugins directory that holds it (whoever can
write one can write the other); it cannot make Vultrino use a file that changed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from vultrino._fs import atomic_write
from vultrino._version import __version__
from vultrino.plugins.base import (
    ActionSpec,
    CredentialTypeSpec,
    FieldSpec,
    HttpSpec,
    ParameterSpec,
    PluginInfo,
    PluginManifest,
    ToolSpec,
)

__all__ = ["CACHE_FILE", "ManifestCache"]

#: The cache's name inside the home's cache directory.
CACHE_FILE = "manifest-cache.json"
#: Bumped whenever what is stored changes meaning.
FORMAT = 1
# The modules whose code decides what a manifest parses into: an entry made by other code
# (an upgrade, a checkout, a local edit, with or without a version bump) is not reused.
_PARSER_MODULES = ("manifest.py", "base.py", "validation.py", "_manifest_cache.py")
_parser_stamp_value: str | None = None


def _parser_stamp() -> str:
    """Size and mtime of the parser's own source files (a stat each, once per process)."""
    global _parser_stamp_value  # noqa: PLW0603 - computed once per process
    if _parser_stamp_value is None:
        here = Path(__file__).parent
        parts = []
        for name in _PARSER_MODULES:
            try:
                st = os.stat(here / name)
                parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                parts.append(f"{name}:?")
        _parser_stamp_value = ";".join(parts)
    return _parser_stamp_value


#: A cache larger than this is ignored (20 typical plugins take ~100 KB).
MAX_CACHE_BYTES = 16 * 1024 * 1024

_SPECS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        ActionSpec,
        CredentialTypeSpec,
        FieldSpec,
        HttpSpec,
        ParameterSpec,
        PluginInfo,
        PluginManifest,
        ToolSpec,
    )
}


class _UndecodableError(Exception):
    pass


def _encode(value: Any) -> Any:
    """Spec objects and TOML values as JSON, tagged so :func:`_decode` rebuilds them exactly."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "$spec": type(value).__name__,
            "fields": {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise _UndecodableError("non-string key")
        return {"$dict": {k: _encode(v) for k, v in value.items()}}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise _UndecodableError(f"cannot store a {type(value).__name__}")  # a TOML date, say


def _decode(data: Any) -> Any:
    if isinstance(data, list):
        return [_decode(v) for v in data]
    if isinstance(data, dict):
        if len(data) == 1 and isinstance(data.get("$tuple"), list):
            return tuple(_decode(v) for v in data["$tuple"])
        if len(data) == 1 and isinstance(data.get("$dict"), dict):
            return {k: _decode(v) for k, v in data["$dict"].items()}
        cls = _SPECS.get(data.get("$spec"))  # type: ignore[arg-type]
        fields = data.get("fields")
        if cls is None or not isinstance(fields, dict) or len(data) != 2:
            raise _UndecodableError("not a spec object")
        return cls(**{k: _decode(v) for k, v in fields.items()})
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    raise _UndecodableError("unexpected value")


def _encode_manifest(manifest: PluginManifest) -> Any | None:
    """The stored form, or None when the manifest would not come back identical."""
    try:
        encoded = _encode(manifest)
        back = _decode(json.loads(json.dumps(encoded, allow_nan=False)))
    except (_UndecodableError, TypeError, ValueError, RecursionError):
        return None
    if back != manifest or back.warnings != manifest.warnings:
        return None
    return encoded


def _decode_manifest(data: Any) -> PluginManifest | None:
    try:
        manifest = _decode(data)
    except (_UndecodableError, TypeError, ValueError, AttributeError, RecursionError):
        return None
    return manifest if type(manifest) is PluginManifest else None


def _int_list(value: Any, length: int) -> list[int] | None:
    if isinstance(value, list) and len(value) == length and all(type(v) is int for v in value):
        return value
    return None


class ManifestCache:
    """The cache of one plugins directory, in the file ``path``: read once, consulted per
    plugin, saved once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._old: dict[str, Any] = self._read()
        self._new: dict[str, dict[str, Any]] = {}
        self.hits = 0  # manifests and modules taken from the cache (for the tests)
        self.misses = 0

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size > MAX_CACHE_BYTES:
                    return {}
                data = json.loads(fh.read(MAX_CACHE_BYTES + 1))
        except (OSError, ValueError, RecursionError):
            return {}
        if (
            not isinstance(data, dict)
            or data.get("format") != FORMAT
            or data.get("vultrino") != __version__
            or data.get("parser") != _parser_stamp()
            or not isinstance(data.get("plugins"), dict)
        ):
            return {}
        plugins: dict[str, Any] = data["plugins"]
        return plugins

    def _entry(self, name: str) -> dict[str, Any]:
        entry = self._old.get(name)
        return entry if isinstance(entry, dict) else {}

    # --- manifests -------------------------------------------------------------------------

    def manifest(self, name: str, data: bytes, stat: os.stat_result) -> PluginManifest | None:
        """The cached manifest of plugin ``name`` whose ``plugin.toml`` was read as ``data``
        (with ``stat`` taken from the open file), or None."""
        cached = self._entry(name).get("manifest")
        found = None
        if isinstance(cached, dict):
            key = _int_list(cached.get("stat"), 3)
            text = cached.get("text")
            if (
                key == [stat.st_ino, stat.st_size, stat.st_mtime_ns]
                and isinstance(text, str)
                and text.encode("utf-8", "surrogatepass") == data
            ):
                found = _decode_manifest(cached.get("spec"))
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._new.setdefault(name, {})["manifest"] = cached
        return found

    def put_manifest(
        self, name: str, data: bytes, stat: os.stat_result, manifest: PluginManifest
    ) -> None:
        encoded = _encode_manifest(manifest)
        if encoded is None:
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return
        self._new.setdefault(name, {})["manifest"] = {
            "stat": [stat.st_ino, stat.st_size, stat.st_mtime_ns],
            "text": text,
            "spec": encoded,
        }

    # --- verified modules ------------------------------------------------------------------

    @staticmethod
    def _module_key(stat: os.stat_result) -> list[int]:
        return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]

    def module_verified(
        self, name: str, module: str, meta_text: str, stat: os.stat_result, sha256: str
    ) -> bool:
        """Whether the module (``stat``) was verified to have digest ``sha256`` against this
        very ``.installed.json`` text (``meta_text``), and neither changed since."""
        cached = self._entry(name).get("module")
        if (
            isinstance(cached, dict)
            and cached.get("name") == module
            and _int_list(cached.get("stat"), 5) == self._module_key(stat)
            and cached.get("installed") == meta_text
            and cached.get("sha256") == sha256
        ):
            self.hits += 1
            self._new.setdefault(name, {})["module"] = cached
            return True
        self.misses += 1
        return False

    def put_module(
        self, name: str, module: str, meta_text: str, stat: os.stat_result, sha256: str
    ) -> None:
        self._new.setdefault(name, {})["module"] = {
            "name": module,
            "stat": self._module_key(stat),
            "installed": meta_text,
            "sha256": sha256,
        }

    # --- saving ----------------------------------------------------------------------------

    def save(self) -> None:
        """Write what this scan used or learned (entries of removed plugins drop out), when it
        differs from what was read. Failing to write (a read-only directory) is not an error."""
        if self._new == self._old:
            return
        data = json.dumps(
            {
                "format": FORMAT,
                "vultrino": __version__,
                "parser": _parser_stamp(),
                "plugins": self._new,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8", "surrogatepass")
        try:
            if not self.path.parent.is_dir():  # the home's cache/, private like the home
                self.path.parent.mkdir(mode=0o700)
            atomic_write(self.path, data, mode=0o600, fsync=False)  # a cache: a loss is harmless
        except OSError:
            return
        self._old = self._new
