"""The plugin author's loop through the real CLI: `plugin install` (the build cache, cargo's
target/ and stale modules), `plugin check`, `plugin call` and `plugin dev`.

The cargo tests run without any shell setup (no `scripts/rust-env.sh`, no RUSTC, CARGO_HOME or
VULTRINO_CARGO): the installer must find a toolchain that can build WebAssembly by itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_installer import abi2_wasm, make_plugin_dir, manifest_text
from tests.integration.test_installer_cargo import CARGO_TOML, LIB_RS, needs_toolchain
from vultrino import Vultrino
from vultrino.plugins.install import _toolchain
from vultrino.plugins.install.scaffold import new_plugin
from vultrino.store import KdfParams

PASSWORD = "plugin dev loop password 41c9"
SECRET = "s3cret-token-5e1"
#: Bounded waits (not timing assertions): a cold build on a busy 2-core machine is slow.
BUILD_WAIT_S = 900.0


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment without VULTRINO_* and without any Rust setup."""
    drop = ("RUSTC", "RUSTDOC", "CARGO", "CARGO_HOME", "CARGO_TARGET_DIR", "RUSTFLAGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_") and k not in drop}
    env.update(extra)
    return env


def cli(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        env=cli_env(VULTRINO_HOME=str(home), VULTRINO_PASSWORD=PASSWORD, **extra),
        capture_output=True,
        text=True,
        timeout=BUILD_WAIT_S,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    Vultrino.init(root, PASSWORD, kdf=KdfParams.minimal()).close()
    return root


def greet(home: Path, name: str = "tiny-plugin") -> object:
    """The installed plugin's answer to `greet`, through the facade (a fresh one each time)."""
    with Vultrino.open(home, PASSWORD) as v:
        if "t" not in {c.alias for c in v.credentials()}:
            v.add_credential("t", f"plugin:{name}:token", {"value": SECRET})
        return v.execute("t", "greet", {})


def tiny_crate(path: Path, *, answer: str = "built", deps: str = "") -> Path:
    """A Rust plugin without the SDK: every call answers ``{"ok": answer}`` (5 letters)."""
    (path / "src").mkdir(parents=True)
    (path / "Cargo.toml").write_text(CARGO_TOML + deps)
    set_answer(path, answer)
    (path / "plugin.toml").write_text(manifest_text("tiny-plugin", wasm_module="tiny_plugin.wasm"))
    return path


def set_answer(path: Path, answer: str) -> None:
    assert len(answer) == 5
    lib = path / "src" / "lib.rs"
    lib.write_text(LIB_RS.replace("\\xa5built", f"\\xa5{answer}"))


def cargo_build_in_place(project: Path, state: Path) -> Path:
    """What an author runs by hand: Debian's cargo, offline, in the project; the module it
    wrote to target/."""
    cargo_home = _toolchain.debian_cargo_home(state)
    assert cargo_home is not None
    done = subprocess.run(
        ["/usr/bin/cargo", "build", "--release", "--target", "wasm32-wasi"],
        cwd=project,
        env=cli_env(RUSTC="/usr/bin/rustc", CARGO_HOME=str(cargo_home)),
        capture_output=True,
        text=True,
        timeout=BUILD_WAIT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    module = project / "target" / "wasm32-wasi" / "release" / "tiny_plugin.wasm"
    assert module.is_file()
    return module


def newer_than(path: Path, reference: Path) -> None:
    t = os.stat(reference).st_mtime + 5
    os.utime(path, (t, t))


# --- the build cache --------------------------------------------------------------------------


@pytest.mark.cargo
@needs_toolchain
def test_the_second_build_reuses_the_cache_and_compiles_only_the_plugin(
    tmp_path: Path, home: Path
) -> None:
    src = tiny_crate(tmp_path / "tiny", deps='\n[dependencies]\nbyteorder = "1"\n')
    first = cli(home, "plugin", "install", "--build", str(src))
    assert first.returncode == 0, first.stderr
    assert "vultrino: building with " in first.stderr  # found without any shell setup
    assert "Compiling byteorder" in first.stderr and "Compiling tiny-plugin" in first.stderr
    assert greet(home) == "built"
    assert not (src / "target").exists()  # nothing written beside the sources

    set_answer(src, "fresh")
    second = cli(home, "plugin", "install", "--build", "--force", str(src))

    assert second.returncode == 0, second.stderr
    compiled = [line for line in second.stderr.splitlines() if "Compiling" in line]
    assert len(compiled) == 1 and "Compiling tiny-plugin" in compiled[0], second.stderr
    assert greet(home) == "fresh"
    caches = list((home / "cache" / "builds").iterdir())
    assert [c.name.startswith("tiny-plugin-") for c in caches] == [True]
    assert os.stat(caches[0]).st_mode & 0o777 == 0o700


# --- cargo's target/ and stale modules ----------------------------------------------------------


@pytest.mark.cargo
@needs_toolchain
def test_install_uses_cargos_module_and_never_installs_a_stale_one_silently(
    tmp_path: Path, home: Path
) -> None:
    src = tiny_crate(tmp_path / "tiny")
    built = cargo_build_in_place(src, tmp_path / "state")

    picked = cli(home, "plugin", "install", str(src))
    assert picked.returncode == 0, picked.stderr
    assert "using target/wasm32-wasi/release/tiny_plugin.wasm" in picked.stderr
    assert "warning" not in picked.stderr
    assert greet(home) == "built"

    set_answer(src, "fresh")
    newer_than(src / "src" / "lib.rs", built)
    stale = cli(home, "plugin", "install", "--force", str(src))
    assert stale.returncode == 0, stale.stderr
    assert "warning: target/wasm32-wasi/release/tiny_plugin.wasm is older than its sources" in (
        stale.stderr
    )
    assert "src/lib.rs" in stale.stderr and "--build" in stale.stderr
    assert greet(home) == "built"  # what was asked for, with the warning

    checked = cli(home, "plugin", "check", str(src))
    assert checked.returncode == 0 and "older than its sources" in checked.stderr

    rebuilt = cli(home, "plugin", "install", "--force", "--build", str(src))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "building it afresh instead of installing it" in rebuilt.stderr
    assert greet(home) == "fresh"

    # a module beside plugin.toml older than the sources: the same warning, naming it
    shutil.copy(built, src / "tiny_plugin.wasm")
    newer_than(src / "src" / "lib.rs", src / "tiny_plugin.wasm")
    beside = cli(home, "plugin", "install", "--force", str(src))
    assert "warning: tiny_plugin.wasm is older than its sources" in beside.stderr

    # `plugin call` of the module cargo built: exactly that module, with its manifest above it
    token = tmp_path / "token.txt"
    token.write_text(SECRET)
    called = cli(
        home, "plugin", "call", str(built), "--action", "greet", "--field", f"value=@{token}"
    )
    assert called.returncode == 0, called.stderr
    assert called.stdout == "built\n"


# --- plugin check -------------------------------------------------------------------------------


def test_check_names_the_authors_file_and_line_and_installs_nothing(
    tmp_path: Path, home: Path
) -> None:
    src = make_plugin_dir(tmp_path / "src" / "hello", "hello")
    ok = cli(home, "plugin", "check", str(src))
    assert ok.returncode == 0, ok.stderr
    assert "ok: hello 1.0.0 (ABI 2) can be installed" in ok.stderr
    as_json = cli(home, "plugin", "check", str(src), "--json")
    assert '"ok": true' in as_json.stdout and '"abi": 2' in as_json.stdout

    manifest = src / "plugin.toml"
    text = manifest.read_text().replace('name = "greet"', 'name = "greet"\ntimeout = 3')
    text = text.replace('action = "greet"', 'action = "gret"')
    manifest.write_text(text)
    line = text.splitlines().index('action = "gret"') + 1
    broken = cli(home, "plugin", "check", str(src))
    assert broken.returncode == 5, broken.stderr
    assert f"{manifest.resolve()}:{line}: mcp_tools[0].action" in broken.stderr
    assert "gret" in broken.stderr and "Traceback" not in broken.stderr
    assert ".staging-" not in broken.stderr  # the author's file, never a copy

    manifest.write_text("[plugin\nname = 1\n")
    syntax = cli(home, "plugin", "check", str(src), "--json")
    assert syntax.returncode == 5
    assert f"{manifest.resolve()}:1" in syntax.stderr and '"ManifestError"' in syntax.stdout

    make_plugin_dir(tmp_path / "src" / "imports", "imports")
    (tmp_path / "src" / "imports" / "imports.wasm").write_bytes(abi2_wasm(extra_import=True))
    bad_abi = cli(home, "plugin", "check", str(tmp_path / "src" / "imports"))
    assert bad_abi.returncode != 0 and "env" in bad_abi.stderr and "system" in bad_abi.stderr
    assert [p.name for p in (home / "plugins").iterdir()] == []


# --- plugin call ----------------------------------------------------------------------------------


def test_call_runs_an_uninstalled_plugin_through_the_pipeline_with_a_throwaway_credential(
    tmp_path: Path,
) -> None:
    """No store, no password; the result is scrubbed of the credential's secret as for an
    installed plugin; the temporary home is gone afterwards and the real one untouched."""
    src = make_plugin_dir(tmp_path / "echo", "echo", answer=SECRET)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET + "\n")
    scratch_tmp = tmp_path / "tmp"
    scratch_tmp.mkdir()
    real_home = tmp_path / "never-created"
    env = cli_env(VULTRINO_HOME=str(real_home), TMPDIR=str(scratch_tmp))
    args = ["plugin", "call", str(src), "--action", "greet", "--field", f"value=@{secret_file}"]
    run = subprocess.run(
        [sys.executable, "-m", "vultrino", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == '"[REDACTED]"'
    assert SECRET not in run.stdout + run.stderr
    assert os.listdir(scratch_tmp) == []
    assert not real_home.exists()

    missing = subprocess.run(
        [sys.executable, "-m", "vultrino", "plugin", "call", str(src), "--action", "nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert missing.returncode != 0 and "nope" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert os.listdir(scratch_tmp) == []


@pytest.mark.cargo
@pytest.mark.slow
@needs_toolchain
def test_call_of_the_template_plugin(tmp_path: Path, home: Path) -> None:
    project = new_plugin("acme-greeter", tmp_path / "acme-greeter")
    token = tmp_path / "token.txt"
    token.write_text(SECRET)
    args = ["plugin", "call", str(project), "--action", "greet", "--param", "name=Ada"]
    args += ["--param", "excited=true", "--field", f"token=@{token}", "--field", "greeting=Hi"]

    refused = cli(home, *args)
    assert refused.returncode == 5, refused.stderr  # BuildRequiredError: nothing built yet
    assert "--build" in refused.stderr

    called = cli(home, *args, "--build")
    assert called.returncode == 0, called.stderr
    assert called.stdout.strip() == '{\n  "message": "Hi, Ada!"\n}'.strip()
    assert SECRET not in called.stdout + called.stderr
    assert not (project / "target").exists()
    assert [p.name for p in (home / "plugins").iterdir()] == []  # nothing installed


# --- plugin dev -----------------------------------------------------------------------------------


class Lines:
    """The lines a child writes to a pipe, collected by a thread."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def join(self) -> None:
        self._thread.join(timeout=30)

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def wait_for(self, text: str, n: int, proc: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + BUILD_WAIT_S
        while self.count(text) < n:
            assert proc.poll() is None, "\n".join(self.lines)
            assert time.monotonic() < deadline, "\n".join(self.lines)
            time.sleep(0.1)


@pytest.fixture
def dev_proc(tmp_path: Path, home: Path) -> Iterator[tuple[subprocess.Popen[str], Lines, Path]]:
    src = tiny_crate(tmp_path / "tiny")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vultrino", "plugin", "dev", str(src), "--interval", "0.1"],
        env=cli_env(VULTRINO_HOME=str(home), VULTRINO_PASSWORD=PASSWORD),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = Lines(proc.stderr)
    try:
        yield proc, lines, src
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        lines.join()
        proc.stderr.close()


@pytest.mark.cargo
@needs_toolchain
def test_dev_rebuilds_and_reinstalls_on_each_edit_and_ctrl_c_exits_130(
    home: Path, dev_proc: tuple[subprocess.Popen[str], Lines, Path]
) -> None:
    proc, out, src = dev_proc
    out.wait_for("vultrino: watching", 1, proc)
    assert greet(home) == "built"

    set_answer(src, "fresh")
    deadline = time.monotonic() + BUILD_WAIT_S
    while greet(home) != "fresh":  # bounded wait for the new behaviour, not a timing check
        assert proc.poll() is None, "\n".join(out.lines)
        assert time.monotonic() < deadline, "\n".join(out.lines)
        time.sleep(0.2)
    out.wait_for("vultrino: watching", 2, proc)

    # a broken edit is reported and the loop goes on; the installed plugin stays
    (src / "src" / "lib.rs").write_text("this is not rust")
    out.wait_for("waiting for the next change", 1, proc)
    assert proc.poll() is None and greet(home) == "fresh"

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    out.join()
    assert "interrupted" in out.lines[-1]
    assert "Traceback" not in "\n".join(out.lines)
