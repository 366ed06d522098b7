"""The manifest cache (cache/manifest-cache.json): a scan reuses a parsed manifest or a verified
module only while the file is provably unchanged, and a corrupt or hostile cache file can
neither crash a scan nor change what it reports."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_registry import write_plugin
from vultrino.plugins._manifest_cache import CACHE_FILE, ManifestCache
from vultrino.plugins.manifest import load_manifest
from vultrino.plugins.registry import PluginRegistry


def _no_runtime() -> Any:
    raise AssertionError("a scan must not create a runtime")


def installed(plugins: Path, name: str, *, tools: tuple[str, ...] = ()) -> Path:
    d = write_plugin(plugins, name, tools=tools)
    wasm = (d / "guest.wasm").read_bytes()
    meta = {"name": name, "sha256": hashlib.sha256(wasm).hexdigest(), "size": len(wasm)}
    (d / ".installed.json").write_text(json.dumps(meta))
    return d


def cache_file(plugins: Path) -> Path:
    return plugins.parent / "cache" / CACHE_FILE


def scan(plugins: Path) -> tuple[dict[str, Any], dict[str, str], ManifestCache]:
    """One full scan: name -> manifest, the broken plugins, and the cache it used."""
    reg = PluginRegistry(plugins, _no_runtime, manifest_cache=cache_file(plugins))
    reg.load_all()
    cache = reg.last_cache
    assert cache is not None
    manifests = {p.name: p.manifest for p in reg.plugins() if not p.builtin}
    return manifests, reg.broken(), cache


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    p = tmp_path / "plugins"
    for i in range(3):
        installed(p, f"p{i}", tools=(f"tool_{i}",))
    return p


def test_first_scan_misses_and_writes_a_private_cache(plugins: Path) -> None:
    manifests, broken, cache = scan(plugins)
    assert broken == {} and sorted(manifests) == ["p0", "p1", "p2"]
    assert cache.hits == 0 and cache.misses == 6  # 3 manifests + 3 modules
    path = cache_file(plugins)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [CACHE_FILE]  # no temporary file left
    assert sorted(p.name for p in plugins.iterdir()) == ["p0", "p1", "p2"]  # nothing added


def test_second_scan_hits_and_gives_identical_manifests(plugins: Path) -> None:
    first, _, _ = scan(plugins)
    second, broken, cache = scan(plugins)
    assert broken == {} and cache.hits == 6 and cache.misses == 0
    assert second == first
    for name, manifest in second.items():
        parsed = load_manifest(plugins / name / "plugin.toml")
        assert manifest == parsed and manifest.warnings == parsed.warnings


def test_a_changed_manifest_is_parsed_again(plugins: Path) -> None:
    scan(plugins)
    toml = plugins / "p1" / "plugin.toml"
    before = toml.stat()
    text = toml.read_text().replace('version = "1.0.0"', 'version = "1.0.1"')
    assert text != toml.read_text()
    toml.write_text(text)
    os.utime(toml, ns=(before.st_atime_ns, before.st_mtime_ns))  # even with the mtime restored
    manifests, _, cache = scan(plugins)
    assert manifests["p1"].plugin.version == "1.0.1"
    assert cache.misses == 1 and cache.hits == 5


def test_a_manifest_broken_after_caching_makes_the_plugin_broken(plugins: Path) -> None:
    scan(plugins)
    (plugins / "p2" / "plugin.toml").write_text("[plugin\n")
    manifests, broken, _ = scan(plugins)
    assert "p2" not in manifests and "invalid TOML" in broken["p2"]


def test_a_module_swapped_with_its_mtime_restored_is_hashed_and_refused(plugins: Path) -> None:
    scan(plugins)
    wasm = plugins / "p0" / "guest.wasm"
    before = wasm.stat()
    data = bytearray(wasm.read_bytes())
    data[-1] ^= 0x01  # same size
    wasm.write_bytes(bytes(data))
    os.utime(wasm, ns=(before.st_atime_ns, before.st_mtime_ns))
    _, broken, cache = scan(plugins)
    assert "changed after it was installed" in broken["p0"]
    assert cache.misses == 1


def test_a_changed_installed_json_is_checked_again(plugins: Path) -> None:
    scan(plugins)
    meta_path = plugins / "p0" / ".installed.json"
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    _, broken, _ = scan(plugins)
    assert "changed after it was installed" in broken["p0"]


def test_a_removed_plugin_drops_out_of_the_cache(plugins: Path) -> None:
    scan(plugins)
    for f in (plugins / "p2").iterdir():
        f.unlink()
    (plugins / "p2").rmdir()
    scan(plugins)
    stored = json.loads((cache_file(plugins)).read_text())
    assert sorted(stored["plugins"]) == ["p0", "p1"]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\xff garbage",
        b"[]",
        b'{"format": 1}',
        b"[" * 100_000,  # nested too deeply for json
        b'{"format": 999, "vultrino": "x", "plugins": {}}',
    ],
)
def test_a_corrupt_cache_is_a_miss(plugins: Path, content: bytes) -> None:
    expected, _, _ = scan(plugins)
    (cache_file(plugins)).write_bytes(content)
    manifests, broken, cache = scan(plugins)
    assert broken == {} and manifests == expected and cache.hits == 0
    assert json.loads((cache_file(plugins)).read_text())["plugins"].keys() == expected.keys()


def _tamper(plugins: Path, edit: Any) -> None:
    path = cache_file(plugins)
    data = json.loads(path.read_text())
    edit(data["plugins"])
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "edit",
    [
        # a manifest entry claiming another plugin's manifest for p0's unchanged file
        lambda p: p["p0"]["manifest"].__setitem__("text", p["p1"]["manifest"]["text"]),
        # entries of the wrong shape
        lambda p: p["p0"].__setitem__("manifest", {"stat": "x", "text": 1, "spec": None}),
        lambda p: p["p0"]["manifest"].__setitem__("spec", {"$spec": "os.system", "fields": {}}),
        lambda p: p["p0"]["manifest"]["spec"].__setitem__("fields", {"bogus": 1}),
        lambda p: p["p0"]["manifest"].__setitem__("spec", {"$tuple": []}),
        lambda p: p.__setitem__("p0", ["not", "a", "dict"]),
        lambda p: p["p0"]["module"].__setitem__("stat", [True, 1, 2, 3, 4]),
    ],
)
def test_a_hostile_entry_cannot_crash_or_mislead(plugins: Path, edit: Any) -> None:
    expected, _, _ = scan(plugins)
    _tamper(plugins, edit)
    manifests, broken, _ = scan(plugins)
    assert broken == {} and manifests == expected


def test_a_false_module_digest_is_not_trusted(plugins: Path) -> None:
    """A module entry whose digest is not the one .installed.json records is re-hashed."""
    scan(plugins)
    wasm = plugins / "p0" / "guest.wasm"
    _tamper(plugins, lambda p: p["p0"]["module"].__setitem__("sha256", "f" * 64))
    _, broken, cache = scan(plugins)
    assert broken == {} and cache.misses == 1
    assert wasm.exists()


def test_a_value_json_cannot_hold_exactly_is_not_cached(tmp_path: Path) -> None:
    """A TOML date, or a float that would come back different, is never stored: the manifest
    is parsed on every scan instead."""
    import dataclasses
    import datetime

    from vultrino.plugins._manifest_cache import _encode_manifest

    manifest = load_manifest(write_plugin(tmp_path / "plugins", "x") / "plugin.toml")
    assert _encode_manifest(manifest) is not None
    action = manifest.actions[0]
    for odd in (datetime.date(2024, 1, 2), float("nan"), {1: "int key"}):
        param = dataclasses.replace(action.parameters[0], default=odd)
        changed = dataclasses.replace(
            manifest, actions=(dataclasses.replace(action, parameters=(param,)),)
        )
        assert _encode_manifest(changed) is None, odd


def test_a_cache_that_cannot_be_written_still_scans(plugins: Path) -> None:
    (plugins.parent / "cache").write_text("a file where the cache directory should be")
    for _ in range(2):
        manifests, broken, cache = scan(plugins)
        assert broken == {} and len(manifests) == 3 and cache.hits == 0


def test_without_a_cache_file_nothing_is_cached(plugins: Path) -> None:
    reg = PluginRegistry(plugins, _no_runtime)
    reg.load_all()
    assert reg.last_cache is None and len(reg.plugins()) == 3
    assert not (plugins.parent / "cache").exists()


def test_entries_made_by_other_parser_code_are_not_reused(plugins: Path) -> None:
    """A cache written by another build of the parser (same version number, other code: a
    checkout, an upgrade without a bump) is a miss, so a new validation rule applies at once."""
    expected, _, _ = scan(plugins)
    path = cache_file(plugins)
    data = json.loads(path.read_text())
    assert data["parser"]  # the stamp of the code that wrote it
    data["parser"] = "manifest.py:1:1;base.py:1:1"
    path.write_text(json.dumps(data))
    manifests, broken, cache = scan(plugins)
    assert broken == {} and manifests == expected and cache.hits == 0
