"""The host's resident memory while a plugin's instances hold all the memory they may.

Run in a fresh interpreter (``python -m tests.reliability.memprobe ENGINE GUEST``), so nothing
else in the process moves its high-water mark. :data:`INSTANCES` threads call the guest at
once; each call grows every table until its engine refuses and fills it, grows the linear
memory to the cap and writes every page, then waits (in ``log``) until all calls are inside the
guest, so :data:`INSTANCES` instances are full at the same time, and answers: the instances go
back to the pool full. Prints one JSON object: the resident memory after loading
(``base_bytes``), the peak during the calls (``peak_bytes``) and the errors of the calls.

Guests (``GUEST``): ``core`` (a module with ``MAX_TABLES`` tables) and ``component`` (the same
in a component, wasmtime only).

``GUEST`` ``failing`` measures discarded instances instead, with Python's cyclic garbage
collector off: guests that fill their memory to the cap and then trap or run past the deadline,
called :data:`SEQUENTIAL` times one after another (every error kept, as a caller may) and then
:data:`CONCURRENT` times at once. It prints the resident memory after loading, after the
sequential calls, at the peak of the concurrent ones and after them.
"""

from __future__ import annotations

import gc
import json
import re
import sys
import threading
from typing import Any

from tests import component_guests, guests
from vultrino.runtime import Limits, WasmRuntime
from vultrino.runtime.engine import MAX_TABLES
from vultrino.runtime.module import MAX_INSTANCES

INSTANCES = MAX_INSTANCES
CAP = 16 * 1024 * 1024
SEQUENTIAL = 8
CONCURRENT = 32

_FILLER = "(func $filler) (elem declare func $filler)"


def _tables() -> str:
    return "".join(f"(table $t{i} 1 funcref)\n" for i in range(MAX_TABLES))


def _fill_tables() -> str:
    """Grow each table 4096 entries at a time until the engine refuses, then fill it."""
    return "".join(
        f"""(block $full{i} (loop $grow{i}
              (br_if $full{i} (i32.eq (table.grow $t{i} (ref.null func) (i32.const 4096))
                                      (i32.const -1)))
              (br $grow{i})))
            (table.fill $t{i} (i32.const 0) (ref.func $filler) (table.size $t{i}))
        """
        for i in range(MAX_TABLES)
    )


def _fill_memory(start: int) -> str:
    """Grow the memory to the cap (no further: wasmer fails a call that hit the cap) and write
    every new byte."""
    return f"""(drop (memory.grow (i32.sub (i32.const {CAP // 65536}) (memory.size))))
        (memory.fill (i32.const {start}) (i32.const 1)
          (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const {start})))
    """


def core_guest() -> bytes:
    # the prelude's memory has 3 pages; the request and the answer live in the first two
    body = f"""{_fill_tables()} {_fill_memory(3 * 65536)}
        (call $log (i32.const 1) (i32.const 0) (i32.const 0))
        (call $ok_echo (local.get $ptr) (local.get $len))"""
    imports = '(import "vultrino:plugin/host@1.0.0" "log" (func $log (param i32 i32 i32)))'
    return guests.abi2(body, imports=imports, extra=_FILLER + _tables())


def component_guest() -> bytes:
    # the shell's request, answer and data live in the first page
    body = f"""{_fill_tables()} {_fill_memory(65536)}
        (call $log (i32.const 1) (i32.const 128) (i32.const 22))
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (i32.const 5))
        (i32.const 0)"""
    return component_guests.component(body, extra_core_imports=_FILLER + _tables())


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        found = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
    assert found is not None, key
    return int(found.group(1)) * 1024


def measure(engine: str, guest: str) -> dict[str, Any]:
    wasm = core_guest() if guest == "core" else component_guest()
    arrived = threading.Barrier(INSTANCES, timeout=60)

    def log(level: str, text: str) -> None:
        arrived.wait()

    errors: list[str] = []

    def call() -> None:
        try:
            module.execute({"action": "fill", "params": {}, "credential": None})
        except Exception as exc:  # reported, judged by the test
            errors.append(f"{type(exc).__name__}: {exc}")

    limits = Limits(deadline_s=60, memory_bytes=CAP)
    with WasmRuntime(engine, limits=limits) as runtime:
        module = runtime.load(wasm, plugin="fill", log=log)
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # the high-water mark restarts from the resident memory now
        base = _status("VmRSS")
        # the loading thread calls too: on wasmer it owns the instance made by load()
        threads = [threading.Thread(target=call) for _ in range(INSTANCES - 1)]
        for t in threads:
            t.start()
        call()
        for t in threads:
            t.join()
        peak = _status("VmHWM")
        module.close()
    return {"base_bytes": base, "peak_bytes": peak, "errors": errors}


def failing_guest(end: str) -> bytes:
    return guests.abi2(_fill_memory(3 * 65536) + end)


def measure_failures(engine: str) -> dict[str, Any]:
    gc.disable()  # a failed instance must be freed when discarded, not by a later collection
    trap = failing_guest("unreachable")
    spin = failing_guest("(loop $spin (br $spin)) (i32.const 0)")
    request = {"action": "fail", "params": {}, "credential": None}
    kept: list[BaseException] = []
    with WasmRuntime(engine, limits=Limits(deadline_s=0.3, memory_bytes=CAP)) as runtime:
        trapping = runtime.load(trap, plugin="trap")
        spinning = runtime.load(spin, plugin="spin")
        base = _status("VmRSS")
        for i in range(SEQUENTIAL):
            try:
                (trapping if i % 2 else spinning).execute(request)
            except Exception as exc:  # kept, as a caller might
                kept.append(exc)
        sequential = _status("VmRSS")

        def call() -> None:
            try:
                trapping.execute(request)
            except Exception as exc:
                kept.append(exc)

        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        threads = [threading.Thread(target=call) for _ in range(CONCURRENT)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        peak = _status("VmHWM")
        after = _status("VmRSS")
        errors = sorted({type(e).__name__ for e in kept})
        trapping.close()
        spinning.close()
    return {
        "base_bytes": base,
        "sequential_bytes": sequential,
        "peak_bytes": peak,
        "after_bytes": after,
        "errors": errors,
        "failed": len(kept),
    }


if __name__ == "__main__":
    if sys.argv[2] == "failing":
        print(json.dumps(measure_failures(sys.argv[1])))
    else:
        print(json.dumps(measure(sys.argv[1], sys.argv[2])))
