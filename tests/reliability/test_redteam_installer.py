"""Red-team findings about the installer, each through the real CLI (``python -m vultrino``).

* A source without a prebuilt module is built only with ``--build``: without it the install
  stops before cargo runs, saying what would run and where (a tripwire cargo proves nothing ran).
* A build never sees a ``VULTRINO_*`` variable: a real crate whose ``build.rs`` writes its
  environment to a file, built by a real cargo.
* Installed plugin files are not group- or world-writable even under ``umask 000``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_installer import manifest_text
from tests.integration.test_installer_cargo import (
    CARGO_TOML,
    LIB_RS,
    make_crate,
    needs_toolchain,
    toolchain,  # noqa: F401 - a fixture
)
from vultrino.core import Vultrino
from vultrino.store import KdfParams

PASSWORD = "installer red team password 7f3a"
SECRET_FILE_PASSWORD = "password-from-file-9c2e"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    Vultrino.init(root, PASSWORD, kdf=KdfParams.minimal()).close()
    return root


def cli(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    full.update(VULTRINO_HOME=str(home), VULTRINO_PASSWORD=PASSWORD)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_install_without_build_refuses_and_runs_nothing(tmp_path: Path, home: Path) -> None:
    """No prebuilt module + Cargo.toml: exit 5 with BuildRequiredError; cargo never started."""
    src = tmp_path / "tiny"
    (src / "src").mkdir(parents=True)
    (src / "Cargo.toml").write_text(CARGO_TOML)
    (src / "src" / "lib.rs").write_text(LIB_RS)
    (src / "plugin.toml").write_text(manifest_text("tiny-plugin", wasm_module="tiny_plugin.wasm"))
    tripwire = tmp_path / "cargo-ran"
    fake_cargo = tmp_path / "cargo"
    fake_cargo.write_text(f"#!/bin/sh\ntouch {tripwire}\nexit 1\n")
    fake_cargo.chmod(0o755)

    r = cli(home, "plugin", "install", str(src), "--json", env={"VULTRINO_CARGO": str(fake_cargo)})

    assert r.returncode == 5, r.stderr
    assert '"type": "BuildRequiredError"' in r.stdout
    assert "cargo build --release --target wasm32-wasip1" in r.stderr
    assert os.path.realpath(src) in r.stderr  # where it would run
    assert "--build" in r.stderr and "build scripts" in r.stderr
    assert "Traceback" not in r.stderr
    assert not tripwire.exists()
    assert [p.name for p in (home / "plugins").iterdir()] == []


def test_install_without_build_refuses_from_the_python_api(tmp_path: Path, home: Path) -> None:
    from vultrino.errors import BuildRequiredError, InstallError

    src = tmp_path / "tiny"
    (src / "src").mkdir(parents=True)
    (src / "Cargo.toml").write_text(CARGO_TOML)
    (src / "plugin.toml").write_text(manifest_text("tiny-plugin", wasm_module="tiny_plugin.wasm"))
    with Vultrino.open(home, PASSWORD) as v, pytest.raises(BuildRequiredError) as info:
        v.install_plugin(str(src))
    assert isinstance(info.value, InstallError)
    assert info.value.command == "cargo build --release --target wasm32-wasip1"
    assert info.value.directory == os.path.realpath(src)
    assert info.value.plugin == "tiny-plugin"


# The environment goes to the build's output: the build sandbox lets build.rs write nowhere
# outside the build's own directories.
BUILD_RS = r"""
fn main() {
    for (k, v) in std::env::vars() {
        println!("cargo:warning=ENV {}={}", k, v.replace('\n', " "));
    }
    println!("cargo:rerun-if-changed=build.rs");
}
"""


@pytest.mark.cargo
@needs_toolchain
def test_build_sees_no_vultrino_variable(
    tmp_path: Path,
    home: Path,
    toolchain: Path,  # noqa: F811 - the fixture
) -> None:
    """A real cargo build through the real CLI, with VULTRINO_PASSWORD and
    VULTRINO_PASSWORD_FILE set: the crate's build.rs prints its environment; no VULTRINO_
    variable (nor the password) may be in it."""
    src = make_crate(tmp_path / "tiny")
    (src / "build.rs").write_text(BUILD_RS)
    password_file = tmp_path / "password"
    password_file.write_text(SECRET_FILE_PASSWORD + "\n")
    password_file.chmod(0o600)
    env = {
        "CARGO_HOME": os.environ["CARGO_HOME"],
        "RUSTC": os.environ["RUSTC"],
        "VULTRINO_CARGO": os.environ["VULTRINO_CARGO"],
        "VULTRINO_PASSWORD_FILE": str(password_file),
        "VULTRINO_SOMETHING_ELSE": "x",
        # the user's other credentials are not for a build script either
        "AWS_SECRET_ACCESS_KEY": "aws-secret-not-for-builds",
        "CARGO_REGISTRY_TOKEN": "crates-token-not-for-builds",
        "GITHUB_TOKEN": "gh-token-not-for-builds",
    }
    r = cli(home, "plugin", "install", "--build", str(src), env=env)
    assert r.returncode == 0, r.stderr
    lines = [line.split("ENV ", 1)[1] for line in r.stderr.splitlines() if "warning: ENV " in line]
    assert any(line.startswith("CARGO_HOME=") for line in lines)  # the dump is real
    assert [line for line in lines if line.upper().startswith("VULTRINO_")] == []
    text = "\n".join(lines)
    assert PASSWORD not in text and SECRET_FILE_PASSWORD not in text
    assert "not-for-builds" not in r.stderr + r.stdout
    assert str(password_file) not in text


def test_installed_files_are_not_group_or_world_writable_under_umask_000(
    tmp_path: Path, home: Path
) -> None:
    """The installer writes explicit modes: umask 000 must not make plugin files writable by
    others (a writable module is native code waiting to be swapped)."""
    import wasmtime

    src = tmp_path / "umask-plugin"
    src.mkdir()
    (src / "plugin.toml").write_text(manifest_text("umask-plugin"))
    (src / "umask_plugin.wasm").write_bytes(
        bytes(
            wasmtime.wat2wasm(
                """(module (memory (export "memory") 1)
                 (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 64)
                 (func (export "vultrino:plugin/handler@1.0.0#execute")
                   (param i32 i32) (result i32) i32.const 0))"""
            )
        )
    )
    (src / "README.md").write_text("readme\n")
    script = (
        "import os, sys, runpy; os.umask(0); sys.argv = ['vultrino', 'plugin', 'install', "
        f"{str(src)!r}]; runpy.run_module('vultrino', run_name='__main__')"
    )
    full = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    full.update(VULTRINO_HOME=str(home), VULTRINO_PASSWORD=PASSWORD)
    r = subprocess.run(
        [sys.executable, "-c", script], env=full, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    plugin = home / "plugins" / "umask-plugin"
    modes = {p.name: p.stat().st_mode & 0o777 for p in [plugin, *plugin.iterdir()]}
    assert {name: oct(m) for name, m in modes.items() if m & 0o022} == {}
    assert modes["umask-plugin"] == 0o755 or modes["umask-plugin"] & 0o022 == 0


def test_the_toolchain_probe_sees_no_vultrino_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe that asks rustc for its sysroot runs before the build, in the project (a
    toolchain file there picks the rustc), so it gets the build's environment too."""
    dump = tmp_path / "probe-env.txt"
    rustc = tmp_path / "rustc"
    rustc.write_text(f'#!/bin/sh\npwd > "{dump}"\nenv >> "{dump}"\necho "{tmp_path}/sysroot"\n')
    rustc.chmod(0o755)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("RUSTC", str(rustc))
    monkeypatch.setenv("VULTRINO_PASSWORD", "probe-secret-password")
    monkeypatch.setenv("VULTRINO_PASSWORD_FILE", str(tmp_path / "pw"))
    from vultrino.plugins.install import _cargo

    assert _cargo.probe_targets("cargo", project) == ([], f"{tmp_path}/sysroot")
    lines = dump.read_text().splitlines()
    assert lines[0] == str(project)
    assert not [line for line in lines if line.startswith("VULTRINO_")]
    assert "probe-secret-password" not in dump.read_text()
