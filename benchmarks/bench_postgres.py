"""What the PostgreSQL store backend costs a warm ``execute`` (docs/scaling.md): the same echo
call on a home whose store is a file and on one whose store is in a local PostgreSQL (a
throwaway cluster on loopback, as the tests start it), with and without a ``[[policies]]``
rate limit. With PostgreSQL a call writes its signed audit record in one transaction (the
head row's lock, then the insert; committed before the call returns), and with the rate
limit makes one more round trip, before the call, to the shared bucket.

The two homes are measured in alternating pairs of rounds in the same run; each figure is the
median over the pairs of (PostgreSQL p50 - file p50), so a busy machine moves both sides
alike. Skipped, with a note, when PostgreSQL's binaries or psycopg are absent.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RATE_POLICY = (
    '[[policies]]\nname = "budget"\ncredential_pattern = "echo"\ndefault_action = "allow"\n'
    "rules = [{ condition = { rate_limit = { max = 100000000, window_secs = 60 } }, "
    'action = "allow" }]\n'
)


def _p50(fn: Any, n: int) -> float:
    took = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        took.append(time.perf_counter() - t)
    return statistics.median(took)


def run(res: Any, smoke: bool) -> None:
    from run import ECHO_MANIFEST, wat

    try:
        import psycopg  # noqa: F401
    except ImportError:
        print("  psycopg not installed: PostgreSQL backend skipped", file=sys.stderr)
        return
    from tests.pgcluster import Cluster, find_bin_dir
    from vultrino.core import Vultrino
    from vultrino.store import KdfParams

    bin_dir = find_bin_dir()
    if bin_dir is None:
        print("  PostgreSQL not installed: PostgreSQL backend skipped", file=sys.stderr)
        return
    cluster = Cluster(bin_dir)
    root = Path(tempfile.mkdtemp(prefix="vultrino-bench-pg-"))
    handles: list[Vultrino] = []
    try:
        cluster.start()
        n = 30 if smoke else 400
        pairs = 3 if smoke else 11
        for policy in ("", RATE_POLICY):
            homes = {}
            for backend in ("file", "postgresql"):
                home = root / f"{backend}{'-rate' if policy else ''}"
                home.mkdir(parents=True)
                store = f'[store]\nurl = "{cluster.new_database()}"\n' if backend != "file" else ""
                (home / "config.toml").write_text(store + policy)
                Vultrino.init(home, "bench-password", kdf=KdfParams.minimal()).close()
                d = home / "plugins" / "echo"
                d.mkdir(parents=True)
                (d / "plugin.toml").write_text(ECHO_MANIFEST)
                (d / "echo.wasm").write_bytes(wat("abi2_echo.wat"))
                v = Vultrino.open(home, "bench-password")
                handles.append(v)
                v.add_credential("echo", "plugin:echo:key", {"key": "bench-secret-value-0123"})
                params = {"data": "x" * 60}
                v.execute("echo", "echo", params)
                homes[backend] = lambda v=v, params=params: v.execute("echo", "echo", params)
            deltas, file_p50 = [], []
            for i in range(pairs):
                order = ("file", "postgresql") if i % 2 == 0 else ("postgresql", "file")
                got = {b: _p50(homes[b], n) for b in order}
                deltas.append(got["postgresql"] - got["file"])
                file_p50.append(got["file"])
            what = "with a [[policies]] rate limit" if policy else "no rate limit"
            res.add(
                f"execute p50: PostgreSQL store minus file store ({what})",
                statistics.median(deltas) * 1e3,
                "ms",
                goal=1.5,
                note=(
                    f"median of {pairs} paired rounds of {n} calls; file store p50 "
                    f"{statistics.median(file_p50) * 1e3:.3f} ms; loopback PostgreSQL"
                ),
            )
    finally:
        for v in handles:
            v.close()
        cluster.remove()
        shutil.rmtree(root, ignore_errors=True)
