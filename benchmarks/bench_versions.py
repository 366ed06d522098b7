"""What secret versions cost: reading a store whose credentials were rotated (each record then
carries one kept version), and a rotation against the write it replaces (``add --replace``).

Each figure is measured against its reference in the same run, in alternating pairs, and
reported as the median ratio of the pairs (the machine may be shared: a ratio of paired runs
drifts far less than either absolute figure).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _paired(a: Callable[[], object], b: Callable[[], object], pairs: int) -> tuple[float, float]:
    """Median seconds of ``a`` and median ratio b/a over alternating runs."""
    times_a, ratios = [], []
    for i in range(pairs):
        order = (a, b) if i % 2 == 0 else (b, a)
        took = {}
        for fn in order:
            t = time.perf_counter()
            fn()
            took[fn] = time.perf_counter() - t
        times_a.append(took[a])
        ratios.append(took[b] / took[a])
    return statistics.median(times_a), statistics.median(ratios)


def run(res: Any, smoke: bool) -> None:
    from vultrino.core import Vultrino
    from vultrino.store import KdfParams

    count = 50 if smoke else 1000
    pairs = 3 if smoke else 15
    writes = 3 if smoke else 15
    with tempfile.TemporaryDirectory() as tmp:
        plain_home, rotated_home = Path(tmp, "plain"), Path(tmp, "rotated")
        handles = []
        for home in (plain_home, rotated_home):
            v = Vultrino.init(home, "bench", kdf=KdfParams.minimal())
            handles.append(v)
            store = v._s.store
            from vultrino.store import Credential

            store.add_many(
                [
                    Credential(
                        f"c{i:05d}",
                        "api_key",
                        {"key": f"k-{i:05d}-" + "x" * 32, "header": "Authorization"},
                        secret_fields=["key", "extra_headers"],
                    )
                    for i in range(count)
                ]
            )
        plain, rotated = handles
        for i in range(count):

            def change(c: Any, i: int = i) -> Any:
                c.fields["key"] = f"k-{i:05d}-" + "y" * 32
                return c

            rotated._s.store.modify(f"c{i:05d}", change, rotate=True)
        base, ratio = _paired(
            plain._s.store.credentials,
            rotated._s.store.credentials,
            pairs,
        )
        res.add(
            f"store: credentials() of {count}, every one rotated once (ratio to never rotated)",
            ratio,
            "x",
            goal=1.5,
            note=f"median of {pairs} paired runs; never rotated: {base * 1e3:.2f} ms",
        )

        n = [0]

        def rotate() -> None:
            n[0] += 1
            plain.rotate("c00000", {"key": f"rotated-{n[0]}-" + "z" * 24})

        def replace() -> None:
            n[0] += 1
            plain.add_credential(
                "c00001", "api_key", {"key": f"replaced-{n[0]}-" + "z" * 24}, replace=True
            )

        base, ratio = _paired(replace, rotate, writes)
        res.add(
            f"facade: rotate() in a store of {count} (ratio to add_credential(replace=True))",
            ratio,
            "x",
            goal=1.5,
            note=f"median of {writes} paired runs; replace: {base * 1e3:.1f} ms (two fsyncs each)",
        )
        for v in handles:
            v.close()
