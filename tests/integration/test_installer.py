"""The installer on real directories, archives, a real HTTP server and the real runtime.

Also holds the helpers the other installer test modules import: a tiny ABI 2 module compiled
from WAT, manifests, plugin directories and a filesystem snapshot.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from vultrino._version import __version__
from vultrino.errors import (
    InstallError,
    ManifestError,
    ModuleError,
    PluginConflictError,
    PluginError,
    PluginNotFoundError,
)
from vultrino.plugins.base import CredentialView
from vultrino.plugins.install import installer
from vultrino.plugins.install.scaffold import new_plugin
from vultrino.plugins.registry import PluginRegistry
from vultrino.runtime import WasmRuntime

# --- helpers shared by the installer tests ---------------------------------------------------

_ABI2_WAT = """
(module
  (import "vultrino:plugin/host@1.0.0" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 4096))
  (data (i32.const 8) "\\10\\00\\00\\00{len}\\00\\00\\00")
  (data (i32.const 16) "\\81\\a2ok{answer}")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (local.get $p) (i32.add (local.get 3) (i32.const 8))))
    (block $ok
      (loop $grow
        (br_if $ok (i32.le_u (global.get $bump) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (unreachable)))
        (br $grow)))
    (local.get $p))
  (func (export "vultrino:plugin/handler@1.0.0#execute") (param i32 i32) (result i32)
    (global.set $bump (i32.const 4096))
    (i32.const 8))
)
"""


def abi2_wasm(answer: str = "hello", *, extra_import: bool = False) -> bytes:
    """An ABI 2 module whose every call answers ``{"ok": answer}`` (msgpack)."""
    data = answer.encode()
    assert len(data) < 32  # a msgpack fixstr
    esc = "".join(f"\\{b:02x}" for b in bytes([0xA0 | len(data)]) + data)
    wat = _ABI2_WAT.replace("{answer}", esc).replace("{len}", f"\\{5 + len(data):02x}")
    if extra_import:
        wat = wat.replace(
            "  (memory (export",
            '  (import "env" "system" (func $system (param i32) (result i32)))\n  (memory (export',
        )
    return wasmtime.wat2wasm(wat)


def manifest_text(
    name: str,
    *,
    wasm_module: str | None = None,
    version: str = "1.0.0",
    tool: str | None = None,
) -> str:
    snake = name.replace("-", "_")
    module = wasm_module if wasm_module is not None else f"{snake}.wasm"
    return f"""\
[plugin]
name = "{name}"
version = "{version}"
description = "test plugin {name}"
wasm_module = "{module}"

[[credential_types]]
name = "token"

[[credential_types.fields]]
name = "value"
type = "password"
secret = true

[[actions]]
name = "greet"

[[mcp_tools]]
name = "{tool or snake + "_greet"}"
action = "greet"
"""


def make_plugin_dir(
    path: Path, name: str = "hello", *, answer: str = "hello", version: str = "1.0.0"
) -> Path:
    """A plugin source directory: plugin.toml, the prebuilt module, README, LICENSE, and
    clutter that must not be installed."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "plugin.toml").write_text(manifest_text(name, version=version))
    (path / f"{name.replace('-', '_')}.wasm").write_bytes(abi2_wasm(answer))
    (path / "README.md").write_text(f"# {name}\n")
    (path / "LICENSE").write_text("MIT\n")
    (path / "src").mkdir(exist_ok=True)
    (path / "src" / "lib.rs").write_text("// sources are not installed\n")
    (path / ".env").write_text("SECRET_TOKEN=do-not-copy\n")
    return path


def new_runtime(cache_dir: Path | None = None) -> WasmRuntime:
    return WasmRuntime(cache_dir=cache_dir)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (links not followed) with its kind and content digest."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            elif stat.S_ISREG(st.st_mode):
                out[rel] = "file:" + hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = f"special:{stat.S_IFMT(st.st_mode)}"
    return out


def tar_gz_of(directory: Path, dest: Path, *, top: str | None = None) -> Path:
    """A real .tar.gz of ``directory`` (wrapped in ``top/`` when given), as `tar czf` makes."""
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(directory, arcname=top or ".")
    return dest


def run_greet(plugins_dir: Path, name: str) -> object:
    """Load the installed plugin through the registry and run its action."""
    with PluginRegistry(plugins_dir, new_runtime()) as registry:
        registry.load_all()
        assert name not in registry.broken(), registry.broken()
        plugin = registry.get(name)
        cred = CredentialView(alias="t", type="token", fields={"value": "s3cret"})
        return plugin.execute("greet", {}, cred).value


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    return tmp_path / "home" / "plugins"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[WasmRuntime]:
    rt = new_runtime(tmp_path / "cache")
    yield rt
    rt.close()


# --- directories -----------------------------------------------------------------------------


def test_install_directory(tmp_path: Path, plugins: Path, runtime: WasmRuntime) -> None:
    src = make_plugin_dir(tmp_path / "src" / "hello")
    before = snapshot(src)
    result = installer.install(str(src), plugins_dir=plugins, runtime=runtime)

    assert result.name == "hello"
    assert result.version == "1.0.0"
    assert result.path == plugins / "hello"
    assert result.abi == 2
    assert result.sha256 == hashlib.sha256((src / "hello.wasm").read_bytes()).hexdigest()
    assert result.source == str(src)
    assert (result.ref, result.commit, result.replaced, result.built) == (None, None, False, False)
    # Only the plugin's files: never the source tree, never a secret-looking file.
    assert sorted(os.listdir(plugins / "hello")) == [
        ".installed.json",
        "LICENSE",
        "README.md",
        "hello.wasm",
        "plugin.toml",
    ]
    assert sorted(os.listdir(plugins)) == ["hello"]  # the staging directory is gone
    assert snapshot(src) == before  # the source is read, never written
    meta = installer.read_metadata(plugins / "hello")
    assert meta["source"] == str(src)
    assert meta["sha256"] == result.sha256
    assert meta["abi"] == 2
    assert meta["size"] == (src / "hello.wasm").stat().st_size
    assert meta["vultrino_version"] == __version__
    assert meta["ref"] is None and meta["commit"] is None and meta["subdir"] is None
    assert meta["installed_at"].endswith("Z")
    assert meta["kind"] == "directory" and meta["built"] is False
    assert run_greet(plugins, "hello") == "hello"


def test_install_directory_subdir(tmp_path: Path, plugins: Path, runtime: WasmRuntime) -> None:
    repo = tmp_path / "repo"
    make_plugin_dir(repo / "plugins" / "hello")
    result = installer.install(
        str(repo), plugins_dir=plugins, runtime=runtime, subdir="plugins/hello"
    )
    assert result.name == "hello"
    assert installer.read_metadata(result.path)["subdir"] == "plugins/hello"


def test_missing_manifest_suggests_subdir(
    tmp_path: Path, plugins: Path, runtime: WasmRuntime
) -> None:
    repo = tmp_path / "repo"
    make_plugin_dir(repo / "plugins" / "hello")
    with pytest.raises(InstallError, match=r"pass --subdir plugins/hello"):
        installer.install(str(repo), plugins_dir=plugins, runtime=runtime)
    assert os.listdir(plugins) == []


def test_already_installed_needs_force(tmp_path: Path, plugins: Path, runtime: WasmRuntime) -> None:
    src = make_plugin_dir(tmp_path / "hello")
    installer.install(str(src), plugins_dir=plugins, runtime=runtime)
    before = snapshot(plugins)
    with pytest.raises(InstallError, match="--force"):
        installer.install(str(src), plugins_dir=plugins, runtime=runtime)
    assert snapshot(plugins) == before


def test_force_replaces(tmp_path: Path, plugins: Path, runtime: WasmRuntime) -> None:
    installer.install(
        str(make_plugin_dir(tmp_path / "v1", answer="one")), plugins_dir=plugins, runtime=runtime
    )
    assert run_greet(plugins, "hello") == "one"
    v2 = make_plugin_dir(tmp_path / "v2", answer="two", version="2.0.0")
    result = installer.install(str(v2), plugins_dir=plugins, runtime=runtime, force=True)
    assert result.replaced and result.version == "2.0.0"
    assert installer.read_metadata(plugins / "hello")["version"] == "2.0.0"
    assert sorted(os.listdir(plugins)) == ["hello"]  # the old copy is gone
    assert run_greet(plugins, "hello") == "two"


@pytest.mark.parametrize("breakage", ["module", "manifest", "import"])
def test_force_keeps_old_when_new_fails_validation(
    tmp_path: Path, plugins: Path, runtime: WasmRuntime, breakage: str
) -> None:
    installer.install(
        str(make_plugin_dir(tmp_path / "v1", answer="one")), plugins_dir=plugins, runtime=runtime
    )
    before = snapshot(plugins)
    bad = make_plugin_dir(tmp_path / "v2", answer="two")
    if breakage == "module":
        (bad / "hello.wasm").write_bytes(b"\0asm garbage")
        error: type[Exception] = ModuleError
    elif breakage == "import":
        (bad / "hello.wasm").write_bytes(abi2_wasm("two", extra_import=True))
        error = ModuleError
    else:
        (bad / "plugin.toml").write_text(
            manifest_text("hello").replace('version = "1.0.0"', 'version = "two"')
        )
        error = ManifestError
    with pytest.raises(error):
        installer.install(str(bad), plugins_dir=plugins, runtime=runtime, force=True)
    assert snapshot(plugins) == before
    assert run_greet(plugins, "hello") == "one"


def test_module_missing_without_cargo(tmp_path: Path, plugins: Path, runtime: WasmRuntime) -> None:
    src = make_plugin_dir(tmp_path / "hello")
    (src / "hello.wasm").unlink()
    with pytest.raises(InstallError, match=r"no Cargo\.toml"):
        installer.install(str(src), plugins_dir=plugins, runtime=runtime)
    assert os.listdir(plugins) == []


def test_disallowed_import_is_named(tmp_path: Path, plugins: Path, runtime: WasmRuntime) -> None:
    src = make_plugin_dir(tmp_path / "hello")
    (src / "hello.wasm").write_bytes(abi2_wasm(extra_import=True))
    with pytest.raises(ModuleError, match="system"):
        installer.install(str(src), plugins_dir=plugins, runtime=runtime)
    assert os.listdir(plugins) == []


def test_tool_conflict_with_installed_plugin(
    tmp_path: Path, plugins: Path, runtime: WasmRuntime
) -> None:
    installer.install(
        str(make_plugin_dir(tmp_path / "a", "alpha")), plugins_dir=plugins, runtime=runtime
    )
    other = make_plugin_dir(tmp_path / "b", "beta")
    (other / "plugin.toml").write_text(manifest_text("beta", tool="alpha_greet"))
    with PluginRegistry(plugins, runtime) as registry:
        registry.load_all()
        with pytest.raises(PluginConflictError, match="alpha_greet"):
            installer.install(str(other), plugins_dir=plugins, runtime=runtime, registry=registry)
    assert sorted(os.listdir(plugins)) == ["alpha"]


def test_reserved_tool_name_conflict(tmp_path: Path, plugins: Path, runtime: WasmRuntime) -> None:
    src = make_plugin_dir(tmp_path / "x", "gamma")
    (src / "plugin.toml").write_text(manifest_text("gamma", tool="list_credentials"))
    with PluginRegistry(plugins, runtime) as registry, pytest.raises(PluginConflictError):
        installer.install(str(src), plugins_dir=plugins, runtime=runtime, registry=registry)
    assert not (plugins / "gamma").exists()


def test_force_replace_is_not_a_conflict_with_itself(
    tmp_path: Path, plugins: Path, runtime: WasmRuntime
) -> None:
    src = make_plugin_dir(tmp_path / "a", "alpha")
    installer.install(str(src), plugins_dir=plugins, runtime=runtime)
    with PluginRegistry(plugins, runtime) as registry:
        registry.load_all()
        r = installer.install(
            str(src), plugins_dir=plugins, runtime=runtime, registry=registry, force=True
        )
    assert r.replaced


# --- archives and HTTP -----------------------------------------------------------------------


def test_install_local_tarball(tmp_path: Path, plugins: Path, runtime: WasmRuntime) -> None:
    archive = tar_gz_of(
        make_plugin_dir(tmp_path / "hello"), tmp_path / "hello-1.0.0.tgz", top="hello-1.0.0"
    )
    result = installer.install(str(archive), plugins_dir=plugins, runtime=runtime)
    assert result.name == "hello"
    assert installer.read_metadata(result.path)["kind"] == "archive"
    assert ".env" not in os.listdir(result.path)
    assert run_greet(plugins, "hello") == "hello"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A throwaway HTTP server on 127.0.0.1 serving a directory."""
    root = tmp_path / "www"
    root.mkdir()

    def handler(*args: object, **kwargs: object) -> _Quiet:
        return _Quiet(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_install_tarball_over_http(
    tmp_path: Path, plugins: Path, runtime: WasmRuntime, http_root: tuple[Path, str]
) -> None:
    root, base = http_root
    tar_gz_of(
        make_plugin_dir(tmp_path / "hello", answer="served"), root / "hello.tar.gz", top="hello"
    )
    seen: list[tuple[int, int | None]] = []
    result = installer.install(
        f"{base}/hello.tar.gz",
        plugins_dir=plugins,
        runtime=runtime,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert result.source == f"{base}/hello.tar.gz"
    assert any("plain http" in w for w in result.warnings)
    assert seen and seen[-1][0] == (root / "hello.tar.gz").stat().st_size
    assert installer.read_metadata(result.path)["kind"] == "url"
    assert sorted(os.listdir(plugins)) == ["hello"]
    assert run_greet(plugins, "hello") == "served"


def test_http_404_leaves_nothing(
    tmp_path: Path, plugins: Path, runtime: WasmRuntime, http_root: tuple[Path, str]
) -> None:
    _, base = http_root
    with pytest.raises(InstallError, match="404"):
        installer.install(f"{base}/missing.tar.gz", plugins_dir=plugins, runtime=runtime)
    assert os.listdir(plugins) == []


def test_url_password_is_not_recorded(
    tmp_path: Path, plugins: Path, runtime: WasmRuntime, http_root: tuple[Path, str]
) -> None:
    root, base = http_root
    tar_gz_of(make_plugin_dir(tmp_path / "hello"), root / "hello.tar.gz", top="hello")
    url = base.replace("http://", "http://user:hunter2@") + "/hello.tar.gz"
    result = installer.install(url, plugins_dir=plugins, runtime=runtime)
    assert "hunter2" not in result.source
    assert "hunter2" not in (result.path / ".installed.json").read_text()


# --- remove ----------------------------------------------------------------------------------


def test_remove_drops_cache(tmp_path: Path, plugins: Path, runtime: WasmRuntime) -> None:
    cache = tmp_path / "cache"
    result = installer.install(
        str(make_plugin_dir(tmp_path / "hello")), plugins_dir=plugins, runtime=runtime
    )
    assert list(cache.glob(f"{result.sha256}.*")), "validation compiled the module into the cache"
    removed = installer.remove("hello", plugins_dir=plugins, runtime=runtime)
    assert removed == plugins / "hello"
    assert os.listdir(plugins) == []
    assert not list(cache.glob(f"{result.sha256}.*"))
    with pytest.raises(PluginNotFoundError):
        installer.remove("hello", plugins_dir=plugins, runtime=runtime)


def test_failed_install_leaves_no_cache_entry(
    tmp_path: Path, plugins: Path, runtime: WasmRuntime
) -> None:
    src = make_plugin_dir(tmp_path / "hello")
    (src / "hello.wasm").write_bytes(abi2_wasm(extra_import=True))
    with pytest.raises(ModuleError):
        installer.install(str(src), plugins_dir=plugins, runtime=runtime)
    sha = hashlib.sha256((src / "hello.wasm").read_bytes()).hexdigest()
    assert not list((tmp_path / "cache").glob(f"{sha}.*"))


def test_force_replace_drops_the_old_cache_entry(
    tmp_path: Path, plugins: Path, runtime: WasmRuntime
) -> None:
    old = installer.install(
        str(make_plugin_dir(tmp_path / "v1", answer="one")), plugins_dir=plugins, runtime=runtime
    )
    new = installer.install(
        str(make_plugin_dir(tmp_path / "v2", answer="two")),
        plugins_dir=plugins,
        runtime=runtime,
        force=True,
    )
    cache = tmp_path / "cache"
    assert not list(cache.glob(f"{old.sha256}.*"))
    assert list(cache.glob(f"{new.sha256}.*"))


def test_read_metadata_missing_and_corrupt(tmp_path: Path) -> None:
    assert installer.read_metadata(tmp_path) == {}
    (tmp_path / ".installed.json").write_text("{not json")
    with pytest.raises(InstallError, match="not valid JSON"):
        installer.read_metadata(tmp_path)
    (tmp_path / ".installed.json").write_text("[1, 2]")
    with pytest.raises(InstallError, match="JSON object"):
        installer.read_metadata(tmp_path)


def test_interrupted_replace_is_recovered(
    tmp_path: Path, plugins: Path, runtime: WasmRuntime
) -> None:
    """A --force replace killed between its two renames left the old plugin aside: the next
    install puts it back (and removes dead processes' staging directories)."""
    installer.install(
        str(make_plugin_dir(tmp_path / "a", "alpha")), plugins_dir=plugins, runtime=runtime
    )
    dead = 2**22 + 12345  # above the default pid_max: no such process
    os.rename(plugins / "alpha", plugins / f".replaced-{dead}-alpha-abcd1234")
    (plugins / f".staging-{dead}-xyz").mkdir()
    installer.install(
        str(make_plugin_dir(tmp_path / "b", "beta")), plugins_dir=plugins, runtime=runtime
    )
    assert sorted(os.listdir(plugins)) == ["alpha", "beta"]
    assert installer.read_metadata(plugins / "alpha")["sha256"]


# --- plugin new ------------------------------------------------------------------------------


def _template(tmp_path: Path) -> Path:
    t = tmp_path / "template"
    (t / "src").mkdir(parents=True)
    (t / "Cargo.toml").write_text('[package]\nname = "my-plugin"\n')
    (t / "plugin.toml").write_text('[plugin]\nname = "my-plugin"\nwasm_module = "my_plugin.wasm"\n')
    (t / "src" / "lib.rs").write_text("// {{name}} / {{crate_name}}\n")
    (t / "target").mkdir()
    (t / "target" / "junk").write_text("build output")
    return t


def test_new_plugin_substitutes_names(tmp_path: Path) -> None:
    dest = new_plugin("acme-signer", tmp_path / "out", template_dir=_template(tmp_path))
    assert (dest / "Cargo.toml").read_text() == '[package]\nname = "acme-signer"\n'
    assert 'wasm_module = "acme_signer.wasm"' in (dest / "plugin.toml").read_text()
    assert (dest / "src" / "lib.rs").read_text() == "// acme-signer / acme_signer\n"
    assert not (dest / "target").exists()


@pytest.mark.parametrize("name", ["Bad", "a_b", "-x", "a--b", "1abc", "", "../x"])
def test_new_plugin_refuses_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ManifestError):
        new_plugin(name, tmp_path / "out", template_dir=_template(tmp_path))
    assert not (tmp_path / "out").exists()


def test_new_plugin_refuses_non_empty_dest(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(PluginError, match="not empty"):
        new_plugin("acme", dest, template_dir=_template(tmp_path))
    assert os.listdir(dest) == ["mine.txt"]


def test_new_plugin_uses_the_repository_template(tmp_path: Path) -> None:
    dest = new_plugin("acme", tmp_path / "acme")
    manifest = (dest / "plugin.toml").read_text()
    assert 'name = "acme"' in manifest and "my-plugin" not in manifest
    assert "my_plugin" not in (dest / "Cargo.toml").read_text()
    assert (dest / "src" / "lib.rs").is_file()
    assert not (dest / "target").exists()


def test_installed_json_is_json(tmp_path: Path, plugins: Path, runtime: WasmRuntime) -> None:
    result = installer.install(
        str(make_plugin_dir(tmp_path / "hello")), plugins_dir=plugins, runtime=runtime
    )
    data = json.loads((result.path / ".installed.json").read_text())
    assert set(data) >= {
        "source",
        "ref",
        "commit",
        "subdir",
        "installed_at",
        "sha256",
        "abi",
        "vultrino_version",
        "size",
    }


def test_force_restores_old_plugin_when_the_final_rename_fails(
    tmp_path: Path, plugins: Path, runtime: WasmRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the rename of the new directory into place fails (e.g. EIO)."""
    installer.install(
        str(make_plugin_dir(tmp_path / "v1", answer="one")), plugins_dir=plugins, runtime=runtime
    )
    before = snapshot(plugins)
    real_rename = os.rename

    def failing_rename(src: object, dst: object) -> None:
        if Path(str(src)).name == "plugin" and ".staging-" in str(src):
            raise OSError(5, "Input/output error")
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(installer.os, "rename", failing_rename)
    # the two-rename fallback (systems without renameat2's atomic exchange) must roll back too
    monkeypatch.setattr(installer, "_exchange", lambda a, b: False)
    with pytest.raises(InstallError, match="Input/output error"):
        installer.install(
            str(make_plugin_dir(tmp_path / "v2", answer="two")),
            plugins_dir=plugins,
            runtime=runtime,
            force=True,
        )
    monkeypatch.undo()
    assert snapshot(plugins) == before
    assert run_greet(plugins, "hello") == "one"


@pytest.mark.parametrize(
    ("source", "kind", "location", "ref"),
    [
        ("https://example.com/p-1.0.tar.gz", "url", "https://example.com/p-1.0.tar.gz", None),
        ("https://example.com/p.TGZ?x=1", "url", "https://example.com/p.TGZ?x=1", None),
        ("https://github.com/acme/p.git#v1.0", "git", "https://github.com/acme/p.git", "v1.0"),
        ("https://github.com/acme/p", "git", "https://github.com/acme/p", None),
        ("git@github.com:acme/p.git#main", "git", "git@github.com:acme/p.git", "main"),
        ("ssh://git@host/p.git", "git", "ssh://git@host/p.git", None),
        ("file:///srv/p.git#abc1234", "git", "file:///srv/p.git", "abc1234"),
    ],
)
def test_source_kinds(source: str, kind: str, location: str, ref: str | None) -> None:
    from vultrino.plugins.install._sources import parse_source

    spec = parse_source(source)
    assert (spec.kind, spec.location, spec.ref) == (kind, location, ref)


def test_local_source_kinds(tmp_path: Path) -> None:
    from vultrino.plugins.install._sources import parse_source

    d = make_plugin_dir(tmp_path / "p")
    assert parse_source(str(d)).kind == "directory"
    archive = tar_gz_of(d, tmp_path / "p.tgz")
    assert parse_source(str(archive)).kind == "archive"
    spec = parse_source(f"{d}#main")
    assert (spec.kind, spec.location, spec.ref) == ("git", d.as_uri(), "main")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InstallError, match=r"not a directory or a \.tar\.gz"):
        parse_source(str(tmp_path / "notes.txt"))
    with pytest.raises(InstallError, match="no such file"):
        parse_source(str(tmp_path / "missing"))
    with pytest.raises(InstallError, match="only applies to git"):
        parse_source("https://example.com/p.tar.gz#v1")
