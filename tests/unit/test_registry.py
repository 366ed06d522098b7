"""The plugin registry and WasmPlugin, on real plugin directories with tiny real wasm modules.

The guests are a few lines of WAT compiled at test time: an ABI 2 echo guest that answers
``{"ok": <the request bytes>}`` (so a test can see exactly what the plugin was sent), and guests
that answer a fixed response (errors, garbage).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from vultrino import _msgpack
from vultrino.errors import (
    ActionFailedError,
    ActionNotFoundError,
    CredentialMismatchError,
    ManifestError,
    ModuleError,
    PluginABIError,
    PluginConflictError,
    PluginError,
    PluginNotFoundError,
    UnknownCredentialTypeError,
)
from vultrino.plugins.base import CredentialView, PluginInfo, PluginManifest
from vultrino.plugins.http import HttpPlugin
from vultrino.plugins.manifest import parse_manifest
from vultrino.plugins.registry import RESERVED_TOOL_NAMES, PluginRegistry
from vultrino.plugins.wasm import WasmPlugin

EXECUTE = "vultrino:plugin/handler@1.0.0#execute"

_ALLOC = """
  (import "vultrino:plugin/host@1.0.0" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 4)
  (global $bump (mut i32) (i32.const 65536))
  (func $alloc (export "cabi_realloc")
        (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump
      (i32.and (i32.add (i32.add (global.get $bump) (local.get $size)) (i32.const 7))
               (i32.const -8)))
    (local.get $p))
"""

ECHO_WAT = (
    "(module"
    + _ALLOC
    + f"""
  (func (export "{EXECUTE}") (param $ptr i32) (param $len i32) (result i32)
    (local $out i32)
    ;; {{"ok": bin32(request)}}: fixmap(1) fixstr "ok" bin32 <len BE> <bytes>
    (local.set $out (call $alloc (i32.const 0) (i32.const 0) (i32.const 1)
                                 (i32.add (local.get $len) (i32.const 9))))
    (i32.store8 offset=0 (local.get $out) (i32.const 0x81))
    (i32.store8 offset=1 (local.get $out) (i32.const 0xa2))
    (i32.store8 offset=2 (local.get $out) (i32.const 0x6f))
    (i32.store8 offset=3 (local.get $out) (i32.const 0x6b))
    (i32.store8 offset=4 (local.get $out) (i32.const 0xc6))
    (i32.store8 offset=5 (local.get $out) (i32.shr_u (local.get $len) (i32.const 24)))
    (i32.store8 offset=6 (local.get $out) (i32.shr_u (local.get $len) (i32.const 16)))
    (i32.store8 offset=7 (local.get $out) (i32.shr_u (local.get $len) (i32.const 8)))
    (i32.store8 offset=8 (local.get $out) (local.get $len))
    (memory.copy (i32.add (local.get $out) (i32.const 9)) (local.get $ptr) (local.get $len))
    (i32.store (i32.const 16) (local.get $out))
    (i32.store (i32.const 20) (i32.add (local.get $len) (i32.const 9)))
    (i32.const 16))
)"""
)


def constant_wat(response: Any) -> str:
    """A guest that answers every call with ``response`` (msgpack-encoded)."""
    data = _msgpack.packb(response)
    escaped = "".join(f"\\{b:02x}" for b in data)
    return (
        "(module"
        + _ALLOC
        + f"""
  (data (i32.const 1024) "{escaped}")
  (func (export "{EXECUTE}") (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 16) (i32.const 1024))
    (i32.store (i32.const 20) (i32.const {len(data)}))
    (i32.const 16))
)"""
    )


def manifest_text(name: str, *, tools: tuple[str, ...] = (), extra: str = "") -> str:
    text = f"""
[plugin]
name = "{name}"
version = "1.0.0"
description = "test plugin {name}"
wasm_module = "guest.wasm"

[[credential_types]]
name = "key"

[[credential_types.fields]]
name = "secret"
type = "password"
required = true

[[credential_types.fields]]
name = "label"
type = "text"

[[actions]]
name = "echo"
description = "Echo the request"

[[actions.parameters]]
name = "message"
type = "string"

[[actions]]
name = "ping"
description = "Needs no credential"
requires_credential = false
"""
    for tool in tools:
        text += f'\n[[mcp_tools]]\nname = "{tool}"\naction = "echo"\n'
    return text + extra


def write_plugin(
    plugins: Path,
    name: str,
    *,
    wat: str = ECHO_WAT,
    tools: tuple[str, ...] = (),
    manifest: str | None = None,
    module: bool = True,
) -> Path:
    directory = plugins / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "plugin.toml").write_text(manifest or manifest_text(name, tools=tools))
    if module:
        (directory / "guest.wasm").write_bytes(wasmtime.wat2wasm(wat))
    return directory


class CountingFactory:
    """Hands out one real WasmRuntime and counts how often it was asked for."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.calls = 0
        self.runtime: Any = None

    def __call__(self) -> Any:
        from vultrino.runtime import WasmRuntime

        self.calls += 1
        if self.runtime is None:
            self.runtime = WasmRuntime(cache_dir=self.cache)
        return self.runtime


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    path = tmp_path / "plugins"
    path.mkdir()
    return path


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[CountingFactory]:
    f = CountingFactory(tmp_path / "cache")
    yield f
    if f.runtime is not None and hasattr(f.runtime, "close"):
        f.runtime.close()


@pytest.fixture(scope="module")
def http() -> Iterator[HttpPlugin]:
    """The real built-in plugin (only its manifest is used here; closing it is idempotent)."""
    plugin = HttpPlugin()
    yield plugin
    plugin.close()


@pytest.fixture
def registry(
    plugins_dir: Path, factory: CountingFactory, http: HttpPlugin
) -> Iterator[PluginRegistry]:
    reg = PluginRegistry(plugins_dir, factory, builtins=[http])
    yield reg
    reg.close()


def cred(fields: dict[str, Any] | None = None, *, type: str = "key") -> CredentialView:
    return CredentialView(alias="my-key", type=type, fields=fields or {"secret": "hunter2-long"})


def echoed(result: Any) -> dict[str, Any]:
    """The request the echo guest received."""
    request: dict[str, Any] = _msgpack.unpackb(result.value)
    return request


# --- scanning --------------------------------------------------------------------------------


def test_broken_plugin_never_takes_the_others_down(
    registry: PluginRegistry, plugins_dir: Path
) -> None:
    write_plugin(plugins_dir, "good")
    write_plugin(plugins_dir, "bad-manifest", manifest='[plugin]\nname = "bad-manifest"\n')
    write_plugin(plugins_dir, "no-module", module=False)
    write_plugin(plugins_dir, "wrong-dir", manifest=manifest_text("other-name"))
    (plugins_dir / "no-toml").mkdir()
    write_plugin(plugins_dir, "syntax", manifest="[plugin\n")
    registry.load_all()

    assert [p.name for p in registry.plugins()] == ["http", "good"]
    broken = registry.broken()
    assert sorted(broken) == ["bad-manifest", "no-module", "no-toml", "syntax", "wrong-dir"]
    assert "plugin.version: required" in broken["bad-manifest"]
    assert "guest.wasm is missing" in broken["no-module"]
    assert "holds plugin 'other-name'" in broken["wrong-dir"]
    assert "no plugin.toml" in broken["no-toml"]
    assert "invalid TOML" in broken["syntax"] and "plugin.toml:1" in broken["syntax"]
    # ...and the good one works.
    result = registry.get("good").execute("echo", {"message": "hi"}, cred())
    assert echoed(result)["params"] == {"message": "hi"}


def test_dot_directories_and_files_are_skipped(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, ".staging-123", manifest="garbage")
    (plugins_dir / "README").write_text("not a plugin")
    write_plugin(plugins_dir, "good")
    registry.load_all()
    assert [p.name for p in registry.plugins()] == ["http", "good"]
    assert registry.broken() == {}


def test_missing_plugins_dir_means_only_builtins(
    tmp_path: Path, factory: CountingFactory, http: HttpPlugin
) -> None:
    reg = PluginRegistry(tmp_path / "nowhere", factory, builtins=[http])
    reg.load_all()
    assert [p.name for p in reg.plugins()] == ["http"]
    assert reg.broken() == {}


def test_plugins_are_builtins_first_then_by_name(
    registry: PluginRegistry, plugins_dir: Path
) -> None:
    for name in ("zeta", "alpha", "mid"):
        write_plugin(plugins_dir, name)
    registry.load_all()
    plugins = registry.plugins()
    assert [p.name for p in plugins] == ["http", "alpha", "mid", "zeta"]
    assert [p.builtin for p in plugins] == [True, False, False, False]


def test_module_outside_the_plugin_directory_is_refused(
    registry: PluginRegistry, plugins_dir: Path, tmp_path: Path
) -> None:
    directory = write_plugin(plugins_dir, "linked", module=False)
    outside = tmp_path / "outside.wasm"
    outside.write_bytes(wasmtime.wat2wasm(ECHO_WAT))
    (directory / "guest.wasm").symlink_to(outside)
    registry.load_all()
    assert "linked" in registry.broken()


def test_load_all_rescans_and_bumps_generation(registry: PluginRegistry, plugins_dir: Path) -> None:
    g0 = registry.generation
    registry.load_all()
    assert registry.generation == g0 + 1
    write_plugin(plugins_dir, "later")
    registry.load_all()
    assert registry.generation == g0 + 2
    assert registry.get("later").name == "later"


def test_duplicate_builtin_names_are_refused(
    plugins_dir: Path, factory: CountingFactory, http: HttpPlugin
) -> None:
    with pytest.raises(PluginConflictError, match="two built-in plugins are named http"):
        PluginRegistry(plugins_dir, factory, builtins=[http, http])


# --- get -------------------------------------------------------------------------------------


def test_get_unknown_plugin_lists_installed(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "good")
    registry.load_all()
    with pytest.raises(
        PluginNotFoundError, match=r"no plugin named 'nope' \(installed: http, good\)"
    ):
        registry.get("nope")


def test_get_broken_plugin_says_why(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "no-module", module=False)
    registry.load_all()
    with pytest.raises(PluginNotFoundError, match=r"installed but broken: .*missing"):
        registry.get("no-module")


def test_get_builtin(registry: PluginRegistry, http: HttpPlugin) -> None:
    assert registry.get("http") is http


# --- lazy loading and execute ----------------------------------------------------------------


def test_modules_load_lazily_and_share_one_runtime(
    registry: PluginRegistry, plugins_dir: Path, factory: CountingFactory
) -> None:
    write_plugin(plugins_dir, "one")
    write_plugin(plugins_dir, "two")
    registry.load_all()
    one, two = registry.get("one"), registry.get("two")
    assert isinstance(one, WasmPlugin) and isinstance(two, WasmPlugin)
    assert not one.loaded and not two.loaded
    assert factory.calls == 0  # no engine touched by scanning
    one.execute("echo", {}, cred())
    assert one.loaded and not two.loaded
    two.execute("echo", {}, cred())
    assert factory.runtime is not None
    assert factory.calls == 1  # the registry asked its factory once


def test_execute_sends_the_design_request(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "good")
    registry.load_all()
    view = cred({"secret": "hunter2-long", "label": "main"})
    request = echoed(registry.get("good").execute("echo", {"message": "I approve"}, view))
    assert request == {
        "action": "echo",
        "params": {"message": "I approve"},
        "credential": {
            "alias": "my-key",
            "type": "key",
            "fields": {"secret": "hunter2-long", "label": "main"},
        },
    }


def test_action_without_credential_gets_nil(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "good")
    registry.load_all()
    plugin = registry.get("good")
    assert echoed(plugin.execute("ping", {}, None))["credential"] is None
    # A credential offered to an action that needs none is not passed on.
    assert echoed(plugin.execute("ping", {}, cred()))["credential"] is None


def test_credential_of_another_type_is_never_passed(
    registry: PluginRegistry, plugins_dir: Path
) -> None:
    write_plugin(plugins_dir, "good")
    registry.load_all()
    plugin = registry.get("good")
    with pytest.raises(CredentialMismatchError, match="of type 'api_key'"):
        plugin.execute("echo", {}, cred(type="api_key"))
    with pytest.raises(CredentialMismatchError, match="needs a credential"):
        plugin.execute("echo", {}, None)


def test_unknown_action_fails_before_loading(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "good")
    registry.load_all()
    plugin = registry.get("good")
    assert isinstance(plugin, WasmPlugin)
    with pytest.raises(ActionNotFoundError, match=r"no action 'nope' \(actions: echo, ping\)"):
        plugin.execute("nope", {}, cred())
    assert not plugin.loaded


def test_plugin_error_answer_becomes_action_failed_and_is_scrubbed(
    registry: PluginRegistry, plugins_dir: Path
) -> None:
    answer = {"error": {"code": "invalid_credential", "message": "bad passphrase hunter2-long!"}}
    write_plugin(plugins_dir, "failing", wat=constant_wat(answer))
    registry.load_all()
    with pytest.raises(ActionFailedError) as info:
        registry.get("failing").execute("echo", {}, cred())
    assert info.value.code == "invalid_credential"
    assert info.value.plugin == "failing"
    assert "hunter2-long" not in str(info.value)
    assert "bad passphrase [REDACTED]!" in str(info.value)


def test_unknown_action_answer_becomes_action_not_found(
    registry: PluginRegistry, plugins_dir: Path
) -> None:
    answer = {"error": {"code": "unknown_action", "message": "no such thing"}}
    write_plugin(plugins_dir, "forgetful", wat=constant_wat(answer))
    registry.load_all()
    with pytest.raises(ActionNotFoundError, match="no such thing"):
        registry.get("forgetful").execute("echo", {}, cred())


def test_ok_answer_value_is_the_result(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(
        plugins_dir, "answers", wat=constant_wat({"ok": {"signature": "abc", "n": [1, 2]}})
    )
    registry.load_all()
    result = registry.get("answers").execute("echo", {}, cred())
    assert result.value == {"signature": "abc", "n": [1, 2]}
    assert result.new_state is None


def test_garbage_answer_is_an_abi_error(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "garbage", wat=constant_wat({"result": 1}))
    registry.load_all()
    with pytest.raises(PluginABIError) as info:
        registry.get("garbage").execute("echo", {}, cred())
    assert info.value.plugin == "garbage"


def test_ensure_loaded_validates_the_module(registry: PluginRegistry, plugins_dir: Path) -> None:
    directory = write_plugin(plugins_dir, "junk")
    (directory / "guest.wasm").write_bytes(b"\x00asm-not-really")
    registry.load_all()
    plugin = registry.get("junk")  # listed: the module is not read at scan time
    assert isinstance(plugin, WasmPlugin)
    with pytest.raises(ModuleError):
        plugin.ensure_loaded()


def test_module_removed_after_scan_is_a_module_error(
    registry: PluginRegistry, plugins_dir: Path
) -> None:
    directory = write_plugin(plugins_dir, "vanishing")
    registry.load_all()
    (directory / "guest.wasm").unlink()
    with pytest.raises(ModuleError, match=r"cannot read its module guest\.wasm"):
        registry.get("vanishing").execute("echo", {}, cred())


def test_concurrent_calls_on_one_plugin(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "good")
    registry.load_all()
    plugin = registry.get("good")
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                request = echoed(plugin.execute("echo", {"message": f"{n}-{i}"}, cred()))
                results[n * 10 + i] = request["params"]["message"]
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == {n * 10 + i: f"{n}-{i}" for n in range(6) for i in range(5)}


def test_close_releases_modules(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "good")
    registry.load_all()
    plugin = registry.get("good")
    assert isinstance(plugin, WasmPlugin)
    plugin.execute("echo", {}, cred())
    assert plugin.loaded
    registry.close()
    assert not plugin.loaded
    registry.close()  # idempotent


# --- reload / unload / load_one --------------------------------------------------------------


def test_reload_picks_up_changes(registry: PluginRegistry, plugins_dir: Path) -> None:
    directory = write_plugin(plugins_dir, "good")
    registry.load_all()
    g = registry.generation
    text = manifest_text("good").replace('version = "1.0.0"', 'version = "1.1.0"')
    (directory / "plugin.toml").write_text(text)
    plugin = registry.reload("good")
    assert plugin.manifest.plugin.version == "1.1.0"
    assert plugin.loaded  # reload compiles now, to validate
    assert registry.get("good") is plugin
    assert registry.generation > g


def test_reload_of_a_now_broken_plugin_records_why(
    registry: PluginRegistry, plugins_dir: Path
) -> None:
    directory = write_plugin(plugins_dir, "good")
    registry.load_all()
    (directory / "plugin.toml").write_text('[plugin]\nname = "good"\n')
    with pytest.raises(ManifestError):
        registry.reload("good")
    assert "plugin.version: required" in registry.broken()["good"]
    with pytest.raises(PluginNotFoundError, match="broken"):
        registry.get("good")


def test_reload_with_bad_module_is_broken(registry: PluginRegistry, plugins_dir: Path) -> None:
    directory = write_plugin(plugins_dir, "good")
    registry.load_all()
    (directory / "guest.wasm").write_bytes(b"not wasm")
    with pytest.raises(ModuleError):
        registry.reload("good")
    assert "good" in registry.broken()


def test_reload_fixes_a_broken_plugin(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "late", module=False)
    registry.load_all()
    assert "late" in registry.broken()
    (plugins_dir / "late" / "guest.wasm").write_bytes(wasmtime.wat2wasm(ECHO_WAT))
    registry.reload("late")
    assert registry.broken() == {}
    assert registry.get("late").name == "late"


def test_reload_unknown_or_builtin(registry: PluginRegistry) -> None:
    with pytest.raises(PluginNotFoundError):
        registry.reload("nope")
    with pytest.raises(PluginError, match="built-in"):
        registry.reload("http")


def test_load_one_new_plugin(registry: PluginRegistry, plugins_dir: Path) -> None:
    registry.load_all()
    g = registry.generation
    write_plugin(plugins_dir, "fresh")
    plugin = registry.load_one("fresh")
    assert not plugin.loaded
    assert [p.name for p in registry.plugins()] == ["http", "fresh"]
    assert registry.generation > g


@pytest.mark.parametrize("name", ["../plugins", "a/b", "", ".hidden", "UPPER"])
def test_load_one_refuses_non_plugin_names(registry: PluginRegistry, name: str) -> None:
    with pytest.raises(PluginNotFoundError):
        registry.load_one(name)


def test_load_one_missing_directory(registry: PluginRegistry) -> None:
    with pytest.raises(PluginNotFoundError, match="no plugin ghost in"):
        registry.load_one("ghost")


def test_unload(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "good")
    write_plugin(plugins_dir, "no-module", module=False)
    registry.load_all()
    plugin = registry.get("good")
    assert isinstance(plugin, WasmPlugin)
    plugin.execute("echo", {}, cred())
    g = registry.generation
    registry.unload("good")
    registry.unload("no-module")
    assert not plugin.loaded
    assert [p.name for p in registry.plugins()] == ["http"]
    assert registry.broken() == {}
    assert registry.generation == g + 2
    with pytest.raises(PluginNotFoundError):
        registry.unload("good")
    with pytest.raises(PluginError, match="built-in"):
        registry.unload("http")


# --- conflicts -------------------------------------------------------------------------------


def test_plugin_cannot_shadow_a_builtin(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "http")
    registry.load_all()
    assert "plugin.name: http is the name of a built-in plugin" in registry.broken()["http"]
    assert registry.get("http").builtin


@pytest.mark.parametrize("tool", sorted(RESERVED_TOOL_NAMES))
def test_reserved_tool_names(registry: PluginRegistry, plugins_dir: Path, tool: str) -> None:
    write_plugin(plugins_dir, "greedy", tools=(tool,))
    registry.load_all()
    assert f"mcp_tools[0].name: {tool} is a built-in MCP tool" in registry.broken()["greedy"]


def test_tool_of_a_builtin_plugin_is_taken(
    plugins_dir: Path, factory: CountingFactory, http: HttpPlugin
) -> None:
    reg = PluginRegistry(plugins_dir, factory, builtins=[http], reserved_tools=())
    manifest = parse_manifest(manifest_text("mine", tools=("http_request",)))
    assert reg.check_conflicts(manifest) == [
        "mcp_tools[0].name: tool http_request is already provided by built-in plugin http"
    ]


def test_first_plugin_keeps_a_contested_tool(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "aaa", tools=("shared_tool",))
    write_plugin(plugins_dir, "bbb", tools=("own_tool", "shared_tool"))
    registry.load_all()
    assert registry.get("aaa").name == "aaa"
    reason = registry.broken()["bbb"]
    assert "mcp_tools[1].name: tool shared_tool is already provided by plugin aaa" in reason
    assert "own_tool" not in reason


def test_check_conflicts_for_an_install(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "installed", tools=("taken",))
    registry.load_all()
    newcomer = parse_manifest(manifest_text("newcomer", tools=("taken", "free")))
    assert registry.check_conflicts(newcomer) == [
        "mcp_tools[0].name: tool taken is already provided by plugin installed"
    ]
    again = parse_manifest(manifest_text("installed", tools=("taken",)))
    assert registry.check_conflicts(again) == [
        "plugin.name: a plugin named installed is already installed (replace it with --force)"
    ]
    # Replacing a plugin: its own tools do not conflict with themselves.
    assert registry.check_conflicts(again, replacing="installed") == []


def test_no_conflicts_for_a_clean_manifest(registry: PluginRegistry) -> None:
    registry.load_all()
    assert registry.check_conflicts(parse_manifest(manifest_text("clean", tools=("t1",)))) == []


# --- types and tools -------------------------------------------------------------------------


def test_resolve_builtin_short_type(registry: PluginRegistry, http: HttpPlugin) -> None:
    registry.load_all()
    plugin, spec = registry.resolve_type("api_key")
    assert plugin is http and spec.name == "api_key"


def test_resolve_plugin_type(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "pgp")
    registry.load_all()
    plugin, spec = registry.resolve_type("plugin:pgp:key")
    assert plugin.name == "pgp" and spec.name == "key"
    assert [f.name for f in spec.fields] == ["secret", "label"]


@pytest.mark.parametrize(
    ("type_str", "why"),
    [
        ("nope", ""),
        ("plugin:ghost:key", "no plugin named ghost is installed"),
        ("plugin:pgp:nokey", "plugin pgp defines no type nokey (its types: key)"),
        ("plugin:pgp", "plugin types are written plugin:<plugin>:<type>"),
        ("plugin::key", "plugin types are written"),
        ("key", "did you mean plugin:pgp:key?"),
    ],
)
def test_resolve_type_errors(
    registry: PluginRegistry, plugins_dir: Path, type_str: str, why: str
) -> None:
    write_plugin(plugins_dir, "pgp")
    registry.load_all()
    with pytest.raises(UnknownCredentialTypeError) as info:
        registry.resolve_type(type_str)
    message = str(info.value)
    assert f"unknown credential type {type_str!r}" in message
    assert why in message
    assert (
        "Known types: api_key, bearer, basic_auth, oauth2, hmac_api_key, plugin:pgp:key" in message
    )


def test_resolve_type_of_a_broken_plugin(registry: PluginRegistry, plugins_dir: Path) -> None:
    write_plugin(plugins_dir, "pgp", module=False)
    registry.load_all()
    with pytest.raises(UnknownCredentialTypeError, match="plugin pgp is installed but broken"):
        registry.resolve_type("plugin:pgp:key")


def test_types_are_qualified_for_plugins(
    registry: PluginRegistry, plugins_dir: Path, http: HttpPlugin
) -> None:
    write_plugin(plugins_dir, "pgp")
    registry.load_all()
    types = registry.types()
    assert [t for t, _, _ in types] == [
        "api_key",
        "bearer",
        "basic_auth",
        "oauth2",
        "hmac_api_key",
        "plugin:pgp:key",
    ]
    assert types[0][1] is http
    assert types[-1][2].name == "key"


def test_tools(registry: PluginRegistry, plugins_dir: Path) -> None:
    text = manifest_text("pgp") + (
        '\n[[mcp_tools]]\nname = "pgp_echo"\naction = "echo"\ndescription = "Echo it"\n'
        '\n[[mcp_tools]]\nname = "pgp_ping"\naction = "ping"\n'
    )
    write_plugin(plugins_dir, "pgp", manifest=text)
    registry.load_all()
    tools = {t.name: t for t in registry.tools()}
    assert list(tools) == ["http_request", "pgp_echo", "pgp_ping"]
    echo = tools["pgp_echo"]
    assert echo.plugin is registry.get("pgp")
    assert echo.action.name == "echo"
    assert echo.description == "Echo it"
    assert tools["pgp_ping"].description == "Needs no credential"  # falls back to the action's
    schema = echo.input_schema()
    assert schema["required"] == ["credential"]
    assert list(schema["properties"]) == ["credential", "message"]
    assert "plugin:pgp:key" in schema["properties"]["credential"]["description"]
    assert schema["additionalProperties"] is False
    assert "credential" not in tools["pgp_ping"].input_schema()["properties"]


def test_pgp_signing_manifest_registers(registry: PluginRegistry, plugins_dir: Path) -> None:
    fixture = Path(__file__).parent.parent / "fixtures" / "manifests" / "pgp-signing.toml"
    directory = plugins_dir / "pgp-signing"
    directory.mkdir()
    (directory / "plugin.toml").write_text(fixture.read_text())
    (directory / "pgp_signing.wasm").write_bytes(wasmtime.wat2wasm(ECHO_WAT))
    registry.load_all()
    assert registry.broken() == {}
    plugin, spec = registry.resolve_type("plugin:pgp-signing:pgp_key")
    assert spec.secret_fields == ("private_key", "passphrase")
    assert {t.name for t in registry.tools()} >= {"pgp_sign_cleartext", "pgp_get_public_key"}
    view = CredentialView(
        "release-key", "pgp_key", {"private_key": "-----BEGIN...", "passphrase": "pw"}
    )
    request = echoed(plugin.execute("sign_cleartext", {"message": "I approve"}, view))
    assert request["action"] == "sign_cleartext"
    assert request["credential"]["type"] == "pgp_key"


def test_wasm_plugin_needs_a_module_name(plugins_dir: Path, factory: CountingFactory) -> None:
    bare = PluginManifest(plugin=PluginInfo(name="x", version="1.0.0"))
    with pytest.raises(PluginError, match="no wasm_module"):
        WasmPlugin(plugins_dir / "x", bare, factory)
