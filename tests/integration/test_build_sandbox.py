"""The build sandbox (issue 21): a plugin's build code cannot read the homes or reach the network.

A crate's ``build.rs`` and a Python plugin's ``app.py`` (imported by componentize-py to
pre-initialise the component) try to read a secret file in the Vultrino home and one in
``$HOME``, and (Rust) to connect to a socket on 127.0.0.1. What they could read they put into
the built module and print into the build's output; neither may ever hold a secret. The same
crate built with the sandbox off does leak, so the test can fail. componentize-py runs the
import inside its own WASI runtime, which already shows ``app.py`` only its search path; the
Python test checks that the build works inside the sandbox and still leaks nothing (a defence
in depth should componentize-py ever give the guest more). Where bubblewrap cannot run,
those tests are skipped with the reason, and the fallback (a warning, or a refusal with
``require``) is tested with a missing and with a failing bwrap.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_installer import manifest_text, new_runtime
from tests.integration.test_installer_cargo import CARGO_TOML, LIB_RS, needs_toolchain, toolchain
from vultrino.errors import InstallError
from vultrino.plugins.install import _sandbox, installer
from vultrino.plugins.install.scaffold import new_plugin

__all__ = ["toolchain"]  # the fixture, re-exported for the tests below

NO_SANDBOX = _sandbox.unavailable_reason()
needs_bwrap = pytest.mark.skipif(
    NO_SANDBOX is not None, reason=f"no build sandbox here: {NO_SANDBOX}"
)
VHOME_SECRET = "vhome-secret-5d1f0a9c"
HOME_SECRET = "user-home-secret-8b2e47c3"

BUILD_RS = r"""
use std::io::Write;
fn main() {
    let mut seen = String::new();
    for path in [VHOME_FILE, HOME_FILE] {
        match std::fs::read_to_string(path) {
            Ok(text) => seen.push_str(&format!("read {}: {} ", path, text.trim())),
            Err(e) => seen.push_str(&format!("denied {}: {} ", path, e)),
        }
    }
    match std::net::TcpStream::connect(("127.0.0.1", PORT)) {
        Ok(mut s) => { let _ = s.write_all(b"hello"); seen.push_str("network: connected"); }
        Err(e) => seen.push_str(&format!("network: {}", e)),
    }
    println!("cargo:warning=probe {}", seen);
    let out = std::env::var("OUT_DIR").unwrap();
    std::fs::write(format!("{}/probe.txt", out), seen).unwrap();
}
"""

# The module embeds what build.rs could read, so a leak would reach the installed plugin.
PROBE_LIB_RS = (
    LIB_RS
    + r"""
#[no_mangle]
pub static PROBE: &str = include_str!(concat!(env!("OUT_DIR"), "/probe.txt"));
"""
)

APP_PROBE = """
import os as _os

def _probe():
    seen = []
    for path in (VHOME_FILE, HOME_FILE):
        try:
            with open(path) as f:
                seen.append("read " + path + ": " + f.read().strip())
        except Exception as e:  # noqa: BLE001
            seen.append("denied " + path + ": " + type(e).__name__)
    return " ".join(seen)

PROBE = _probe()
print("probe", PROBE)
"""


@pytest.fixture
def secrets(
    isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """A secret in the Vultrino home and one in a fresh ``$HOME``; returns both files."""
    vhome_file = isolated_home / "credentials.enc"
    vhome_file.write_text(VHOME_SECRET)
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    home_file = user_home / "password"
    home_file.write_text(HOME_SECRET)
    monkeypatch.setenv("HOME", str(user_home))
    return vhome_file, home_file


def _rust_probe(path: Path, files: tuple[Path, Path], port: int) -> Path:
    (path / "src").mkdir(parents=True)
    (path / "Cargo.toml").write_text(CARGO_TOML)
    (path / "src" / "lib.rs").write_text(PROBE_LIB_RS)
    build_rs = BUILD_RS.replace("VHOME_FILE", f'"{files[0]}"').replace("HOME_FILE", f'"{files[1]}"')
    (path / "build.rs").write_text(build_rs.replace("PORT", str(port)))
    (path / "plugin.toml").write_text(manifest_text("tiny-plugin", wasm_module="tiny_plugin.wasm"))
    return path


def _build_rust(
    tmp_path: Path, isolated_home: Path, files: tuple[Path, Path], mode: str
) -> tuple[list[str], bytes, bool]:
    """Install the probing crate with ``mode``; its output, module, and whether it connected."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    src = _rust_probe(tmp_path / "probe", files, listener.getsockname()[1])
    lines: list[str] = []
    with new_runtime(tmp_path / "cache") as rt:
        result = installer.install(
            str(src),
            plugins_dir=isolated_home / "plugins",
            runtime=rt,
            build=True,
            build_output=lines.append,
            build_sandbox=mode,
        )
    try:
        listener.accept()[0].close()
        connected = True
    except BlockingIOError:
        connected = False
    finally:
        listener.close()
    return lines, (result.path / "tiny_plugin.wasm").read_bytes(), connected


@pytest.mark.cargo
@needs_toolchain
@needs_bwrap
def test_build_rs_cannot_read_the_homes_or_reach_the_network(
    tmp_path: Path, toolchain: Path, isolated_home: Path, secrets: tuple[Path, Path]
) -> None:
    lines, wasm, connected = _build_rust(tmp_path, isolated_home, secrets, "require")
    text = "\n".join(lines)
    assert "building in a sandbox" in text
    assert f"denied {secrets[0]}" in text and f"denied {secrets[1]}" in text, text
    assert "network: connected" not in text and not connected
    for secret in (VHOME_SECRET, HOME_SECRET):
        assert secret not in text and secret.encode() not in wasm
    assert b"denied" in wasm  # the probe's report is in the module: the check looked there


@pytest.mark.cargo
@needs_toolchain
def test_without_the_sandbox_the_same_build_reads_the_home(
    tmp_path: Path, toolchain: Path, isolated_home: Path, secrets: tuple[Path, Path]
) -> None:
    """What the sandbox prevents: with ``off`` the probe reads both secrets (and says so)."""
    lines, wasm, connected = _build_rust(tmp_path, isolated_home, secrets, "off")
    text = "\n".join(lines)
    assert "the build sandbox is off" in text
    assert VHOME_SECRET in text and HOME_SECRET.encode() in wasm and connected


@needs_bwrap
@pytest.mark.slow
@pytest.mark.skipif(
    not shutil.which("componentize-py", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}"),
    reason="componentize-py is not installed (pip install it)",
)
def test_app_py_cannot_read_the_homes_at_pre_initialisation(
    tmp_path: Path, isolated_home: Path, secrets: tuple[Path, Path]
) -> None:
    project = new_plugin("acme-py", tmp_path / "acme-py", lang="python")
    probe = APP_PROBE.replace("VHOME_FILE", repr(str(secrets[0])))
    probe = probe.replace("HOME_FILE", repr(str(secrets[1])))
    app = project / "app.py"
    app.write_text(app.read_text() + probe)
    lines: list[str] = []
    with new_runtime(tmp_path / "cache") as rt:
        result = installer.install(
            str(project),
            plugins_dir=isolated_home / "plugins",
            runtime=rt,
            build=True,
            build_output=lines.append,
            build_sandbox="require",
        )
    text = "\n".join(lines)
    wasm = (result.path / "acme_py.wasm").read_bytes()
    assert "building in a sandbox" in text
    for secret in (VHOME_SECRET, HOME_SECRET):
        assert secret not in text and secret.encode() not in wasm


def _fake_bwrap(tmp_path: Path, script: str) -> str:
    path = tmp_path / "bwrap"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize(
    ("bwrap", "reason"),
    [
        ("missing", "bubblewrap (bwrap) is not installed"),
        ("failing", "cannot create its namespaces here (bwrap: No permissions to create new"),
    ],
)
def test_without_bubblewrap_auto_warns_and_require_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bwrap: str, reason: str
) -> None:
    if bwrap == "missing":
        monkeypatch.setenv(_sandbox.ENV_BWRAP, str(tmp_path / "no-such-bwrap"))
    else:
        fake = _fake_bwrap(
            tmp_path, "echo 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
        )
        monkeypatch.setenv(_sandbox.ENV_BWRAP, fake)
    lines: list[str] = []
    args = {
        "cwd": tmp_path,
        "env": {"PATH": "/usr/bin"},
        "read_only": [],
        "writable": [tmp_path],
        "hidden": [],
        "output": lines.append,
        "label": "probe",
    }
    run = _sandbox.prepare(["true"], mode="auto", **args)  # type: ignore[arg-type]
    assert run.cmd == ["true"] and not run.sandboxed
    assert (
        len(lines) == 1 and "the build runs without a sandbox: it can read your files" in lines[0]
    )
    assert reason in lines[0] and "install bubblewrap" in lines[0]

    with pytest.raises(InstallError, match="must run in a sandbox") as info:
        _sandbox.prepare(["true"], mode="require", **args)  # type: ignore[arg-type]
    assert reason in str(info.value) and "--build-sandbox=auto" in str(info.value)


def test_a_path_holding_a_home_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if NO_SANDBOX is not None:  # the paths are chosen the same way with a fake, working bwrap
        monkeypatch.setenv(_sandbox.ENV_BWRAP, _fake_bwrap(tmp_path, "exit 0\n"))
    user_home = tmp_path / "u" / "home"
    vhome = tmp_path / "v" / "vhome"
    toolchain_dir = tmp_path / "u" / "home" / ".rustup"
    for d in (user_home, vhome / "plugins", toolchain_dir):
        d.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(user_home))
    lines: list[str] = []
    run = _sandbox.prepare(
        ["true"],
        cwd=tmp_path,
        env={"HOME": str(user_home), "XDG_CONFIG_HOME": str(user_home / ".config")},
        mode="require",
        read_only=[tmp_path / "u", toolchain_dir, tmp_path / "v"],
        writable=[vhome / "plugins"],
        hidden=[vhome],
        output=lines.append,
        label="probe",
    )
    binds = [run.cmd[i + 1] for i, a in enumerate(run.cmd) if a in ("--ro-bind", "--bind")]
    assert str(toolchain_dir) in binds and str(vhome / "plugins") in binds
    assert str(tmp_path / "u") not in binds and str(tmp_path / "v") not in binds
    assert sum("not shared with the build sandbox" in line for line in lines) == 2
    assert run.env["HOME"] == _sandbox.SANDBOX_HOME and "XDG_CONFIG_HOME" not in run.env
    assert os.fspath(user_home) not in " ".join(run.cmd[run.cmd.index("--") :])


def test_the_cli_option_and_config_choose_the_mode(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--build-sandbox require` (and `[build] sandbox = "require"`) refuse before anything
    runs where bubblewrap cannot start; an unknown mode is refused at once."""
    monkeypatch.setenv(_sandbox.ENV_BWRAP, str(tmp_path / "no-such-bwrap"))
    project = new_plugin("acme-py", tmp_path / "acme-py", lang="python")
    base = [sys.executable, "-m", "vultrino", "plugin", "install", "--build", str(project)]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *extra], capture_output=True, text=True, timeout=120, check=False
        )

    refused = run("--build-sandbox", "require")
    assert refused.returncode != 0 and "must run in a sandbox" in refused.stderr
    assert "bubblewrap (bwrap) is not installed" in refused.stderr
    (isolated_home / "config.toml").write_text('[build]\nsandbox = "require"\n')
    assert "must run in a sandbox" in run().stderr
    bogus = run("--build-sandbox", "maybe")
    assert bogus.returncode != 0 and "--build-sandbox: unknown mode 'maybe'" in bogus.stderr
    assert not (isolated_home / "plugins" / "acme-py").exists()


def test_the_sandbox_shows_rustups_toolchain_not_its_proxies_or_cargo_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``~/.cargo/bin/cargo`` is rustup itself, next to the crates.io token: the build runs the
    toolchain's own cargo and rustc from the sysroot, and of CARGO_HOME sees only its
    configuration, crate sources and the local crate directories the configuration names."""
    from vultrino.plugins.install import _cargo

    home = tmp_path / "user"
    cargo_home = home / ".cargo"
    (cargo_home / "bin").mkdir(parents=True)
    (cargo_home / "bin" / "rustup").write_text("#!/bin/sh\n")
    for tool in ("cargo", "rustc"):
        (cargo_home / "bin" / tool).symlink_to("rustup")
    vendored = tmp_path / "vendored-crates"
    (cargo_home / "config.toml").write_text(f'[source.v]\ndirectory = "{vendored}"\n')
    (cargo_home / "credentials.toml").write_text("[registry]\ntoken = 'x'\n")
    sysroot = home / ".rustup" / "toolchains" / "stable"
    (sysroot / "bin").mkdir(parents=True)
    for tool in ("cargo", "rustc"):
        (sysroot / "bin" / tool).write_text("#!/bin/sh\n")
    monkeypatch.delenv("RUSTC", raising=False)
    env = {"PATH": str(cargo_home / "bin"), "CARGO_HOME": str(cargo_home)}

    cargo, shown = _cargo._toolchain_paths(str(cargo_home / "bin" / "cargo"), str(sysroot), env)

    assert cargo == str(sysroot / "bin" / "cargo") and env["RUSTC"] == str(
        sysroot / "bin" / "rustc"
    )
    assert sysroot in shown and vendored in shown and cargo_home / "config.toml" in shown
    assert cargo_home not in shown and cargo_home / "bin" not in shown
    assert not any(p.name == "credentials.toml" for p in shown)

    # A cargo that is no proxy but lives in CARGO_HOME/bin shows that bin/, not CARGO_HOME.
    (cargo_home / "bin" / "cargo").unlink()
    (cargo_home / "bin" / "cargo").write_text("#!/bin/sh\n")
    cargo, shown = _cargo._toolchain_paths(str(cargo_home / "bin" / "cargo"), None, env)
    assert cargo_home / "bin" in shown and cargo_home not in shown and home not in shown
