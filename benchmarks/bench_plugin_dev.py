"""The plugin author's loop: edit one line of the Rust template → rebuilt → callable.

A real `vultrino plugin dev` runs on a copy of the SDK template (a fresh `plugin new`), with a
warm build cache (its first build is not measured). Each round edits one line of `src/lib.rs`
and times, from the write, until a `Vultrino` facade on the same home answers `greet` with the
new text — the watcher noticed, cargo rebuilt the crate in the build cache, the plugin was
reinstalled and the next call picked it up. Goal: at most 5 s on an idle machine.

The references are measured in the same rounds, alternating with the loop (ABAB, then BABA):
the same kind of edit in a second copy of the project, built by hand with plain `cargo build
--release --target ...` in its own warm `target/` (the crate's release profile, as an author
would), and the same with the quick profile `plugin dev` uses. Medians of the paired rounds.

`--smoke` skips it (a cold build of the template takes minutes); without a Rust
toolchain that can build WebAssembly it is skipped, and says so.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PASSWORD = "bench plugin dev"
WAIT_S = 900.0


def _edit(project: Path, tag: str) -> None:
    lib = project / "src" / "lib.rs"
    text = lib.read_text()
    start = text.index("message: format!(")
    end = text.index("\n", start)
    lib.write_text(
        text[:start]
        + f'message: format!("{{}}, {{}}{{}} {tag}", credential.greeting, name, end),'
        + text[end:]
    )


def _cargo_build(project: Path, toolchain: Any, fast: bool) -> float:
    from vultrino.plugins.install._build import build_environment
    from vultrino.plugins.install._cargo import FAST_PROFILE

    extra = dict(
        toolchain.env, CARGO_TARGET_DIR=str(project / ("target-fast" if fast else "target"))
    )
    if fast:
        extra.update(FAST_PROFILE)
    started = time.perf_counter()
    done = subprocess.run(
        [toolchain.cargo, "build", "--release", "--target", toolchain.targets[0]],
        cwd=project,
        env=build_environment(**extra),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"cargo build failed:\n{done.stderr[-2000:]}")
    return took


class _Dev:
    """A running `vultrino plugin dev` and a facade on its home."""

    def __init__(self, root: Path, project: Path) -> None:
        from vultrino import Vultrino
        from vultrino.store import KdfParams

        self.home = root / "home"
        Vultrino.init(self.home, PASSWORD, kdf=KdfParams.minimal()).close()
        self.log = (root / "dev.log").open("w+")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
        env.update(VULTRINO_HOME=str(self.home), VULTRINO_PASSWORD=PASSWORD)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vultrino", "plugin", "dev", str(project), "--interval", "0.1"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self._wait(lambda: self._log().count("vultrino: watching") >= 1, "the first build")
        self.v = Vultrino.open(self.home, PASSWORD)
        self.v.add_credential("bench", "plugin:bench-greeter:example_token", {"token": "t0k3n"})

    def _log(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def _wait(self, ready: Any, what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"plugin dev: no {what}:\n{self._log()[-3000:]}")
            time.sleep(0.05)

    def answer(self) -> str:
        self.v.refresh()
        try:
            return str(self.v.execute("bench", "greet", {"name": "Ada"})["message"])
        except Exception:  # a plugin being replaced: ask again
            return ""

    def edit_until_callable(self, project: Path, tag: str) -> float:
        started = time.perf_counter()
        _edit(project, tag)
        self._wait(lambda: self.answer().endswith(f" {tag}"), f"new behaviour ({tag})")
        return time.perf_counter() - started

    def close(self) -> None:
        self.v.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def run(res: Any, smoke: bool) -> None:
    from vultrino.errors import InstallError
    from vultrino.plugins.install import _toolchain
    from vultrino.plugins.install.scaffold import new_plugin

    if smoke:  # a cold build of the template takes minutes; tests/e2e/test_plugin_dev.py runs it
        print("  plugin dev: skipped in --smoke (it needs a cold cargo build)", file=sys.stderr)
        return
    root = Path(tempfile.mkdtemp(prefix="vultrino-bench-dev-"))
    try:
        try:
            toolchain = _toolchain.find(cwd=root, state_dir=root / "state")
        except InstallError as exc:
            print(
                f"  plugin dev: skipped, no Rust toolchain that builds wasm ({exc})",
                file=sys.stderr,
            )
            return
        project = new_plugin("bench-greeter", root / "bench-greeter")
        dev = _Dev(root, project)
        try:
            rounds = 1 if smoke else 5
            loop: list[float] = []
            ref_release: list[float] = []
            ref_fast: list[float] = []
            by_hand = None
            if not smoke:
                by_hand = root / "by-hand"
                shutil.copytree(project, by_hand)
                _cargo_build(by_hand, toolchain, fast=False)  # warm both target dirs
                _cargo_build(by_hand, toolchain, fast=True)
            for i in range(rounds):
                first_loop = i % 2 == 0
                if first_loop:
                    loop.append(dev.edit_until_callable(project, f"r{i}"))
                if by_hand is not None:
                    _edit(by_hand, f"r{i}")
                    ref_release.append(_cargo_build(by_hand, toolchain, fast=False))
                    _edit(by_hand, f"q{i}")
                    ref_fast.append(_cargo_build(by_hand, toolchain, fast=True))
                if not first_loop:
                    loop.append(dev.edit_until_callable(project, f"r{i}"))
        finally:
            dev.close()
        shared = "shared, busy machine: noisy" if not smoke else "smoke: one round"
        res.add(
            "plugin dev: edit → rebuilt → callable (Rust template)",
            statistics.median(loop),
            "s",
            goal=5.0,
            note=f"median of {len(loop)} rounds, warm build cache, quick profile; {shared}",
        )
        if ref_release:
            res.add(
                "reference: cargo build --release, same edit (template profile, LTO)",
                statistics.median(ref_release),
                "s",
                note=f"median of {len(ref_release)} rounds paired with the loop; warm target/",
            )
            res.add(
                "reference: cargo build, same edit, plugin dev's quick profile",
                statistics.median(ref_fast),
                "s",
                note="the loop's overhead is the difference (watch, sync, sandbox, install)",
            )
        else:
            print("  plugin dev: references skipped in --smoke", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
