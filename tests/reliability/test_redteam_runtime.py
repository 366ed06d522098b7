"""Red-team findings about the runtime, on every installed engine (the hostile corpus covers
the same guests through the API, the CLI and MCP; these pin the mechanism down).

* a negative (signed) pointer to ``random_get`` made the host allocate up to 2 GiB outside the
  memory cap: the host may allocate no more than the guest's memory holds;
* an engine with thread-bound objects (wasmer) kept one instance per calling thread, past the
  per-plugin cap of :data:`MAX_INSTANCES`;
* v128 / GC types in a module's interface aborted the process inside wasmtime's C API, at
  install and at a load from disk: a clean ``ModuleError`` through the real CLI;
* wasmer kept every failed instance (and its memory) until the cyclic garbage collector ran:
  discarded instances must be freed at once;
* tables and a component's extra memories were outside the memory cap (99 tables of 2^20
  entries held 792 MiB per component instance under a 32 MiB cap): tables have a count and an
  element budget, a component one memory, and a fresh process proves the documented bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from tests import component_guests, guests
from tests.reliability import corpus, memprobe
from vultrino.core import Vultrino
from vultrino.errors import ModuleError
from vultrino.runtime import Limits, WasmRuntime, available_engines, load_engine
from vultrino.runtime.engine import MAX_TABLE_ELEMENTS, MAX_TABLES, MIB, HostFunc
from vultrino.runtime.module import MAX_INSTANCES
from vultrino.store import KdfParams

ENGINES = [e for e in ("wasmtime", "wasmer") if e in available_engines()]
LIMITS = Limits(deadline_s=5, memory_bytes=8 * 1024 * 1024)


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_random_get_with_negative_pointers_allocates_nothing_outside_memory(
    engine_name: str,
) -> None:
    """Answers EFAULT for the three ranges outside memory; Python allocations during the call
    stay far below the 256 MiB and 2 GiB the guest asked for (before the fix: a 2 GiB bytes)."""
    wasm = bytes(wasmtime.wat2wasm(corpus.wat_source("random_bad_pointer")))
    with WasmRuntime(engine_name, limits=LIMITS) as rt, rt.load(wasm, plugin="rnd") as module:
        tracemalloc.start()
        try:
            answer = module.execute({"action": "misbehave", "params": {}, "credential": None})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert answer == {"ok": [21, 21, 21, 0]}
    assert peak < 4 * 1024 * 1024, f"the host allocated {peak} bytes during the call"


SLOW_GUEST = """(module
  (import "vultrino:plugin/host@1.0.0" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 3)
  ;;@prelude
  (func $misbehave (param $ptr i32) (param $len i32) (result i32)
    (call $log (i32.const 1) (i32.const 0) (i32.const 0))
    (call $ok_echo (local.get $ptr) (local.get $len))))
"""


class _CountingEngine:
    """The real engine, counting the instances alive at once (instantiate minus close)."""

    def __init__(self, name: str) -> None:
        self._engine = load_engine(name)
        self.name = self._engine.name
        self.version = self._engine.version
        self.capabilities = self._engine.capabilities
        self.alive = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._engine, attr)

    def instantiate(self, native: object, host: Sequence[HostFunc], limits: Limits) -> Any:
        instance = self._engine.instantiate(native, host, limits)
        with self._lock:
            self.alive += 1
            self.peak = max(self.peak, self.alive)
        close = instance.close
        counted = [False]

        def counting_close() -> None:
            if not counted[0]:
                counted[0] = True
                with self._lock:
                    self.alive -= 1
            close()

        instance.close = counting_close
        return instance


def test_instances_per_plugin_are_capped_on_every_engine(engine_name: str) -> None:
    """Twelve threads calling one plugin at once: never more than MAX_INSTANCES instances
    (wasmer used to give every calling thread its own)."""
    counting = _CountingEngine(engine_name)
    wasm = bytes(wasmtime.wat2wasm(SLOW_GUEST.replace(corpus.PRELUDE, _prelude())))
    barrier = threading.Barrier(12)
    errors: list[BaseException] = []
    gate = threading.Event()

    def log(level: str, text: str) -> None:
        gate.wait(5)  # hold every call inside the guest until all threads are in

    with WasmRuntime(counting, limits=LIMITS) as rt:  # type: ignore[arg-type]
        module = rt.load(wasm, plugin="capped", log=log)

        def call() -> None:
            try:
                barrier.wait(10)
                answer = module.execute({"action": "misbehave", "params": {}, "credential": None})
                assert "ok" in answer
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(12)]
        for t in threads:
            t.start()
        threading.Timer(1.0, gate.set).start()
        for t in threads:
            t.join(60)
        module.close()
    assert errors == []
    assert counting.peak <= MAX_INSTANCES, f"{counting.peak} instances alive at once"


def _prelude() -> str:
    return (corpus.HOSTILE / "_prelude.wat").read_text(encoding="utf-8")


@pytest.fixture
def cli_home(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    root = tmp_path / "home"
    Vultrino.init(root, "pw-redteam-runtime", kdf=KdfParams.minimal()).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    env.update(VULTRINO_HOME=str(root), VULTRINO_PASSWORD="pw-redteam-runtime")
    if engine := os.environ.get("VULTRINO_ENGINE"):
        env["VULTRINO_ENGINE"] = engine
    yield root, env


@pytest.mark.parametrize("stem", ["simd_signature", "gc_signature", "wasi_externref"])
def test_exotic_interface_types_are_refused_through_the_cli_and_from_disk(
    stem: str, tmp_path: Path, cli_home: tuple[Path, dict[str, str]]
) -> None:
    """Install through a real CLI process: exit 9 with a ModuleError, no abort, no traceback.
    Then the same module copied into plugins/ by hand (a corrupted or hostile install): the
    first call is a clean ModuleError too, and the process survives."""
    root, env = cli_home
    guest = corpus.by_stem(stem)
    src = corpus.build_plugin(guest, tmp_path / "src")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vultrino", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    r = run("plugin", "install", str(src))
    assert r.returncode == ModuleError.exit_code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    assert "imports and exports may use only" in r.stderr
    assert not (root / "plugins" / guest.plugin).exists()

    import shutil

    shutil.copytree(src, root / "plugins" / guest.plugin)
    r = run("request", "nobody", "--action", "misbehave")  # loads the registry first
    assert r.returncode > 0 and "Traceback" not in r.stderr, r.stderr
    r = run("plugin", "reload", guest.plugin)
    assert r.returncode == ModuleError.exit_code, (r.returncode, r.stderr)
    assert "imports and exports may use only" in r.stderr
    assert "Traceback" not in r.stderr


def test_answer_limits_are_exact() -> None:
    """64 levels and 100 000 values pass; one more of either is a PluginABIError naming it."""
    from vultrino import _msgpack
    from vultrino.errors import PluginABIError
    from vultrino.runtime import abi

    def nested(levels: int) -> bytes:  # {"ok": [[...nil...]]}: the map is level 1
        return b"\x81\xa2ok" + b"\x91" * (levels - 1) + b"\xc0"

    assert abi.decode_abi2(nested(abi.MAX_ANSWER_DEPTH))["ok"] is not None
    with pytest.raises(PluginABIError, match="64 levels deep"):
        abi.decode_abi2(nested(abi.MAX_ANSWER_DEPTH + 1))

    def values(n: int) -> bytes:  # {"ok": [0] * (n - 3)}: map key, map value, n - 3 elements
        return _msgpack.packb({"ok": [0] * (n - 3)})

    assert len(abi.decode_abi2(values(abi.MAX_ANSWER_VALUES))["ok"]) == abi.MAX_ANSWER_VALUES - 3
    with pytest.raises(PluginABIError, match="more than 100000 values"):
        abi.decode_abi2(values(abi.MAX_ANSWER_VALUES + 1))
    with pytest.raises(PluginABIError, match="more than 100000 values"):  # one array's header
        abi.decode_abi2(b"\x81\xa2ok\xdd" + (10**6).to_bytes(4, "big") + b"\xc0" * 10**6)


def test_interface_reader_leaves_plain_and_internal_simd_modules_alone() -> None:
    """SIMD inside a module (as Rust emits it) is fine; only the interface is checked."""
    from vultrino.runtime._signatures import check_signatures

    inside = corpus.wat_source("trap_unreachable").replace(
        "(func $misbehave",
        "(func $simd (param v128) (result v128) (local.get 0))\n  (func $misbehave",
    )
    check_signatures(bytes(wasmtime.wat2wasm(inside)))  # no error
    for stem, words in (("simd_signature", "`simd` has a `v128`"), ("gc_signature", "GC")):
        with pytest.raises(ModuleError, match=words):
            check_signatures(bytes(wasmtime.wat2wasm(corpus.wat_source(stem))))
    check_signatures(b"\x00asm\x01\x00\x00\x00\x01\xff")  # malformed: left to the engine


def test_a_module_with_more_globals_than_the_bound_is_refused(engine_name: str) -> None:
    """Globals are per-instance state outside the memory cap: a million of them held about
    15 MiB an instance; past MAX_GLOBALS a module is refused at load, on every engine."""
    from vultrino.runtime.engine import MAX_GLOBALS

    def module(n: int) -> bytes:
        globals_ = "\n".join(f"(global (mut i64) (i64.const {i}))" for i in range(n))
        src = corpus.wat_source("trap_unreachable").replace(";; globals", "")
        return bytes(
            wasmtime.wat2wasm(src.replace("(func $misbehave", globals_ + "\n(func $misbehave", 1))
        )

    with WasmRuntime(engine_name, limits=LIMITS) as rt:
        with rt.load(module(10), plugin="few"):
            pass
        with pytest.raises(ModuleError, match=f"globals; a plugin may have at most {MAX_GLOBALS}"):
            rt.load(module(MAX_GLOBALS + 1), plugin="many")


# --- tables and memories outside the memory cap ----------------------------------------------

#: What tables may hold on top of the memory cap, per instance (8 bytes an entry).
TABLE_BYTES = MAX_TABLES * MAX_TABLE_ELEMENTS * 8
_LOG_IMPORT = '(import "vultrino:plugin/host@1.0.0" "log" (func $log (param i32 i32 i32)))'


def _tables(count: int, size: int = 1) -> str:
    return "".join(f"(table $t{i} {size} funcref)" for i in range(count))


@pytest.mark.parametrize("kind", ["module", "component"])
def test_more_tables_than_allowed_are_refused(engine_name: str, kind: str) -> None:
    """99 tables of 2^20 entries held 792 MiB outside a 32 MiB cap, in every pooled instance."""
    if kind == "module":
        wasm = guests.abi2(guests.ECHO, extra=_tables(MAX_TABLES + 1))
    elif engine_name != "wasmtime":
        pytest.skip("only wasmtime runs components")
    else:
        wasm = component_guests.component("ok_logs", extra_core_imports=_tables(MAX_TABLES + 1))
    with WasmRuntime(engine_name, limits=LIMITS) as rt, pytest.raises(ModuleError, match="table"):
        rt.load(wasm, plugin="tables")


def test_a_table_declared_past_the_element_budget_is_refused(engine_name: str) -> None:
    wasm = guests.abi2(guests.ECHO, extra=_tables(1, MAX_TABLE_ELEMENTS + 1))
    with WasmRuntime(engine_name, limits=LIMITS) as rt, pytest.raises(ModuleError, match="table"):
        rt.load(wasm, plugin="table")


def test_table_grow_stops_at_the_element_budget(engine_name: str) -> None:
    """A guest growing a table without end gets -1 at MAX_TABLE_ELEMENTS, exactly."""
    body = f"""(block $full (loop $grow
          (br_if $full (i32.eq (table.grow $t0 (ref.null func) (i32.const 1000)) (i32.const -1)))
          (br $grow)))
        (drop (table.grow $t0 (ref.null func)
          (i32.sub (i32.const {MAX_TABLE_ELEMENTS}) (table.size $t0))))
        (if (i32.ne (table.size $t0) (i32.const {MAX_TABLE_ELEMENTS})) (then unreachable))
        (if (i32.ne (table.grow $t0 (ref.null func) (i32.const 1)) (i32.const -1))
          (then unreachable))
        {guests.ECHO}"""
    wasm = guests.abi2(body, extra=_tables(1))
    with WasmRuntime(engine_name, limits=LIMITS) as rt, rt.load(wasm, plugin="grow") as module:
        assert "ok" in module.execute({"action": "grow", "params": {}, "credential": None})


def test_a_component_with_a_second_memory_is_refused() -> None:
    """A component's memories were capped one by one (four of them: four times the cap)."""
    if "wasmtime" not in ENGINES:
        pytest.skip("only wasmtime runs components")
    second = "(core module $Mem2 (memory 1)) (core instance $mem2 (instantiate $Mem2))"
    wasm = component_guests.component("ok_logs", extra_lowers=second)
    with WasmRuntime("wasmtime", limits=LIMITS) as rt:
        with pytest.raises(ModuleError, match="memor"):
            rt.load(wasm, plugin="memories")
        # the same component without the second memory loads and answers
        plain = rt.load(component_guests.component("ok_logs"), plugin="one")
        assert plain.execute({"action": "a", "params": {}, "credential": None}) == {"ok": 1}
        plain.close()


@pytest.mark.parametrize("guest", ["core", "component"])
def test_full_pooled_instances_stay_within_the_documented_memory_bound(
    engine_name: str, guest: str
) -> None:
    """In a fresh process, MAX_INSTANCES instances at once each fill every table they may and
    their memory up to the cap, and go back to the pool full: the host's peak resident memory
    grows by at most MAX_INSTANCES x (cap + TABLE_BYTES), plus 32 MiB for the engine's own
    bookkeeping. Before tables were budgeted: +527 MiB (core, 16 tables) and +3.1 GiB
    (component, 99 tables) on wasmtime, +392 MiB on wasmer, at this 16 MiB cap."""
    if guest == "component" and engine_name != "wasmtime":
        pytest.skip("only wasmtime runs components")
    result = _memprobe(engine_name, guest)
    assert result["errors"] == []
    growth = result["peak_bytes"] - result["base_bytes"]
    bound = memprobe.INSTANCES * (memprobe.CAP + TABLE_BYTES) + 32 * MIB
    assert growth <= bound, f"grew {growth / MIB:.0f} MiB, bound {bound / MIB:.0f} MiB"
    # the guests really filled what they may: most of the bound was used
    assert growth >= memprobe.INSTANCES * memprobe.CAP * 3 // 4, growth


def test_failed_instances_are_freed_when_discarded(engine_name: str) -> None:
    """With the cyclic garbage collector off, guests that fill their 16 MiB memory and then trap
    or time out: 8 failures one after another (their errors kept) leave less than one cap
    behind, 32 at once peak within MAX_INSTANCES caps and leave less than one behind. Before,
    on wasmer, each failed instance lived until a collection: +127 MiB after the 8, a +632 MiB
    peak that stayed after the 32 (3.6 GiB at the default 128 MiB cap)."""
    result = _memprobe(engine_name, "failing")
    assert result["failed"] == memprobe.SEQUENTIAL + memprobe.CONCURRENT
    assert "PluginMemoryError" in result["errors"] and "PluginTimeoutError" in result["errors"]
    base, cap = result["base_bytes"], memprobe.CAP
    assert result["sequential_bytes"] - base < cap, result
    assert result["peak_bytes"] - base <= memprobe.INSTANCES * cap + 32 * MIB, result
    assert result["after_bytes"] - base < cap, result


def _memprobe(engine_name: str, guest: str) -> dict[str, Any]:
    """``tests.reliability.memprobe`` in a fresh interpreter (see its docstring)."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the high-water mark")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    r = subprocess.run(
        [sys.executable, "-m", "tests.reliability.memprobe", engine_name, guest],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    result: dict[str, Any] = json.loads(r.stdout)
    return result
