"""What bundling a Python plugin's statically found imports costs: component size and build
time of ``tests/fixtures/python_lazy`` built as Vultrino builds it (a generated entry module
importing every module the sources import anywhere, plus the standard library's lazy
dependencies) against the plain ``componentize-py ... componentize app`` build it replaces,
in alternating pairs; and the static scan itself.

Builds run without the sandbox on both sides (the same for each), one after the other. The
machine may be shared: build times are medians of the pairs, and noisy.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "python_lazy"


def run(res: Any, smoke: bool) -> None:
    from vultrino.plugins.install import _componentize, _imports

    t = time.perf_counter()
    n = 20 if smoke else 200
    for _ in range(n):
        found = _imports.with_lazy_dependencies(
            [*_imports.scan(FIXTURE), *_imports.scan(_componentize.find_sdk())]
        )
    res.add(
        "python build: static import scan (fixture + SDK)",
        (time.perf_counter() - t) / n * 1e3,
        "ms",
        note=f"{len(found)} modules found",
    )
    if smoke:
        return  # a componentize-py build takes tens of seconds: full runs only
    try:
        tool = _componentize.executable()
    except Exception as exc:
        res.add("python build: skipped (no componentize-py)", 0, "-", note=str(exc)[:80])
        return
    pairs = 3
    ours: list[float] = []
    plain: list[float] = []
    cpu: dict[str, list[float]] = {"ours": [], "plain": []}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for i in range(pairs):
            for kind in ("plain", "ours") if i % 2 == 0 else ("ours", "plain"):
                project = shutil.copytree(FIXTURE, base / f"{kind}-{i}")
                out = base / f"out-{kind}-{i}" / "plugin.wasm"
                started = time.perf_counter()
                before = _child_cpu()
                if kind == "ours":
                    _componentize.build(project, out=out, sandbox="off")
                else:
                    out.parent.mkdir(parents=True)
                    subprocess.run(
                        [tool, "-d", str(_componentize.find_wit()), "-w", "plugin",
                         "componentize", "app", "-p", str(project),
                         "-p", str(_componentize.find_sdk()), "-o", str(out)],
                        check=True, capture_output=True, cwd=project,
                    )  # fmt: skip
                (ours if kind == "ours" else plain).append(time.perf_counter() - started)
                cpu[kind].append(_child_cpu() - before)
                sizes[kind] = out.stat().st_size
    res.add("python build: plain componentize-py", statistics.median(plain), "s",
            note=f"median of {pairs}")  # fmt: skip
    res.add("python build: with the import scan", statistics.median(ours), "s",
            note=f"median of {pairs}, paired with the plain build")  # fmt: skip
    res.add("python build: added build time", statistics.median(ours) - statistics.median(plain),
            "s")  # fmt: skip
    res.add("python build: added CPU time (user+sys)",
            statistics.median(cpu["ours"]) - statistics.median(cpu["plain"]), "s",
            note=f"plain build: {statistics.median(cpu['plain']):.1f} s CPU; "
            "less noisy than wall time on a shared machine")  # fmt: skip
    res.add("python build: plain component size", sizes["plain"] / 1e6, "MB")
    res.add("python build: added component size", (sizes["ours"] - sizes["plain"]) / 1e6, "MB",
            note="the fixture imports 10 stdlib modules lazily")  # fmt: skip


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
