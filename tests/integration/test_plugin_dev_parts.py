"""The parts of the plugin author's loop, without cargo: toolchain discovery (fake toolchains),
the build cache's checks and sync, freshness of a module, manifest line numbers, the watcher.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vultrino.errors import InstallError
from vultrino.plugins.install import _buildcache, _freshness, _toolchain
from vultrino.plugins.install.devloop import watch
from vultrino.plugins.manifest_lines import annotate, line_index, locate

# --- toolchain discovery -------------------------------------------------------------------------


def fake_toolchain(root: Path, *, wasm: tuple[str, ...]) -> Path:
    """``root/bin`` with a cargo and a rustc whose sysroot ``root/sysroot`` has the standard
    library of the ``wasm`` targets; returns the bin directory."""
    bindir = root / "bin"
    bindir.mkdir(parents=True)
    sysroot = root / "sysroot"
    for target in ("x86_64-unknown-linux-gnu", *wasm):
        (sysroot / "lib" / "rustlib" / target / "lib").mkdir(parents=True)
    (bindir / "rustc").write_text(f'#!/bin/sh\necho "{sysroot}"\n')
    (bindir / "cargo").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("rustc", "cargo"):
        (bindir / tool).chmod(0o755)
    return bindir


@pytest.fixture
def clean_rust_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUSTC", "CARGO_HOME", "CARGO"):
        monkeypatch.delenv(name, raising=False)


def test_a_path_toolchain_without_wasm_falls_back_to_debians_with_its_crates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_rust_env: None
) -> None:
    """The issue-22 machine: rustup's cargo first on PATH without a wasm target, Debian's
    toolchain and crates installed. No shell setup: Debian's is used, offline."""
    rustup = fake_toolchain(tmp_path / "rustup", wasm=())
    debian = fake_toolchain(tmp_path / "debian", wasm=("wasm32-wasi",))
    crates = tmp_path / "crates"
    crates.mkdir()
    monkeypatch.setenv("PATH", f"{rustup}:/usr/bin:/bin")
    monkeypatch.setenv("VULTRINO_DEBIAN_RUST_BIN", str(debian))
    monkeypatch.setenv("VULTRINO_DEBIAN_CRATES", str(crates))
    state = tmp_path / "state"

    tc = _toolchain.find(cwd=tmp_path, state_dir=state)

    assert tc.cargo == str(debian / "cargo")
    assert tc.targets == ("wasm32-wasi",)
    assert tc.env["RUSTC"] == str(debian / "rustc")
    config = Path(tc.env["CARGO_HOME"]) / "config.toml"
    assert config.parent == state / "cargo-debian"
    text = config.read_text()
    assert f'directory = "{crates}"' in text and "offline = true" in text
    assert os.stat(config.parent).st_mode & 0o077 == 0
    assert "Debian's toolchain" in tc.origin and str(crates) in tc.origin


def test_a_path_toolchain_with_wasm_is_taken_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_rust_env: None
) -> None:
    rustup = fake_toolchain(tmp_path / "rustup", wasm=("wasm32-wasip1", "wasm32-wasi"))
    debian = fake_toolchain(tmp_path / "debian", wasm=("wasm32-wasi",))
    monkeypatch.setenv("PATH", f"{rustup}:/usr/bin:/bin")
    monkeypatch.setenv("VULTRINO_DEBIAN_RUST_BIN", str(debian))
    tc = _toolchain.find(cwd=tmp_path, state_dir=tmp_path / "state")
    assert tc.cargo == str(rustup / "cargo")
    assert tc.targets == ("wasm32-wasip1",)
    assert "CARGO_HOME" not in tc.env
    assert not (tmp_path / "state").exists()


def test_an_explicit_cargo_home_is_respected_for_debians_toolchain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_rust_env: None
) -> None:
    debian = fake_toolchain(tmp_path / "debian", wasm=("wasm32-wasi",))
    monkeypatch.setenv("PATH", str(debian))  # Debian's cargo is the one on PATH
    monkeypatch.setenv("VULTRINO_DEBIAN_RUST_BIN", str(debian))
    monkeypatch.setenv("CARGO_HOME", str(tmp_path / "mine"))
    tc = _toolchain.find(cwd=tmp_path, state_dir=tmp_path / "state")
    assert tc.cargo == str(debian / "cargo") and "CARGO_HOME" not in tc.env


def test_no_toolchain_with_wasm_says_exactly_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_rust_env: None
) -> None:
    rustup = fake_toolchain(tmp_path / "rustup", wasm=())
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(rustup))
    monkeypatch.setenv("VULTRINO_DEBIAN_RUST_BIN", str(empty))
    with pytest.raises(InstallError) as info:
        _toolchain.find(cwd=tmp_path, state_dir=tmp_path / "state", label="my-plugin")
    message = str(info.value)
    assert message.startswith("my-plugin: ")
    assert f"{rustup / 'cargo'} (on PATH) (sysroot {tmp_path / 'rustup' / 'sysroot'})" in message
    assert "sudo apt install cargo rustc libstd-rust-dev-wasm32" in message
    assert "rustup target add wasm32-wasip1" in message

    monkeypatch.setenv("PATH", str(empty))  # no cargo at all
    with pytest.raises(InstallError, match="no Rust toolchain was found") as info:
        _toolchain.find(cwd=tmp_path, state_dir=tmp_path / "state")
    assert "libstd-rust-dev-wasm32" in str(info.value)


# --- the build cache -----------------------------------------------------------------------------


def test_a_cache_dir_others_could_write_to_is_made_again(tmp_path: Path) -> None:
    cache = tmp_path / "builds" / "p-0123456789abcdef"
    cache.mkdir(parents=True)
    planted = cache / "target"
    planted.mkdir()
    os.chmod(cache, 0o777)
    assert _buildcache.checked_dir(cache) == cache
    assert not planted.exists()  # what others could have put there is gone
    assert os.stat(cache).st_mode & 0o777 == 0o700


def test_a_cache_dir_that_is_a_link_is_replaced_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("x")
    cache = tmp_path / "builds" / "p"
    cache.parent.mkdir()
    cache.symlink_to(elsewhere)
    _buildcache.checked_dir(cache)
    assert cache.is_dir() and not cache.is_symlink()
    assert (elsewhere / "keep").read_text() == "x"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a directory to another user")
def test_a_cache_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "builds" / "p"
    cache.mkdir(parents=True, mode=0o700)
    os.chown(cache, 12345, 12345)
    with pytest.raises(InstallError, match="belongs to another user"):
        _buildcache.checked_dir(cache)
    assert cache.is_dir()  # not deleted either


def test_sync_rewrites_only_what_changed(tmp_path: Path) -> None:
    """A changed file gets a new modification time even when its source's is old (saved
    while the previous build ran); an unchanged one keeps its own; a removed one goes."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "src").mkdir(parents=True)
    (src / "Cargo.toml").write_text("[package]\n")
    (src / "src" / "lib.rs").write_text("one")
    (src / "src" / "old.rs").write_text("old")
    _buildcache.sync_tree(src, dst)
    past = 1_000_000_000
    for p in (dst / "Cargo.toml", dst / "src" / "lib.rs"):
        os.utime(p, (past, past))
    (src / "src" / "lib.rs").write_text("two")
    os.utime(src / "src" / "lib.rs", (past - 10, past - 10))  # older than the last build
    (src / "src" / "old.rs").unlink()
    (src / "src" / "new.rs").write_text("new")

    _buildcache.sync_tree(src, dst)

    assert (dst / "src" / "lib.rs").read_text() == "two"
    assert os.stat(dst / "src" / "lib.rs").st_mtime > past
    assert os.stat(dst / "Cargo.toml").st_mtime == past
    assert not (dst / "src" / "old.rs").exists()
    assert (dst / "src" / "new.rs").read_text() == "new"


def test_cache_keys_differ_per_source(tmp_path: Path) -> None:
    a = _buildcache.cache_key("p", f"dir:{tmp_path}/a")
    b = _buildcache.cache_key("p", f"dir:{tmp_path}/b")
    assert a != b and a.startswith("p-") and len(a) == len("p-") + 16


# --- freshness -----------------------------------------------------------------------------------


def test_built_module_and_newer_sources(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "src").mkdir(parents=True)
    (project / "Cargo.toml").write_text("")
    (project / "src" / "lib.rs").write_text("")
    assert _freshness.built_module(project, "p.wasm") is None
    release = project / "target" / "wasm32-wasi" / "release"
    release.mkdir(parents=True)
    module = release / "p.wasm"
    module.write_bytes(b"\0asm")
    assert _freshness.built_module(project, "p.wasm") == module
    t = os.stat(module).st_mtime
    os.utime(project / "Cargo.toml", (t - 5, t - 5))
    os.utime(project / "src" / "lib.rs", (t - 5, t - 5))
    assert _freshness.newer_sources(project, module) == []
    os.utime(project / "src" / "lib.rs", (t + 5, t + 5))
    assert _freshness.newer_sources(project, module) == ["src/lib.rs"]


def test_the_signature_ignores_target_and_sees_edits(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "src").mkdir(parents=True)
    (project / "src" / "lib.rs").write_text("a")
    before = _freshness.signature(project)
    (project / "target").mkdir()
    (project / "target" / "CACHEDIR.TAG").write_text("")
    (project / "target" / "out.wasm").write_text("x")
    assert _freshness.signature(project) == before
    (project / "src" / "lib.rs").write_text("ab")
    assert _freshness.signature(project) != before


def test_watch_runs_the_step_again_after_a_change(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "lib.rs").write_text("a")
    steps: list[str] = []
    sleeps = {"n": 0}

    def sleep(_: float) -> None:
        sleeps["n"] += 1
        if sleeps["n"] == 3:  # an edit while the watcher waits
            (project / "lib.rs").write_text("changed")

    watch(project, lambda: steps.append((project / "lib.rs").read_text()), sleep=sleep, rounds=2)
    assert steps == ["a", "changed"]


# --- manifest line numbers -----------------------------------------------------------------------

MANIFEST = """\
[plugin]
name = "p"
version = "1.0.0"

[[actions]]
name = "one"

[[actions.parameters]]
name = "a"
type = "string"

[[actions]]
name = "two"

[[actions.parameters]]
name = "b"
type = "bool"

[[mcp_tools]]
name = "p_two"
action = "tow"
"""


def test_line_index_counts_tables_per_parent() -> None:
    index = line_index(MANIFEST)
    assert index["plugin.version"] == 3
    assert index["actions[1].parameters[0].type"] == 17
    assert index["actions[0].parameters[0].type"] == 10
    assert locate(index, "actions[1].parameters[0].default") == 15  # the table that lacks it
    assert locate(index, "mcp_tools[0].action") == 21


def test_annotate_names_the_authors_file_and_line(tmp_path: Path) -> None:
    manifest = tmp_path / "plugin.toml"
    manifest.write_text(MANIFEST)
    out = annotate(
        manifest,
        [
            "actions[1].parameters[0].type: expected one of string, ...",
            "line 4: invalid TOML: oops",
            "something without a key path",
        ],
    )
    assert out == [
        f"{manifest}:17: actions[1].parameters[0].type: expected one of string, ...",
        f"{manifest}:4: invalid TOML: oops",
        f"{manifest}: something without a key path",
    ]
