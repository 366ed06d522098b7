"""What naming a credential by its id costs against naming it by its alias: a warm
``Vultrino.execute`` of the echo guest (the call pipeline end to end), and ``credential_info``.

An alias is found by one look at the records in memory; an id by the store's lookup, which
scans the records for it. Both names are measured in alternating rounds of the same run (CPU
time of the calling thread), in a store of 200 credentials, and each keeps its best round; the
figure is the median ratio id/alias over the rounds, so a busy machine skews neither.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run(res: Any, smoke: bool) -> None:
    from run import ECHO_MANIFEST, per_call, wat  # type: ignore[import-not-found]

    from vultrino.core import Vultrino
    from vultrino.store import Credential, KdfParams

    root = Path(tempfile.mkdtemp(prefix="vultrino-bench-ids-"))
    try:
        home = root / "home"
        Vultrino.init(home, "bench-password", kdf=KdfParams.minimal()).close()
        d = home / "plugins" / "echo"
        d.mkdir(parents=True)
        (d / "plugin.toml").write_text(ECHO_MANIFEST)
        (d / "echo.wasm").write_bytes(wat("abi2_echo.wat"))
        with Vultrino.open(home, "bench-password") as v:
            v.add_credential("echo", "plugin:echo:key", {"key": "bench-secret-value-0123"})
            v._s.store.add_many(
                [
                    Credential(f"c{i:04d}", "plugin:echo:key", {"key": f"k-{i:04d}-xxxxxxxx"})
                    for i in range(200)
                ]
            )
            cid = v.credential_info("echo").id
            params = {"data": "x" * 60}
            assert v.execute(cid, "echo", params)["credential"]["alias"] == "echo"
            n = 100 if smoke else 3000
            cpu = time.thread_time
            rounds = 2 if smoke else 9
            call_ratios, info_ratios = [], []
            by_alias = float("inf")
            for i in range(rounds):
                pair = [
                    lambda: v.execute("echo", "echo", params),
                    lambda: v.execute(cid, "echo", params),
                ]
                infos = [lambda: v.credential_info("echo"), lambda: v.credential_info(cid)]
                for fns, ratios in ((pair, call_ratios), (infos, info_ratios)):
                    order = (0, 1) if i % 2 == 0 else (1, 0)
                    took = {k: per_call(fns[k], n, 1, cpu) for k in order}
                    ratios.append(took[1] / took[0])
                    if fns is pair:
                        by_alias = min(by_alias, took[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"  execute by alias: {by_alias * 1e6:.1f} us", file=sys.stderr)
    res.add(
        "credential id: execute by id / by alias (200 credentials)",
        statistics.median(call_ratios),
        "x",
        goal=1.25,
        note="median of paired rounds, CPU time; the id is found by a scan of the records",
    )
    res.add(
        "credential id: credential_info by id / by alias (200 credentials)",
        statistics.median(info_ratios),
        "x",
        note="median of paired rounds, CPU time",
    )
