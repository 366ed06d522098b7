"""Building plugins with a real cargo: Debian's offline Rust toolchain (rustc 1.63, which only
knows ``wasm32-wasi``, so the ``wasm32-wasip1`` -> ``wasm32-wasi`` fallback is exercised too).

cargo gets a private CARGO_HOME in the test's temporary directory whose config replaces
crates.io with Debian's crate directory, so nothing touches the network or the real home.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.integration.test_installer import manifest_text, new_runtime, snapshot, tar_gz_of
from vultrino.errors import InstallError
from vultrino.plugins.base import CredentialView
from vultrino.plugins.install import installer
from vultrino.plugins.install.scaffold import new_plugin
from vultrino.plugins.registry import PluginRegistry
from vultrino.runtime import WasmRuntime

DEBIAN_CARGO = Path("/usr/bin/cargo")
DEBIAN_RUSTC = Path("/usr/bin/rustc")
DEBIAN_CRATES = Path("/usr/share/cargo/registry")
WASM_STD = Path("/usr/lib/rustlib/wasm32-wasi/lib")

needs_toolchain = pytest.mark.skipif(
    not (DEBIAN_CARGO.exists() and DEBIAN_RUSTC.exists() and WASM_STD.is_dir()),
    reason="needs Debian's cargo/rustc and the wasm32 std library "
    "(apt-get install rustc cargo libstd-rust-dev-wasm32)",
)

# An ABI 2 plugin in plain Rust, no dependencies: every call answers {"ok": "built"}.
LIB_RS = r"""
use std::alloc::{alloc, realloc, Layout};

static RESPONSE: &[u8] = b"\x81\xa2ok\xa5built";
static mut RET: [u32; 2] = [0, 0];

#[no_mangle]
pub unsafe extern "C" fn cabi_realloc(
    old: *mut u8, old_size: usize, align: usize, new_size: usize,
) -> *mut u8 {
    if old_size == 0 {
        alloc(Layout::from_size_align_unchecked(new_size.max(1), align))
    } else {
        realloc(old, Layout::from_size_align_unchecked(old_size, align), new_size)
    }
}

#[export_name = "vultrino:plugin/handler@1.0.0#execute"]
pub unsafe extern "C" fn execute(_ptr: *mut u8, _len: usize) -> *const u32 {
    RET[0] = RESPONSE.as_ptr() as u32;
    RET[1] = RESPONSE.len() as u32;
    RET.as_ptr()
}
"""

CARGO_TOML = """\
[package]
name = "tiny-plugin"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[profile.release]
opt-level = "s"
"""


@pytest.fixture
def toolchain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Debian's cargo, offline, with a private CARGO_HOME; returns that CARGO_HOME."""
    home = tmp_path / "cargo-home"
    home.mkdir()
    (home / "config.toml").write_text(
        '[source.crates-io]\nreplace-with = "debian"\n'
        f'[source.debian]\ndirectory = "{DEBIAN_CRATES}"\n'
        "[net]\noffline = true\n"
    )
    monkeypatch.setenv("CARGO_HOME", str(home))
    monkeypatch.setenv("RUSTC", str(DEBIAN_RUSTC))
    monkeypatch.setenv("VULTRINO_CARGO", str(DEBIAN_CARGO))
    monkeypatch.delenv("RUSTFLAGS", raising=False)
    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)
    return home


def make_crate(path: Path, *, module: str = "tiny_plugin.wasm", lib: str = LIB_RS) -> Path:
    (path / "src").mkdir(parents=True)
    (path / "Cargo.toml").write_text(CARGO_TOML)
    (path / "src" / "lib.rs").write_text(lib)
    (path / "plugin.toml").write_text(manifest_text("tiny-plugin", wasm_module=module))
    return path


@pytest.fixture
def runtime(tmp_path: Path) -> WasmRuntime:
    return new_runtime(tmp_path / "cache")


def _run(
    plugins: Path, name: str, action: str, params: dict[str, object], cred: CredentialView
) -> object:
    with PluginRegistry(plugins, new_runtime()) as registry:
        registry.load_all()
        assert not registry.broken(), registry.broken()
        return registry.get(name).execute(action, params, cred).value


@pytest.mark.cargo
@needs_toolchain
def test_build_from_directory(tmp_path: Path, toolchain: Path, runtime: WasmRuntime) -> None:
    src = make_crate(tmp_path / "tiny")
    before = snapshot(src)
    lines: list[str] = []
    plugins = tmp_path / "plugins"
    result = installer.install(
        str(src),
        plugins_dir=plugins,
        runtime=runtime,
        build=True,
        build_output=lines.append,
    )

    assert result.built and result.abi == 2
    assert any("Compiling tiny-plugin" in line for line in lines), lines
    # rustc 1.63 has only wasm32-wasi: the probe picks it, so cargo runs once, with no error
    assert not any("wasm32-wasip1" in line or "error" in line.lower() for line in lines), lines
    assert snapshot(src) == before  # no target/, no Cargo.lock written into the sources
    assert sorted(os.listdir(result.path)) == [".installed.json", "plugin.toml", "tiny_plugin.wasm"]
    assert installer.read_metadata(result.path)["built"] is True
    assert sorted(os.listdir(plugins)) == ["tiny-plugin"]  # staging and target dir are gone
    cred = CredentialView(alias="t", type="token", fields={"value": "x"})
    assert _run(plugins, "tiny-plugin", "greet", {}, cred) == "built"


@pytest.mark.cargo
@needs_toolchain
def test_build_from_tarball(tmp_path: Path, toolchain: Path, runtime: WasmRuntime) -> None:
    archive = tar_gz_of(make_crate(tmp_path / "tiny"), tmp_path / "tiny.tar.gz", top="tiny-0.1.0")
    result = installer.install(
        str(archive), plugins_dir=tmp_path / "plugins", runtime=runtime, build=True
    )
    assert result.built


@pytest.mark.cargo
@needs_toolchain
def test_build_failure_shows_cargo_output(
    tmp_path: Path, toolchain: Path, runtime: WasmRuntime
) -> None:
    src = make_crate(tmp_path / "tiny", lib="this is not rust")
    with pytest.raises(
        InstallError, match="cargo build --release --target wasm32-wasi` failed"
    ) as info:
        installer.install(str(src), plugins_dir=tmp_path / "plugins", runtime=runtime, build=True)
    assert "error" in str(info.value)
    assert os.listdir(tmp_path / "plugins") == []


@pytest.mark.cargo
@needs_toolchain
def test_missing_wasm_target_says_what_to_install(
    tmp_path: Path, toolchain: Path, runtime: WasmRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A toolchain without the wasm standard library (an empty sysroot stands in for it)."""
    empty = tmp_path / "empty-sysroot"
    empty.mkdir()
    monkeypatch.setenv("RUSTFLAGS", f"--sysroot={empty}")
    src = make_crate(tmp_path / "tiny")
    with pytest.raises(InstallError) as info:
        installer.install(str(src), plugins_dir=tmp_path / "plugins", runtime=runtime, build=True)
    message = str(info.value)
    assert "rustup target add wasm32-wasip1" in message
    assert "libstd-rust-dev-wasm32" in message
    assert os.listdir(tmp_path / "plugins") == []


@pytest.mark.cargo
@needs_toolchain
def test_built_module_with_another_name(
    tmp_path: Path, toolchain: Path, runtime: WasmRuntime
) -> None:
    src = make_crate(tmp_path / "tiny", module="other.wasm")
    with pytest.raises(InstallError, match=r"tiny_plugin\.wasm"):
        installer.install(str(src), plugins_dir=tmp_path / "plugins", runtime=runtime, build=True)


def test_missing_cargo_says_what_to_install(
    tmp_path: Path, runtime: WasmRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VULTRINO_CARGO", raising=False)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("VULTRINO_DEBIAN_RUST_BIN", str(empty))  # no Debian toolchain either
    src = make_crate(tmp_path / "tiny")
    with pytest.raises(InstallError, match="no Rust toolchain was found") as info:
        installer.install(str(src), plugins_dir=tmp_path / "plugins", runtime=runtime, build=True)
    assert "rustup target add wasm32-wasip1" in str(info.value)
    assert "apt install cargo rustc libstd-rust-dev-wasm32" in str(info.value)
    monkeypatch.setenv("VULTRINO_CARGO", str(tmp_path / "no-such-cargo"))
    with pytest.raises(InstallError, match="cannot run cargo"):
        installer.install(str(src), plugins_dir=tmp_path / "plugins", runtime=runtime, build=True)
    assert os.listdir(tmp_path / "plugins") == []


@pytest.mark.cargo
@pytest.mark.slow
@needs_toolchain
def test_new_plugin_from_template_builds_and_installs(
    tmp_path: Path, toolchain: Path, runtime: WasmRuntime
) -> None:
    """`vultrino plugin new` then `vultrino plugin install .`: the SDK template end to end."""
    project = new_plugin("acme-greeter", tmp_path / "acme-greeter")
    lines: list[str] = []
    plugins = tmp_path / "plugins"
    result = installer.install(
        str(project),
        plugins_dir=plugins,
        runtime=runtime,
        build=True,
        build_output=lines.append,
    )
    assert (result.name, result.built, result.abi) == ("acme-greeter", True, 2)
    assert (result.path / "acme_greeter.wasm").is_file()
    cred = CredentialView(
        alias="t", type="example_token", fields={"token": "s3cret", "greeting": "Hi"}
    )
    out = _run(plugins, "acme-greeter", "greet", {"name": "Ada", "excited": True}, cred)
    assert out == {"message": "Hi, Ada!"}
    assert not (project / "target").exists()
    shutil.rmtree(project)


# --- toolchain problems say what to do --------------------------------------------------------


@needs_toolchain
def test_the_probe_finds_the_wasm_std_of_debians_toolchain(toolchain: Path) -> None:
    from vultrino.plugins.install import _cargo

    probed = _cargo.probe_targets(str(DEBIAN_CARGO))
    assert probed is not None
    assert probed[0] == ["wasm32-wasi"]  # rustc 1.63: no wasm32-wasip1


@pytest.mark.cargo
@needs_toolchain
def test_dependencies_that_cannot_be_fetched_offline_say_how_to_build_offline(
    tmp_path: Path, toolchain: Path, runtime: WasmRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real cargo, offline, without the Debian crate source: the crate's dependency cannot be
    fetched, as for a rustup cargo in a fresh shell without network."""
    bare = tmp_path / "bare-cargo-home"
    bare.mkdir()
    (bare / "config.toml").write_text("[net]\noffline = true\n")
    monkeypatch.setenv("CARGO_HOME", str(bare))
    src = make_crate(tmp_path / "tiny")
    with (src / "Cargo.toml").open("a") as f:
        f.write('\n[dependencies]\nserde = "1"\n')
    with pytest.raises(InstallError) as info:
        installer.install(str(src), plugins_dir=tmp_path / "plugins", runtime=runtime, build=True)
    message = str(info.value)
    assert "could not fetch the crate's dependencies" in message
    assert "apt install cargo rustc libstd-rust-dev-wasm32" in message and "librust-" in message
    assert os.listdir(tmp_path / "plugins") == []


def _rustup_cargo() -> Path | None:
    cargo = Path.home() / ".cargo" / "bin" / "cargo"
    return cargo if cargo.is_file() and (cargo.with_name("rustup")).is_file() else None


@pytest.mark.cargo
def test_a_rustup_toolchain_without_a_wasm_target_fails_before_building(
    tmp_path: Path, runtime: WasmRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rustup's cargo first on PATH, its toolchain without wasm32-wasip1: the probe says so at
    once, naming the commands, and cargo never runs (no download attempt, no cargo error)."""
    cargo = _rustup_cargo()
    if cargo is None:
        pytest.skip("no rustup toolchain in ~/.cargo/bin")
    from vultrino.plugins.install import _cargo

    monkeypatch.delenv("RUSTC", raising=False)
    monkeypatch.setenv("VULTRINO_CARGO", str(cargo))
    probed = _cargo.probe_targets(str(cargo))
    if probed is None or probed[0]:
        pytest.skip(f"the rustup toolchain has a wasm target or cannot be probed: {probed}")
    src = make_crate(tmp_path / "tiny")
    lines: list[str] = []
    with pytest.raises(InstallError) as info:
        installer.install(
            str(src),
            plugins_dir=tmp_path / "plugins",
            runtime=runtime,
            build_output=lines.append,
            build=True,
        )
    message = str(info.value)
    assert "has a WebAssembly standard library (neither wasm32-wasip1 nor wasm32-wasi)" in message
    assert "rustup target add wasm32-wasip1" in message
    assert "apt install cargo rustc libstd-rust-dev-wasm32" in message
    assert lines == []  # cargo was not run
