"""Killing ``vultrino plugin install --force`` part-way, and judging what it leaves behind.

Two versions of one plugin, ``crashy`` 1.0.0 and 2.0.0 (different manifests, modules of very
different sizes), replace each other again and again. After every kill :func:`inspect` checks
``plugins/crashy``: it must be exactly one complete version — manifest, module and
``.installed.json`` agreeing, the module's sha256 the recorded one — and the registry must load
it; installer leftovers (``.staging-*``, ``.replaced-*``, ``.removing-*``) must be invisible to
the registry and gone after the next install. An install that reported success before the kill
(exit 0) must have left the new version.

Two harnesses: :func:`random_kills` sends SIGKILL at seeded random moments;
:func:`crash_points` kills the process right after each filesystem mutation of an install in
turn (every rename, mkdir, unlink, fsync, file creation), so every intermediate state is seen.
Processes come from a fork server (``_forkserver.py``) running the real CLI code; a few rounds
use plain ``python -m vultrino`` processes to show the two behave alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wasmtime

from tests.reliability._forkserver import ForkServer
from tests.reliability.corpus import HOSTILE

NAME = "crashy"
LEFTOVER_PREFIXES = (".staging-", ".replaced-", ".removing-")
#: A guard against a hung child, never a performance assertion.
HANG_GUARD_S = 120.0


@dataclass(frozen=True)
class Version:
    version: str
    source: Path
    manifest: bytes
    module: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.module).hexdigest()


def make_versions(base: Path) -> dict[str, Version]:
    """Sources of ``crashy`` 1.0.0 (a small module) and 2.0.0 (a 128 KiB one)."""
    template = (HOSTILE / "plugin.toml.in").read_text(encoding="utf-8")
    prelude = (HOSTILE / "_prelude.wat").read_text(encoding="utf-8")
    out = {}
    for version, filler, size in (("1.0.0", "\\01", 4096), ("2.0.0", "\\02", 128 * 1024)):
        src = base / f"crashy-{version}"
        src.mkdir(parents=True)
        manifest = (
            template.replace("@NAME@", NAME)
            .replace("@MODULE@", "crashy.wasm")
            .replace("@TOOL@", "crashy")
            .replace('version = "1.0.0"', f'version = "{version}"')
        ).encode()
        wat = (
            f'(module (memory (export "memory") {size // 65536 + 4})\n{prelude}\n'
            "(func $misbehave (param $ptr i32) (param $len i32) (result i32) unreachable)\n"
            f'(data (i32.const 196608) "{filler * size}"))'
        )
        module = bytes(wasmtime.wat2wasm(wat))
        (src / "plugin.toml").write_bytes(manifest)
        (src / "crashy.wasm").write_bytes(module)
        out[version] = Version(version, src, manifest, module)
    return out


def other(version: str | None) -> str:
    return "1.0.0" if version == "2.0.0" else "2.0.0"


# --- judging the plugins directory -------------------------------------------------------------


@dataclass
class State:
    """What ``plugins/`` holds after a kill."""

    version: str | None  # the complete version in plugins/crashy, None when there is none
    problems: list[str] = field(default_factory=list)  # anything half-written or inconsistent
    leftovers: list[str] = field(default_factory=list)
    #: plugins/crashy is missing but a complete copy waits in a ``.replaced-*`` directory
    #: (killed between the two renames of a replace); the next install puts it back.
    aside: str | None = None


def inspect(plugins: Path, versions: dict[str, Version]) -> State:
    """Judge ``plugins`` against the two versions (see the module docstring)."""
    from vultrino.plugins.registry import PluginRegistry

    leftovers = sorted(p.name for p in plugins.iterdir() if p.name.startswith("."))
    state = State(None, leftovers=leftovers)
    strange = [n for n in leftovers if not n.startswith(LEFTOVER_PREFIXES)]
    if strange:
        state.problems.append(f"unexpected entries in plugins/: {strange}")
    target = plugins / NAME
    if not target.exists():
        for name in leftovers:
            if name.startswith(".replaced-") and f"-{NAME}-" in name:
                version, problems = _complete_version(plugins / name, versions)
                if version is not None and not problems:
                    state.aside = version
        if state.aside is None:
            state.problems.append(f"plugins/{NAME} is missing and no complete copy is aside")
        return state
    state.version, problems = _complete_version(target, versions)
    state.problems += problems
    registry = PluginRegistry(plugins, _no_runtime)
    registry.load_all()
    if registry.broken():
        state.problems.append(f"the registry reports broken plugins: {registry.broken()}")
    names = {p.name for p in registry.plugins()}
    if names != {NAME}:
        state.problems.append(f"the registry loaded {sorted(names)}, not just {NAME}")
    elif registry.get(NAME).manifest.plugin.version != state.version:
        state.problems.append("the registry loaded another version than the files hold")
    return state


def _no_runtime() -> Any:
    raise AssertionError("inspecting the plugins directory must not compile anything")


def _complete_version(d: Path, versions: dict[str, Version]) -> tuple[str | None, list[str]]:
    if d.is_symlink() or not d.is_dir():
        return None, [f"{d.name} is not a directory"]
    files = sorted(p.name for p in d.iterdir())
    if files != sorted(["plugin.toml", "crashy.wasm", ".installed.json"]):
        return None, [f"{d.name} holds {files}"]
    manifest = (d / "plugin.toml").read_bytes()
    match = [v for v in versions.values() if v.manifest == manifest]
    if not match:
        return None, [f"{d.name}/plugin.toml is neither version ({len(manifest)} bytes)"]
    v = match[0]
    problems = []
    module = (d / "crashy.wasm").read_bytes()
    if module != v.module:
        problems.append(f"{d.name}/crashy.wasm is not the {v.version} module ({len(module)} B)")
    try:
        meta = json.loads((d / ".installed.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        return v.version, [*problems, f"{d.name}/.installed.json is not JSON: {exc}"]
    if meta.get("version") != v.version or meta.get("name") != NAME:
        problems.append(f"{d.name}/.installed.json says {meta.get('name')} {meta.get('version')}")
    if meta.get("sha256") != hashlib.sha256(module).hexdigest():
        problems.append(f"{d.name}/.installed.json's sha256 does not match the module")
    return v.version, problems


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Bench:
    """A home with ``crashy`` installed and the two versions' sources."""

    home: Path
    versions: dict[str, Version]

    @property
    def plugins(self) -> Path:
        return self.home / "plugins"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
        env["VULTRINO_HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def install_args(self, version: str) -> list[str]:
        return ["plugin", "install", "--force", str(self.versions[version].source)]


def make_bench(base: Path, *, engine: str | None = None) -> Bench:
    """A fresh home (its engine in config.toml) with ``crashy`` 1.0.0 installed."""
    from vultrino.core import Vultrino

    home = base / "home"
    home.mkdir(parents=True)
    if engine:
        (home / "config.toml").write_text(f'engine = "{engine}"\n', encoding="utf-8")
    versions = make_versions(base / "src")
    with Vultrino.open(home) as v:
        v.install_plugin(str(versions["1.0.0"].source))
    return Bench(home, versions)


@dataclass
class Report:
    """What a harness saw."""

    kills: int = 0  # processes that died by SIGKILL mid-install
    finished: int = 0  # processes that completed before the kill landed
    states: Counter[str] = field(default_factory=Counter)  # old / new / aside after each kill
    violations: list[str] = field(default_factory=list)
    leftovers_seen: int = 0  # kills that left installer leftovers behind
    clean_installs: int = 0  # unkilled installs that had to recover from leftovers
    clean_rounds: int = 0  # unkilled installs the harness ran on purpose (measuring, cleaning)
    #: Kills after which plugins/crashy was missing (a complete copy aside, restored by the
    #: next install): the moments a reader would not have found the plugin.
    missing: list[str] = field(default_factory=list)


def _after(bench: Bench, report: Report, label: str, before: str, status: tuple[str, int]) -> str:
    """Judge the state after one (possibly killed) install; returns the installed version."""
    kind, value = status
    target = other(before)
    if kind == "signal":
        report.kills += 1
    else:
        report.finished += 1
        if value != 0:
            report.violations.append(f"{label}: the install failed with exit code {value}")
    state = inspect(bench.plugins, bench.versions)
    report.violations += [f"{label}: {p}" for p in state.problems]
    if state.leftovers:
        report.leftovers_seen += 1
    installed = state.version or state.aside or before
    if state.aside is not None:
        report.states["missing, complete copy aside"] += 1
        report.missing.append(label)
    elif state.version == before:
        report.states["old"] += 1
    elif state.version == target:
        report.states["new"] += 1
    if kind == "exit" and value == 0 and state.version != target:
        report.violations.append(f"{label}: reported success but {state.version} is installed")
    return installed


def _clean_install(
    bench: Bench, server: ForkServer, report: Report, label: str, before: str
) -> str:
    """An install that runs to the end: it must succeed, recover leftovers of dead processes,
    and leave the new version with nothing else in plugins/."""
    had_leftovers = bool(inspect(bench.plugins, bench.versions).leftovers)
    report.clean_rounds += 1
    server.start(bench.install_args(other(before)))
    status = server.wait()
    installed = _after(bench, report, label, before, status)
    state = inspect(bench.plugins, bench.versions)
    if state.leftovers:
        report.violations.append(f"{label}: leftovers survived a clean install: {state.leftovers}")
    if had_leftovers and not state.leftovers:
        report.clean_installs += 1
    return installed


def random_kills(
    bench: Bench,
    rounds: int,
    *,
    seed: int = 9,
    plain_every: int = 0,
    clean_every: int = 10,
    min_kills: int = 0,
) -> Report:
    """SIGKILL ``rounds`` installs at seeded random moments (see the module docstring).

    The moment is uniform over a whole install (measured first), or, in every other round, over
    the part after the staging directory appears, where the writes and renames happen.
    ``plain_every`` > 0 makes every that-many-th round a plain ``python -m vultrino`` process.
    On a loaded machine an install can finish before its moment comes, so with ``min_kills``
    the rounds go on (up to four times ``rounds``) until that many installs were killed.
    Every ``clean_every``-th round is an install left to finish; so is the round after the first
    kill that left leftovers behind, so recovering from them is always exercised.
    """
    rng = random.Random(seed)
    report = Report()
    server = ForkServer(bench.env())
    try:
        installed = inspect(bench.plugins, bench.versions).version or "1.0.0"
        total, tail = _measure(bench, server, report)
        installed = inspect(bench.plugins, bench.versions).version or installed
        i = -1
        while True:
            i += 1
            if i >= rounds * 4 or (i >= rounds and report.kills >= min_kills):
                break
            label = f"round {i}"
            if clean_every and i % clean_every == clean_every - 1:
                installed = _clean_install(bench, server, report, label, installed)
                continue
            plain = plain_every > 0 and i % plain_every == 0
            odd = i % 2 == 1
            status = _killed(bench, server, installed, rng, (total, tail), plain=plain, odd=odd)
            seen = report.leftovers_seen
            installed = _after(bench, report, label, installed, status)
            if report.leftovers_seen > seen and report.clean_installs == 0:
                # Recovering from a dead install's leftovers must be exercised at least once;
                # whether a scheduled clean round happens to follow such a kill is up to timing.
                installed = _clean_install(bench, server, report, f"{label}, recovery", installed)
        installed = _clean_install(bench, server, report, "final", installed)
    finally:
        server.close()
    return report


def _measure(bench: Bench, server: ForkServer, report: Report) -> tuple[float, float]:
    """How long a whole install takes, and how long after its staging directory appears."""
    totals, tails = [], []
    installed = inspect(bench.plugins, bench.versions).version or "1.0.0"
    for _ in range(2):
        started = time.monotonic()
        server.start(bench.install_args(other(installed)))
        staged = _wait_for_staging(bench.plugins, started + HANG_GUARD_S)
        status = server.wait()
        ended = time.monotonic()
        installed = _after(bench, report, "measure", installed, status)
        report.clean_rounds += 1
        totals.append(ended - started)
        tails.append(ended - (staged or started))
    return max(totals), max(tails)


def _wait_for_staging(plugins: Path, deadline: float) -> float | None:
    while time.monotonic() < deadline:
        try:
            if any(p.name.startswith(".staging-") for p in plugins.iterdir()):
                return time.monotonic()
        except FileNotFoundError:
            pass
        time.sleep(0.0005)
    return None


def _killed(
    bench: Bench,
    server: ForkServer,
    installed: str,
    rng: random.Random,
    timing: tuple[float, float],
    *,
    plain: bool,
    odd: bool,
) -> tuple[str, int]:
    total, tail = timing
    args = bench.install_args(other(installed))
    if plain:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vultrino", *args],
            env=bench.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0, 3 * total))  # a cold interpreter start takes longer
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=HANG_GUARD_S)
        return ("signal", -code) if code < 0 else ("exit", code)
    pid = server.start(args)
    started = time.monotonic()
    if odd:
        staged = _wait_for_staging(bench.plugins, started + total * 2)
        time.sleep(rng.uniform(0, tail) if staged else 0)
    else:
        time.sleep(rng.uniform(0, total))
    with contextlib.suppress(ProcessLookupError):  # it may have finished already
        os.kill(pid, signal.SIGKILL)
    return server.wait()


def count_steps(bench: Bench, server: ForkServer, installed: str) -> tuple[list[str], str]:
    """Run one whole install recording its filesystem mutations; returns them and the version
    now installed."""
    with tempfile.NamedTemporaryFile("r", suffix=".steps") as f:
        server.start(bench.install_args(other(installed)), count_file=f.name)
        status = server.wait()
        assert status == ("exit", 0), f"the recording install failed: {status}"
        steps: list[str] = json.loads(Path(f.name).read_text() or "[]")
    return steps, other(installed)


def crash_points(bench: Bench, *, clean_after_each: bool = True) -> tuple[list[str], Report]:
    """Kill an install right after each of its filesystem mutations, one crash point per run.

    Returns the mutations (the crash points, in order) and the report. After each kill the
    state is judged, then (with ``clean_after_each``) a clean install recovers it before the
    next point.
    """
    report = Report()
    server = ForkServer(bench.env())
    try:
        installed = inspect(bench.plugins, bench.versions).version or "1.0.0"
        steps, installed = count_steps(bench, server, installed)
        for k, step in enumerate(steps, start=1):
            server.start(bench.install_args(other(installed)), kill_after=k)
            label = f"killed after step {k}/{len(steps)} ({step})"
            installed = _after(bench, report, label, installed, server.wait())
            if clean_after_each:
                installed = _clean_install(bench, server, report, f"after step {k}", installed)
    finally:
        server.close()
    return steps, report
