"""`vultrino request ALIAS --action code` for a TOTP credential while unlocked, default KDF.

Three commands run alternately in one loop (so a busy machine weighs on all alike): the request
with no password in the environment and the home unlocked (`vultrino unlock`), the same request
locked (`VULTRINO_PASSWORD` set, so it pays Argon2id), and `python -c pass`. Each figure is the
median of its runs' wall and child CPU time (``RUSAGE_CHILDREN`` deltas).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-unlock-password"
GOAL_MS = 150.0


def _once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@contextlib.contextmanager
def _unlocked_home() -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """A home with the default KDF, the totp plugin and one TOTP credential, unlocked for 10
    minutes: (env without a password, env with it)."""
    root = Path(tempfile.mkdtemp(prefix="vb", dir="/tmp"))
    try:
        runtime = root / "run"
        runtime.mkdir(mode=0o700)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installed package: bytecode is cached
        env.update(
            VULTRINO_HOME=str(root / "home"),
            XDG_RUNTIME_DIR=str(runtime),
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        )
        locked = {**env, "VULTRINO_PASSWORD": PASSWORD}
        vultrino = [sys.executable, "-m", "vultrino"]
        for args, stdin in (
            (["init"], None),
            (["plugin", "install", "totp"], None),
            (
                ["add", "--alias", "2fa", "--type", "plugin:totp:totp", "--field", "secret=-"],
                "JBSWY3DPEHPK3PXP",
            ),
            (["unlock", "--for", "10m"], None),
        ):
            subprocess.run(
                [*vultrino, *args],
                env=locked,
                input=stdin,
                text=True,
                capture_output=True,
                check=True,
            )
        try:
            yield env, locked
        finally:
            subprocess.run([*vultrino, "lock"], env=env, capture_output=True, check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(res: Any, smoke: bool) -> None:
    n = 2 if smoke else 15
    request = [sys.executable, "-m", "vultrino", "request", "2fa", "--action", "code"]
    bare = [sys.executable, "-c", "pass"]
    listing = [sys.executable, "-m", "vultrino", "plugin", "list"]
    with _unlocked_home() as (env, locked):
        runs: dict[str, list[tuple[float, float]]] = {
            "unlocked": [],
            "locked": [],
            "bare": [],
            "listing": [],
        }
        _once(request, env)  # writes bytecode, the manifest and module caches
        for _ in range(n):
            runs["unlocked"].append(_once(request, env))
            runs["locked"].append(_once(request, locked))
            runs["bare"].append(_once(bare, env))
            runs["listing"].append(_once(listing, env))

    def med(name: str, i: int) -> float:
        return statistics.median(r[i] for r in runs[name]) * 1e3

    uw, uc = med("unlocked", 0), med("unlocked", 1)
    lw, lc = med("locked", 0), med("locked", 1)
    bw, bc = med("bare", 0), med("bare", 1)
    pc = med("listing", 1)
    same = f"medians of {n} alternating runs; locked (default KDF): {lw:.0f} ms wall, {lc:.0f} ms CPU; python -c pass: {bw:.0f} ms wall, {bc:.0f} ms CPU"
    res.add(
        "vultrino request (TOTP) while unlocked, default KDF: wall",
        uw,
        "ms",
        GOAL_MS,
        note=same,
    )
    res.add(
        "vultrino request (TOTP) while unlocked, default KDF: CPU",
        uc,
        "ms",
        GOAL_MS,
        note=f"child user+system time; unlocking saves {lc - uc:.0f} ms CPU (Argon2id) per command; "
        f"`plugin list` (Python, Typer, the facade; no store, no engine) takes {pc:.0f} ms CPU in "
        f"the same runs, so about {uc - pc:.0f} ms is opening the store (PyNaCl) and running the "
        "action: importing wasmtime and loading the cached totp module dominate that part",
    )
