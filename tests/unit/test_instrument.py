"""The wasm rewriter behind the wasmer engine's limits (vultrino/runtime/_instrument.py).

Every instrumented module must validate (wasmtime and wabt's ``wasm-validate``) and behave
exactly like the original when run on wasmtime — same results, same traps — while calling the
added ``check`` import the expected number of times.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vultrino.errors import ModuleError
from vultrino.runtime import _instrument
from vultrino.runtime._instrument import (
    CHECK_MODULE,
    CHECK_NAME,
    MAX_TABLE_ELEMENTS,
    REASON_FUEL,
    REASON_GROW_FAILED,
    REASON_GROWN,
    instrument,
)


def _engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True  # a backstop: broken instrumentation fails a test, not hangs it
    return wasmtime.Engine(config)


ENGINE = _engine()
BACKSTOP_FUEL = 2_000_000_000
I32 = wasmtime.ValType.i32()
I64 = wasmtime.ValType.i64()
# wabt's defaults already include SIMD, bulk memory, reference types and multi-value.
WABT_FEATURES = ("--enable-tail-call", "--enable-threads", "--enable-relaxed-simd")


class Stop(Exception):
    """What the test's ``check`` raises to end a guest, as the wasmer adapter does."""


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def validate(wasm: bytes, tmp_path: Path | None = None) -> None:
    """Both validators must accept ``wasm``; wabt is skipped only when it is not installed."""
    wasmtime.Module.validate(ENGINE, wasm)
    tool = shutil.which("wasm-validate")
    if tool is not None and tmp_path is not None:
        path = tmp_path / "instrumented.wasm"
        path.write_bytes(wasm)
        done = subprocess.run([tool, *WABT_FEATURES, str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


class Checker:
    """The ``check`` import: counts calls by reason and hands out ``chunk`` fuel."""

    def __init__(self, chunk: int, stop_after: int | None = None) -> None:
        self.chunk = chunk
        self.stop_after = stop_after
        self.reasons: list[int] = []

    def __call__(self, reason: int) -> int:
        self.reasons.append(reason)
        if self.stop_after is not None and len(self.reasons) > self.stop_after:
            raise Stop
        return self.chunk

    @property
    def fuel_checks(self) -> int:
        return self.reasons.count(REASON_FUEL)


def host_double(x: int) -> int:
    return x * 2


def instantiate(wasm: bytes, checker: Checker | None) -> tuple[wasmtime.Store, Any]:
    store = wasmtime.Store(ENGINE)
    store.set_fuel(BACKSTOP_FUEL)
    linker = wasmtime.Linker(ENGINE)
    linker.allow_shadowing = True
    module = wasmtime.Module(ENGINE, wasm)
    names = {(i.module, i.name) for i in module.imports}
    if ("env", "double") in names:
        linker.define_func("env", "double", wasmtime.FuncType([I32], [I32]), host_double)
    if checker is not None:
        linker.define_func(CHECK_MODULE, CHECK_NAME, wasmtime.FuncType([I32], [I64]), checker)
    if any(m == "wasi_snapshot_preview1" for m, _ in names):
        store.set_wasi(wasmtime.WasiConfig())
        linker.define_wasi()
    return store, linker.instantiate(store, module)


def outcome(store: wasmtime.Store, instance: Any, name: str, args: Sequence[Any]) -> object:
    """What a call does: its result, or the first line of its trap."""
    func = instance.exports(store)[name]
    try:
        return func(store, *args)
    except wasmtime.Trap as exc:
        return ("trap", str(exc.trap_code))
    except wasmtime.WasmtimeError as exc:
        return ("error", str(exc).splitlines()[0])


def same_behaviour(
    wasm: bytes,
    calls: Sequence[tuple[str, Sequence[Any]]],
    tmp_path: Path,
    *,
    chunk: int = 3,
    pages: int = 16,
) -> tuple[bytes, Checker, list[object]]:
    """Run ``calls`` on the original and the instrumented module; they must agree."""
    wasmtime.Module.validate(ENGINE, wasm)
    out = instrument(wasm, max_memory_pages=pages)
    validate(out, tmp_path)
    checker = Checker(chunk)
    plain_store, plain = instantiate(wasm, None)
    inst_store, inst = instantiate(out, checker)
    expected = [outcome(plain_store, plain, n, a) for n, a in calls]
    got = [outcome(inst_store, inst, n, a) for n, a in calls]
    assert got == expected
    return out, checker, got


# --- behaviour is preserved ------------------------------------------------------------------

RECURSION = """(module
  (import "env" "double" (func $double (param i32) (result i32)))
  (func $fact (export "fact") (param i64) (result i64)
    (if (result i64) (i64.eqz (local.get 0)) (then (i64.const 1))
      (else (i64.mul (local.get 0) (call $fact (i64.sub (local.get 0) (i64.const 1)))))))
  (func $fib (export "fib") (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2)) (then (local.get 0))
      (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
                     (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
  (func $even (export "even") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 1))
      (else (call $odd (i32.sub (local.get 0) (i32.const 1))))))
  (func $odd (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
      (else (call $even (i32.sub (local.get 0) (i32.const 1))))))
  (func $forever (export "forever") (param i32) (result i32)
    (call $forever (i32.add (local.get 0) (i32.const 1))))
  (func (export "host") (param i32) (result i32) (call $double (local.get 0)))
  (export "double_again" (func $double)))
"""


def test_recursion_and_imports_behave_the_same(tmp_path: Path) -> None:
    calls = [
        ("fact", [20]),
        ("fib", [15]),
        ("even", [101]),
        ("even", [64]),
        ("host", [21]),
        ("double_again", [5]),
        ("forever", [0]),
    ]
    _, checker, got = same_behaviour(wat(RECURSION), calls, tmp_path)
    assert got[:6] == [2432902008176640000, 610, 0, 1, 42, 10]
    assert got[6][0] == "trap"  # stack overflow on both
    assert checker.fuel_checks > 0


TABLES = """(module
  (type $i2i (func (param i32) (result i32)))
  (table $t0 4 funcref)
  (table $t1 2 funcref)
  (table $refs 2 externref)
  (func $inc (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  (func $dec (param i32) (result i32) (i32.sub (local.get 0) (i32.const 1)))
  (func $sq (param i32) (result i32) (i32.mul (local.get 0) (local.get 0)))
  (func $neg (param i32) (result i32) (i32.sub (i32.const 0) (local.get 0)))
  (elem (table $t0) (i32.const 0) func $inc $dec)                       ;; form 0 / 2
  (elem (table $t1) (i32.const 0) funcref (ref.func $sq) (ref.null func)) ;; form 6
  (elem $passive func $neg $sq)                                          ;; form 1
  (elem $passive_exprs funcref (ref.func $dec) (ref.null func))           ;; form 5
  (elem declare func $neg)                                               ;; form 3
  (elem declare funcref (ref.func $inc))                                 ;; form 7
  (global $g funcref (ref.func $sq))
  (func (export "via0") (param i32 i32) (result i32)
    (call_indirect $t0 (type $i2i) (local.get 0) (local.get 1)))
  (func (export "via1") (param i32 i32) (result i32)
    (call_indirect $t1 (type $i2i) (local.get 0) (local.get 1)))
  (func (export "init") (param i32) (result i32)
    (table.init $t0 $passive (i32.const 2) (i32.const 0) (i32.const 2))
    (elem.drop $passive)
    (call_indirect $t0 (type $i2i) (local.get 0) (i32.const 2)))
  (func (export "init_exprs") (param i32) (result i32)
    (table.init $t1 $passive_exprs (i32.const 0) (i32.const 0) (i32.const 1))
    (call_indirect $t1 (type $i2i) (local.get 0) (i32.const 0)))
  (func (export "refs") (param i32) (result i32)
    (table.set $t0 (i32.const 3) (ref.func $neg))
    (table.set $t0 (i32.const 1) (global.get $g))
    (drop (table.grow $t0 (ref.func $inc) (i32.const 3)))
    (table.fill $t0 (i32.const 5) (ref.func $dec) (i32.const 2))
    (table.copy $t1 $t0 (i32.const 0) (i32.const 3) (i32.const 1))
    (i32.add
      (i32.add (call_indirect $t0 (type $i2i) (local.get 0) (i32.const 3))
               (call_indirect $t0 (type $i2i) (local.get 0) (i32.const 4)))
      (i32.add (call_indirect $t0 (type $i2i) (local.get 0) (i32.const 6))
               (i32.add (table.size $t0)
                        (call_indirect $t1 (type $i2i) (local.get 0) (i32.const 0))))))
  (func (export "nulls") (result i32)
    (i32.add (ref.is_null (table.get $refs (i32.const 0)))
             (ref.is_null (table.get $t1 (i32.const 1)))))
  (func (export "tail") (param i32) (result i32)
    (return_call_indirect $t0 (type $i2i) (local.get 0) (i32.const 1))))
"""


def test_tables_and_all_element_forms_behave_the_same(tmp_path: Path) -> None:
    calls = [
        ("via0", [10, 0]),
        ("via0", [10, 1]),
        ("via0", [10, 3]),  # null entry: trap on both
        ("via1", [7, 0]),
        ("via1", [7, 1]),
        ("init", [6]),
        ("init_exprs", [6]),
        ("refs", [5]),
        ("nulls", []),
        ("tail", [9]),
    ]
    _, _, got = same_behaviour(wat(TABLES), calls, tmp_path)
    assert got[0] == 11 and got[1] == 9 and got[3] == 49 and got[5] == -6 and got[6] == 5
    assert got[2][0] == "trap" and got[4][0] == "trap"


START = """(module
  (import "env" "double" (func $double (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $seen (export "seen") (mut i32) (i32.const 0))
  (func $helper (param i32) (result i32) (i32.add (local.get 0) (i32.const 100)))
  (func $init
    (global.set $seen (call $helper (call $double (i32.const 4))))
    (i32.store (i32.const 16) (i32.const 77)))
  (start $init)
  (func (export "read") (result i32) (i32.add (global.get $seen) (i32.load (i32.const 16))))
  (func (export "helper") (param i32) (result i32) (call $helper (local.get 0))))
"""


def test_start_function_and_shifted_exports_behave_the_same(tmp_path: Path) -> None:
    out, _, got = same_behaviour(wat(START), [("read", []), ("helper", [1])], tmp_path)
    assert got == [185, 101]
    exports = {e.name: e.type for e in wasmtime.Module(ENGINE, out).exports}
    assert set(exports) == {"memory", "seen", "read", "helper"}
    imports = [(i.module, i.name) for i in wasmtime.Module(ENGINE, out).imports]
    assert imports == [("env", "double"), (CHECK_MODULE, CHECK_NAME)]  # appended, not inserted


LOOPS = """(module
  (func $spin (export "spin") (param $n i32) (result i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (local.get $acc) (local.get $n)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $acc))
  (func $inner (param $m i32) (result i32) (local $acc i32)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $m)))
        (local.set $acc (i32.add (local.get $acc) (i32.const 3)))
        (local.set $m (i32.sub (local.get $m) (i32.const 1)))
        (br $l)))
    (local.get $acc))
  (func $middle (param $m i32) (result i32) (call $inner (local.get $m)))
  (func (export "nested") (param $n i32) (param $m i32) (result i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (local.get $acc) (call $middle (local.get $m))))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $acc))
  (func (export "early") (param $n i32) (result i32)
    (loop $l
      (if (i32.gt_u (local.get $n) (i32.const 1000)) (then (return (local.get $n))))
      (local.set $n (i32.mul (local.get $n) (i32.const 3)))
      (br $l))
    (unreachable))
  (func (export "exit_by_branch") (param $n i32) (result i32)
    (loop $l
      (br_if 1 (i32.mul (local.get $n) (i32.const 2)) (i32.gt_u (local.get $n) (i32.const 50)))
      (local.set $n (i32.add (local.get $n) (i32.const 7)))
      (br $l))
    (i32.const -1))
  (global $last (mut i32) (i32.const 0))
  (func $table_exit (param $n i32)
    (loop $l
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (global.set $last (local.get $n))
      (br_table $l $l 1 (i32.rem_u (local.get $n) (i32.const 3)))))
  (func (export "table_exit") (param $n i32) (result i32)
    (call $table_exit (local.get $n))
    (global.get $last))
  (func (export "multi") (param $n i32) (result i32 i32)
    (i32.const 0) (local.get $n)
    (loop $l (param i32 i32) (result i32 i32)
      (local.set $n)
      (i32.add (local.get $n))
      (local.get $n) (i32.const 1) (i32.sub) (local.tee $n)
      (if (param i32) (result i32 i32) (then (local.get $n) (br $l)) (else (local.get $n))))
    (block (param i32 i32) (result i32 i32)))
  (func (export "tail_loop") (param $n i32) (param $acc i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n)) (then (local.get $acc))
      (else (return_call $tail (i32.sub (local.get $n) (i32.const 1))
                               (i32.add (local.get $acc) (local.get $n))))))
  (func $tail (param i32 i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then (local.get 1))
      (else (return_call $tail (i32.sub (local.get 0) (i32.const 1))
                               (i32.add (local.get 1) (local.get 0)))))))
"""


def test_loops_branches_and_multi_value_behave_the_same(tmp_path: Path) -> None:
    calls = [
        ("spin", [1000]),
        ("nested", [10, 20]),
        ("early", [2]),
        ("exit_by_branch", [3]),
        ("table_exit", [4]),
        ("multi", [10]),
        ("tail_loop", [100, 0]),
    ]
    _, _, got = same_behaviour(wat(LOOPS), calls, tmp_path)
    assert got[0] == 500500 and got[1] == 600 and got[6] == 5050
    assert got[5] == [55, 0]


@pytest.mark.parametrize(("chunk", "n", "m"), [(1, 13, 17), (11, 13, 17), (1000, 300, 17)])
def test_no_fuel_is_lost_between_functions(tmp_path: Path, chunk: int, n: int, m: int) -> None:
    """``check`` runs exactly once per ``chunk`` ticks, wherever the ticks happen.

    ``nested(n, m)`` ticks once at entry (it calls a defined function) and n times in its loop;
    each iteration calls ``middle`` (no loop: it ticks the global once at entry), which calls
    ``inner`` (m + 1 ticks in its loop, on a local). The fuel moves between locals and the
    global at every call and return, so a lost write-back would show up as a different number
    of checks (with a chunk larger than one ``inner`` call, as many as none at all).
    """
    out = instrument(wat(LOOPS), max_memory_pages=1)
    checker = Checker(chunk)
    store, inst = instantiate(out, checker)
    assert outcome(store, inst, "nested", [n, m]) == n * m * 3
    ticks = 1 + n + n * (1 + m + 1)
    # the fuel starts at zero: the first tick refills, then every ``chunk`` ticks
    assert checker.fuel_checks == 1 + (ticks - 1) // chunk
    assert set(checker.reasons) == {REASON_FUEL}


EXITS = {
    "return": "(return)",
    "br": "(br 2)",
    "br_if": "(br_if 2 (i32.const 1))",
    "br_table": "(br_table 2 2 (i32.const 0))",
    "return_call": "(return_call $leaf)",
    "return_call_indirect": "(return_call_indirect (i32.const 0))",
}


@pytest.mark.parametrize("style", sorted(EXITS))
def test_every_way_out_of_a_function_keeps_its_fuel(tmp_path: Path, style: str) -> None:
    module = f"""(module
      (table 1 funcref) (elem (i32.const 0) $leaf)
      (func $leaf)
      (func $callee (param $k i32)
        (loop $l
          (if (i32.eqz (local.get $k)) (then {EXITS[style]}))
          (local.set $k (i32.sub (local.get $k) (i32.const 1)))
          (br $l)))
      (func (export "drive") (param $n i32) (param $m i32)
        (loop $l
          (call $callee (local.get $m))
          (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))))"""
    chunk, n, m = 1000, 300, 17
    _, checker, _ = same_behaviour(wat(module), [("drive", [n, m])], tmp_path, chunk=chunk)
    tail_call = style.startswith("return_call")
    ticks = 1 + n + n * (m + 1) + (n if tail_call else 0)  # a tail caller ticks at entry
    assert checker.fuel_checks == 1 + (ticks - 1) // chunk


def test_a_check_that_raises_ends_an_endless_loop_and_endless_recursion() -> None:
    endless = wat("""(module
      (func (export "loop") (loop (br 0)))
      (func $r (export "tail") (return_call $r))
      (func $f (export "mutual") (call $g)) (func $g (call $f)))""")
    out = instrument(endless, max_memory_pages=1)
    for name in ("loop", "tail", "mutual"):
        checker = Checker(chunk=1000, stop_after=5)
        store, inst = instantiate(out, checker)
        with pytest.raises(Stop):
            inst.exports(store)[name](store)
        assert checker.fuel_checks == 6


def test_leaf_functions_are_left_alone() -> None:
    """No loop and no call to a defined function: the body is copied unchanged."""
    leaf = wat("""(module (import "env" "double" (func $d (param i32) (result i32)))
      (func (export "f") (param i32) (result i32)
        (call $d (i32.add (local.get 0) (i32.const 1)))))""")
    out = instrument(leaf, max_memory_pages=1)
    original_code = _section_payload(leaf, 10)
    assert _section_payload(out, 10) == original_code


NUMERIC = """(module
  (memory (export "memory") 1)
  (data $d "abcdefgh")
  (func (export "signext") (param i32) (result i32) (i32.extend8_s (local.get 0)))
  (func (export "sat") (param f64) (result i32) (i32.trunc_sat_f64_s (local.get 0)))
  (func (export "typed_select") (param i32) (result i64)
    (select (result i64) (i64.const 5) (i64.const 9) (local.get 0)))
  (func (export "bulk") (result i64)
    (memory.init $d (i32.const 100) (i32.const 0) (i32.const 8))
    (data.drop $d)
    (memory.copy (i32.const 200) (i32.const 100) (i32.const 8))
    (memory.fill (i32.const 204) (i32.const 0x7a) (i32.const 2))
    (i64.load (i32.const 200)))
  (func (export "simd") (param i32) (result i32)
    (v128.store (i32.const 64) (v128.const i32x4 1 2 3 4))
    (i32x4.extract_lane 2
      (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
        (i32x4.add (v128.load (i32.const 64)) (i32x4.splat (local.get 0)))
        (v128.load32_zero (i32.const 64)))))
  (func (export "simd_lane") (result i32)
    (v128.store64_lane 1 (i32.const 300) (v128.load8_lane 15 (i32.const 64) (v128.const i64x2 7 8)))
    (i32.load (i32.const 300)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "size") (result i32) (memory.size))
  (func (export "floats") (param f32 f64) (result f64)
    (f64.add (f64.promote_f32 (f32.mul (local.get 0) (f32.const 1.5))) (f64.const 0.25))))
"""


def test_post_mvp_instructions_behave_the_same(tmp_path: Path) -> None:
    calls = [
        ("signext", [0xFF]),
        ("sat", [1e20]),
        ("typed_select", [0]),
        ("bulk", []),
        ("simd", [10]),
        ("simd_lane", []),
        ("floats", [2.0, 1.0]),
        ("grow", [3]),
        ("size", []),
        ("grow", [100]),  # over the cap of 16 pages on the instrumented side only
    ]
    out = instrument(wat(NUMERIC), max_memory_pages=16)
    validate(out, tmp_path)
    plain_store, plain = instantiate(wat(NUMERIC), None)
    checker = Checker(10)
    inst_store, inst = instantiate(out, checker)
    got = [outcome(inst_store, inst, n, a) for n, a in calls]
    assert got[:9] == [outcome(plain_store, plain, n, a) for n, a in calls[:9]]
    assert got[:4] == [-1, 2147483647, 9, int.from_bytes(b"abcdzzgh", "little")]
    assert got[4:9] == [13, 8, 3.25, 1, 4]
    assert got[9] == -1  # the cap holds
    assert outcome(plain_store, plain, "grow", [100]) == 4  # ...where the original grew
    assert checker.reasons == [REASON_GROWN, REASON_GROW_FAILED]


def _one_instruction_module(instruction: bytes) -> bytes:
    code = b"\x00" + instruction + b"\x0b"
    sections = [
        (1, b"\x01\x60\x00\x00"),  # type () -> ()
        (3, b"\x01\x00"),  # one function
        (5, b"\x01\x00\x01"),  # memory 1
        (10, b"\x01" + _instrument._enc_u32(len(code)) + code),
    ]
    body = b"".join(bytes([i]) + _instrument._enc_u32(len(p)) + p for i, p in sections)
    return b"\x00asm\x01\x00\x00\x00" + body


SIMD_IMMEDIATES = {
    _instrument._S_NONE: b"",
    _instrument._S_MEMARG: b"\x00\x00",
    _instrument._S_MEMARG_LANE: b"\x00\x00\x00",
    _instrument._S_LANE: b"\x00",
    _instrument._S_BYTES16: bytes(16),
}


def test_the_simd_table_matches_wasmtime_and_wabt() -> None:
    """Every 0xFD sub-opcode: wasmtime agrees on whether it exists, wabt on where it ends."""
    known: list[bytes] = []
    for sub in range(0x130):
        kind = _instrument._simd_kind(sub)
        instruction = b"\xfd" + _instrument._enc_u32(sub) + SIMD_IMMEDIATES.get(kind, b"")
        wasm = _one_instruction_module(b"\x00" + instruction)  # after `unreachable`
        try:
            wasmtime.Module.validate(ENGINE, wasm)
            message = ""
        except wasmtime.WasmtimeError as exc:
            message = str(exc)
        assert ("unknown 0xfd subopcode" in message) == (kind == _instrument._UNKNOWN), hex(sub)
        if kind == _instrument._UNKNOWN:
            with pytest.raises(ModuleError, match=f"unknown opcode 0xfd {sub:#x}"):
                instrument(wasm, max_memory_pages=1)
        else:
            known.append(instruction)
    objdump = shutil.which("wasm-objdump")
    if objdump is None:
        pytest.skip("wabt's wasm-objdump is not installed")
    wasm = _one_instruction_module(b"\x00" + b"".join(known))
    instrument(wasm, max_memory_pages=1)  # decodes to the end of the body
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "simd.wasm"
        path.write_bytes(wasm)
        listing = subprocess.run([objdump, "-d", str(path)], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    starts = [
        int(line.split(":")[0], 16)
        for line in listing.stdout.splitlines()
        if line.startswith(" 0") and not line.rstrip().endswith("|")
    ]
    first = wasm.index(b"\x00" + known[0]) + 1
    expected = [first + sum(len(k) for k in known[:n]) for n in range(len(known))]
    assert starts[1:-1] == expected  # between `unreachable` and `end`


def test_atomics_decode(tmp_path: Path) -> None:
    threads = wat("""(module (memory 1 1 shared)
      (func (export "f") (result i32)
        (atomic.fence)
        (drop (memory.atomic.notify (i32.const 0) (i32.const 1)))
        (i32.atomic.rmw.add (i32.const 8) (i32.const 5))))""")
    validate(instrument(threads, max_memory_pages=1), tmp_path)


# --- the caps --------------------------------------------------------------------------------


def _memory_limits(wasm: bytes) -> tuple[int, int | None]:
    memory = wasmtime.Module(ENGINE, wasm).exports[0].type
    assert isinstance(memory, wasmtime.MemoryType)
    return memory.limits.min, memory.limits.max


@pytest.mark.parametrize(
    ("decl", "cap", "expected"),
    [("1", 8, (1, 8)), ("2 4", 8, (2, 4)), ("2 100", 8, (2, 8)), ("8 8", 8, (8, 8))],
)
def test_the_memory_maximum_is_lowered_to_the_cap(
    decl: str, cap: int, expected: tuple[int, int]
) -> None:
    out = instrument(wat(f'(module (memory (export "m") {decl}))'), max_memory_pages=cap)
    assert _memory_limits(out) == expected


def test_an_initial_memory_above_the_cap_is_refused() -> None:
    with pytest.raises(ModuleError, match="initial memory size"):
        instrument(wat("(module (memory 9))"), max_memory_pages=8)


def test_tables_get_a_maximum() -> None:
    out = instrument(
        wat("""(module (table $t 1 funcref)
          (func (export "grow") (param i32) (result i32)
            (table.grow $t (ref.null func) (local.get 0))))"""),
        max_memory_pages=1,
    )
    store, inst = instantiate(out, Checker(10))
    assert outcome(store, inst, "grow", [MAX_TABLE_ELEMENTS]) == -1
    assert outcome(store, inst, "grow", [MAX_TABLE_ELEMENTS - 1]) == 1
    with pytest.raises(ModuleError, match="table size"):
        instrument(wat(f"(module (table {MAX_TABLE_ELEMENTS + 1} funcref))"), max_memory_pages=1)


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ('(module (import "env" "memory" (memory 1)))', "imports its memory"),
        (f'(module (import "{CHECK_MODULE}" "x" (func)))', "reserved namespace"),
        ("(module (memory 1) (memory 1))", "several memories"),
        ("(module (memory i64 1))", "64-bit"),
        ("(module (tag $e) (func (throw $e)))", "exception handling"),
    ],
)
def test_unsupported_modules_are_refused_with_a_reason(module: str, message: str) -> None:
    with pytest.raises(ModuleError, match=message):
        instrument(wat(module), max_memory_pages=1)


def test_an_unknown_opcode_is_named() -> None:
    wasm = bytearray(wat("(module (func nop))"))
    wasm[wasm.rindex(b"\x01\x0b")] = 0xC7  # 0xC7 is not an instruction
    with pytest.raises(ModuleError, match="unknown opcode 0xc7"):
        instrument(bytes(wasm), max_memory_pages=1)


@pytest.mark.parametrize("data", [b"", b"\x00asm", b"\x00asm\x02\x00\x00\x00", b"not wasm at all"])
def test_non_modules_are_refused(data: bytes) -> None:
    with pytest.raises(ModuleError):
        instrument(data, max_memory_pages=1)


@settings(
    derandomize=True, max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.data())
def test_hostile_bytes_give_module_error_or_a_module(data: st.DataObject) -> None:
    """Mutated modules never raise anything but ``ModuleError``; valid ones stay valid."""
    base = bytearray(wat(TABLES) if data.draw(st.booleans()) else wat(LOOPS))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(8, len(base) - 1))
        base[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        base = base[: data.draw(st.integers(8, len(base)))]
    mutated = bytes(base)
    try:
        out = instrument(mutated, max_memory_pages=1)
    except ModuleError:
        return
    try:
        wasmtime.Module.validate(ENGINE, mutated)
    except wasmtime.WasmtimeError:
        return  # garbage in: only the absence of a crash is promised
    wasmtime.Module.validate(ENGINE, out)


# --- byte identity ---------------------------------------------------------------------------


def _custom(name: str, payload: bytes) -> bytes:
    body = _instrument._name(name) + payload
    return b"\x00" + _instrument._enc_u32(len(body)) + body


def _sections(wasm: bytes) -> list[tuple[int, bytes]]:
    rewriter = _instrument._Rewriter(wasm, 1, 0)
    return [(s.id, s.raw) for s in rewriter.sections]


def _custom_names(wasm: bytes) -> list[str]:
    names = []
    for sid, raw in _sections(wasm):
        if sid == 0:
            _, i = _instrument._u32(raw, 1)
            n, i = _instrument._u32(raw, i)
            names.append(raw[i : i + n].decode())
    return names


def _section_payload(wasm: bytes, sid: int) -> bytes:
    rewriter = _instrument._Rewriter(wasm, 1, 0)
    s = rewriter.by_id[sid]
    return wasm[s.start : s.end]


def test_custom_sections_and_data_are_copied_byte_for_byte_and_names_dropped(
    tmp_path: Path,
) -> None:
    base = wat("""(module $named (memory (export "memory") 1)
      (func $f (export "f") (result i32) (i32.load (i32.const 0)))
      (data (i32.const 0) "\\2a\\00\\00\\00"))""")
    assert _custom_names(base) == ["name"]
    header, rest = base[:8], base[8:]
    first = _custom("first", b"\x01\x02")
    last = _custom("producers", b"\x00")
    wasm = header + first + rest + last
    out = instrument(wasm, max_memory_pages=1)
    validate(out, tmp_path)
    sections = _sections(out)
    assert sections[0] == (0, first) and sections[-1] == (0, last)
    assert _custom_names(out) == ["first", "producers"]
    assert _section_payload(out, 11) == _section_payload(wasm, 11)
    ids = [sid for sid, _ in sections if sid]
    assert ids == sorted(ids, key=_instrument._ORDER.__getitem__)
    assert instrument(wasm, max_memory_pages=1) == out  # deterministic
    store, inst = instantiate(out, Checker(5))
    assert outcome(store, inst, "f", []) == 42


# --- a real compiler's output ----------------------------------------------------------------

RUST_LIB = r"""
use std::collections::BTreeMap;

fn fib(n: u32) -> u64 { if n < 2 { n as u64 } else { fib(n - 1) + fib(n - 2) } }

trait Shape { fn area(&self) -> f64; }
struct Square(f64);
struct Circle(f64);
impl Shape for Square { fn area(&self) -> f64 { self.0 * self.0 } }
impl Shape for Circle { fn area(&self) -> f64 { 3.0 * self.0 * self.0 } }

#[no_mangle]
pub extern "C" fn fib_export(n: u32) -> u64 { fib(n) }

#[no_mangle]
pub extern "C" fn shapes(n: u32) -> f64 {
    let mut v: Vec<Box<dyn Shape>> = Vec::new();
    for i in 0..n {
        if i % 2 == 0 { v.push(Box::new(Square(i as f64))) }
        else { v.push(Box::new(Circle(i as f64))) }
    }
    v.iter().map(|s| s.area()).sum()
}

#[no_mangle]
pub extern "C" fn words(n: u32) -> u32 {
    let mut m = BTreeMap::new();
    for i in 0..n { *m.entry(format!("k{}", i % 97)).or_insert(0u32) += i; }
    m.values().fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(*b))
}

#[no_mangle]
pub extern "C" fn alloc_mib(n: u32) -> u32 {
    let v = vec![7u8; (n as usize) << 20];
    v.iter().step_by(4096).map(|b| *b as u32).sum()
}

#[no_mangle]
pub extern "C" fn panics(x: u32) -> u32 { if x > 3 { panic!("too big: {}", x) } x * 2 }
"""

DEBIAN_CARGO = Path("/usr/bin/cargo")
DEBIAN_RUSTC = Path("/usr/bin/rustc")


def _wasm32_std_missing() -> str | None:
    if not DEBIAN_CARGO.exists() or not DEBIAN_RUSTC.exists():
        return "Debian's cargo/rustc are not installed"
    sysroot = subprocess.run(
        [str(DEBIAN_RUSTC), "--print", "sysroot"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not (Path(sysroot) / "lib" / "rustlib" / "wasm32-wasi").is_dir():
        return "the wasm32-wasi standard library (libstd-rust-dev-wasm32) is not installed"
    return None


@pytest.fixture(scope="module")
def rust_module(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    reason = _wasm32_std_missing()
    if reason:
        pytest.skip(reason)
    crate = tmp_path_factory.mktemp("rust-probe")
    (crate / "src").mkdir()
    (crate / "Cargo.toml").write_text(
        '[package]\nname = "probe"\nversion = "0.1.0"\nedition = "2021"\n\n'
        '[lib]\ncrate-type = ["cdylib"]\n\n[profile.release]\nopt-level = 2\n'
    )
    (crate / "src" / "lib.rs").write_text(RUST_LIB)
    env = {
        **os.environ,
        "RUSTC": str(DEBIAN_RUSTC),
        "CARGO_HOME": str(crate / ".cargo-home"),
        "CARGO_TARGET_DIR": str(crate / "target"),
    }
    done = subprocess.run(
        [str(DEBIAN_CARGO), "build", "--release", "--offline", "--target", "wasm32-wasi"],
        cwd=crate,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return (crate / "target" / "wasm32-wasi" / "release" / "probe.wasm").read_bytes()


@pytest.mark.cargo
@pytest.mark.slow
def test_a_rust_cdylib_round_trips(rust_module: bytes, tmp_path: Path) -> None:
    calls: list[tuple[str, Sequence[Any]]] = [
        ("fib_export", [20]),
        ("shapes", [1000]),
        ("words", [3000]),
        ("alloc_mib", [3]),
        ("panics", [2]),
        ("panics", [9]),
    ]
    _, checker, got = same_behaviour(rust_module, calls, tmp_path, chunk=1000, pages=256)
    assert got[:5] == [6765, 666166500.0, got[2], 768 * 7, 4]
    assert got[5][0] == "trap"
    assert checker.fuel_checks > 10
    assert REASON_GROWN in checker.reasons  # the 3 MiB vector grew the memory
