"""What the original Vultrino's conveniences cost on the call path, each against the same call
without it, in alternating rounds of one run (CPU time of the calling thread; the median ratio
of the rounds, so a busy machine skews neither side):

- the diagnostic log at INFO (``vultrino -v``): one formatted line per call, written to a null
  stream, against no log handler (the default);
- an MCP tool with ``parameter_mappings`` (its arguments renamed on each call) against the same
  action's tool without them.
"""

from __future__ import annotations

import io
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MANIFEST_TOOLS = """
[[mcp_tools]]
name = "echo_plain"
action = "echo"

[[mcp_tools]]
name = "echo_mapped"
action = "echo"
parameter_mappings = { text = "data" }
"""


def run(res: Any, smoke: bool) -> None:
    from run import ECHO_MANIFEST, per_call, wat  # type: ignore[import-not-found]

    from vultrino.cli import _logging
    from vultrino.core import Vultrino
    from vultrino.store import KdfParams

    root = Path(tempfile.mkdtemp(prefix="vultrino-bench-compat-"))
    n = 100 if smoke else 3000
    rounds = 2 if smoke else 9
    cpu = time.thread_time
    log_ratios: list[float] = []
    log_added: list[float] = []
    map_ratios: list[float] = []
    plain_best = float("inf")
    try:
        home = root / "home"
        Vultrino.init(home, "bench-password", kdf=KdfParams.minimal()).close()
        d = home / "plugins" / "echo"
        d.mkdir(parents=True)
        (d / "plugin.toml").write_text(ECHO_MANIFEST + MANIFEST_TOOLS)
        (d / "echo.wasm").write_bytes(wat("abi2_echo.wat"))
        with Vultrino.open(home, "bench-password") as v:
            v.add_credential("echo", "plugin:echo:key", {"key": "bench-secret-value-0123"})
            params = {"data": "x" * 60}
            assert v.execute("echo", "echo", params)["params"] == params
            mapped = {"credential": "echo", "text": "x" * 60}
            plain = {"credential": "echo", "data": "x" * 60}
            assert v.call_tool("echo_mapped", mapped)["params"] == params

            sink = io.StringIO()

            def logged() -> object:
                return v.execute("echo", "echo", params)

            def quiet() -> object:
                return v.execute("echo", "echo", params)

            for i in range(rounds):
                order = (0, 1) if i % 2 == 0 else (1, 0)
                took: dict[int, float] = {}
                for k in order:
                    if k == 1:
                        _logging.configure(logging.INFO, "text")
                        handler = logging.getLogger("vultrino").handlers[-1]
                        handler.setStream(sink)  # type: ignore[attr-defined]
                    try:
                        took[k] = per_call(logged if k else quiet, n, 1, cpu)
                    finally:
                        _logging.configure(None, "text")
                        sink.seek(0)
                        sink.truncate()
                log_ratios.append(took[1] / took[0])
                log_added.append(took[1] - took[0])
                plain_best = min(plain_best, took[0])

                calls = [
                    lambda: v.call_tool("echo_plain", dict(plain)),
                    lambda: v.call_tool("echo_mapped", dict(mapped)),
                ]
                took = {k: per_call(calls[k], n, 1, cpu) for k in order}
                map_ratios.append(took[1] / took[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"  warm execute without a log: {plain_best * 1e6:.1f} us", file=sys.stderr)
    res.add(
        "log: what -v (INFO) adds to a warm execute",
        statistics.median(log_added) * 1e6,
        "us",
        goal=50.0,
        note="median of paired rounds, CPU time; one formatted line per call to a null stream "
        "(Python's logging); nothing without -v",
    )
    res.add(
        "log: warm execute with -v (INFO) / without a log",
        statistics.median(log_ratios),
        "x",
        note="median of paired rounds, CPU time",
    )
    res.add(
        "mcp: tool call with parameter_mappings / without",
        statistics.median(map_ratios),
        "x",
        goal=1.1,
        note="median of paired rounds, CPU time; the same action through two tools",
    )
