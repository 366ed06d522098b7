"""The wasmer engine adapter on the real engine (wasmer-python 1.1 + Cranelift, Python 3.10).

Limits hold through instrumentation (see docs/engines.md): an endless loop times out, a memory
bomb hits the cap, a stack overflow traps — and the host, and the next instance, live on.
"""

from __future__ import annotations

import gc
import os
import subprocess
import threading
from pathlib import Path

import pytest

wasmer = pytest.importorskip("wasmer")

from vultrino.errors import (  # noqa: E402 - after the importorskip
    EngineError,
    ModuleError,
    PluginABIError,
    PluginMemoryError,
    PluginTimeoutError,
    PluginTrapError,
)
from vultrino.runtime import _instrument  # noqa: E402
from vultrino.runtime.engine import (  # noqa: E402
    MIB,
    FuncType,
    GuestExit,
    HostFunc,
    Instance,
    Limits,
    Memory,
)
from vultrino.runtime.wasmer import WasmerEngine  # noqa: E402

pytestmark = pytest.mark.wasmer

LIMITS = Limits(deadline_s=0.3, memory_bytes=4 * MIB)

GUEST = """(module
  (import "env" "log" (func $log (param i32 i32)))
  (import "env" "add" (func $add (param i32 i64) (result i64)))
  (import "env" "exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (global $counter (mut i32) (i32.const 0))
  (data (i32.const 0) "hello from wasm")
  (func (export "spin") (loop (br 0)))
  (func (export "spin_calls") (loop (call $step) (br 0)))
  (func $step (global.set $counter (i32.add (global.get $counter) (i32.const 1))))
  (func (export "count") (param $n i32) (result i32) (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
             (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $i))
  (func $rec (export "recurse") (param i32) (result i32)
    (i32.add (call $rec (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "bomb")
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable)
  (func (export "big_bomb") (result i32)
    (if (i32.eq (memory.grow (i32.const 1000)) (i32.const -1)) (then unreachable))
    (i32.const 0))
  (func (export "bomb_then_spin") (drop (memory.grow (i32.const 1000))) (loop (br 0)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "trap") unreachable)
  (func (export "div") (param i32) (result i32) (i32.div_u (i32.const 7) (local.get 0)))
  (func (export "hello") (call $log (i32.const 0) (i32.const 15)))
  (func (export "add") (param i32 i64) (result i64) (call $add (local.get 0) (local.get 1)))
  (func (export "exit") (call $exit (i32.const 3)))
  (func (export "sum") (param $p i32) (param $n i32) (result i32) (local $acc i32)
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $acc (i32.add (local.get $acc) (i32.load8_u (local.get $p))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $acc)))
"""


class Host:
    """The host functions GUEST imports, recording what they saw."""

    def __init__(self) -> None:
        self.logs: list[bytes] = []

    def funcs(self) -> list[HostFunc]:
        return [
            HostFunc("env", "log", FuncType(("i32", "i32"), ()), self.log),
            HostFunc("env", "add", FuncType(("i32", "i64"), ("i64",)), self.add),
            HostFunc("env", "exit", FuncType(("i32",), ()), self.exit),
        ]

    def log(self, memory: Memory, ptr: int, length: int) -> None:
        self.logs.append(memory.read(ptr, length))

    @staticmethod
    def add(memory: Memory, a: int, b: int) -> int:
        assert memory.size() == 65536
        return a + b

    @staticmethod
    def exit(memory: Memory, code: int) -> None:
        raise GuestExit(code)


@pytest.fixture(scope="module")
def engine() -> WasmerEngine:
    return WasmerEngine()


@pytest.fixture(scope="module")
def compiled(engine: WasmerEngine) -> object:
    return engine.compile(wasmer.wat2wasm(GUEST), LIMITS)


def fresh(engine: WasmerEngine, compiled: object, host: Host | None = None) -> Instance:
    return engine.instantiate(compiled, (host or Host()).funcs(), LIMITS)


def test_engine_identity(engine: WasmerEngine) -> None:
    assert engine.name == "wasmer"
    assert engine.version.startswith(wasmer.__version__)
    fp = engine.fingerprint(LIMITS)
    assert f"instrument-{_instrument.INSTRUMENT_VERSION}" in fp and "pages-64" in fp
    assert engine.fingerprint(Limits(memory_bytes=8 * MIB)) != fp  # the cap is compiled in
    assert engine.fingerprint(Limits(deadline_s=1, memory_bytes=4 * MIB)) == fp


def test_shape_is_the_original_modules(engine: WasmerEngine, compiled: object) -> None:
    shape = engine.shape(compiled)
    assert [(i.module, i.name) for i in shape.imports] == [
        ("env", "log"),
        ("env", "add"),
        ("env", "exit"),
    ]
    assert shape.imports[1].type == FuncType(("i32", "i64"), ("i64",))
    memory = shape.export("memory")
    assert memory is not None and memory.kind == "memory"
    add = shape.export("add")
    assert add is not None and add.kind == "func" and add.type == FuncType(("i32", "i64"), ("i64",))
    assert not any(e.name.startswith("vultrino") for e in shape.exports)


def test_host_functions_are_wired(engine: WasmerEngine, compiled: object) -> None:
    host = Host()
    inst = fresh(engine, compiled, host)
    inst.export("hello")()
    assert host.logs == [b"hello from wasm"]
    assert inst.export("add")(2, 40) == 42
    assert inst.export("count")(1000) == 1000
    assert inst.export("missing") is None
    assert inst.export("memory") is None  # not a function


def test_memory_read_write_and_bounds(engine: WasmerEngine, compiled: object) -> None:
    inst = fresh(engine, compiled)
    mem = inst.memory
    assert mem.size() == 65536
    assert mem.read(0, 5) == b"hello"
    mem.write(100, bytes([1, 2, 3, 250]))
    assert inst.export("sum")(100, 4) == 256
    for ptr, length in ((65530, 7), (-1, 1), (0, -1), (1 << 40, 1)):
        with pytest.raises(PluginABIError, match="outside its memory"):
            mem.read(ptr, length)
    with pytest.raises(PluginABIError):
        mem.write(65535, b"xy")
    # after the guest grows its memory, the host sees (and can write) the new pages
    assert inst.export("grow")(2) == 1
    assert mem.size() == 3 * 65536
    mem.write(3 * 65536 - 3, b"end")
    assert mem.read(3 * 65536 - 3, 3) == b"end"
    assert inst.export("sum")(3 * 65536 - 3, 3) == sum(b"end")
    view = inst.memory.view(3 * 65536 - 3, 3)  # type: ignore[attr-defined]
    assert bytes(view) == b"end"
    with pytest.raises(PluginABIError):
        inst.memory.view(3 * 65536 - 3, 4)  # type: ignore[attr-defined]


def test_modules_are_bound_to_their_thread(engine: WasmerEngine, compiled: object) -> None:
    """wasmer-python panics when a module crosses threads; the adapter says so first, and the
    serialized artifact loads on any thread."""
    assert engine.capabilities.thread_affinity is True
    data = engine.serialize(compiled)
    seen: dict[str, object] = {}

    def elsewhere() -> None:
        try:
            engine.instantiate(compiled, Host().funcs(), LIMITS)
        except EngineError as exc:
            seen["error"] = exc
        again = engine.deserialize(data)
        seen["answer"] = engine.instantiate(again, Host().funcs(), LIMITS).export("add")(1, 2)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert "thread" in str(seen["error"])
    assert seen["answer"] == 3


def test_endless_loop_times_out_and_the_next_instance_works(
    engine: WasmerEngine, compiled: object
) -> None:
    for name in ("spin", "spin_calls"):
        inst = fresh(engine, compiled)
        inst.set_deadline(0.2)
        with pytest.raises(PluginTimeoutError, match="deadline"):
            inst.export(name)()
        inst.close()
    inst = fresh(engine, compiled)
    assert inst.export("count")(10_000) == 10_000


def test_the_deadline_restarts_with_set_deadline(engine: WasmerEngine, compiled: object) -> None:
    inst = fresh(engine, compiled)
    inst.set_deadline(60.0)
    assert inst.export("count")(3_000_000) == 3_000_000
    inst.set_deadline(0.05)
    with pytest.raises(PluginTimeoutError):
        inst.export("spin")()


def test_memory_bombs_hit_the_cap(engine: WasmerEngine, compiled: object) -> None:
    for name in ("bomb", "big_bomb", "bomb_then_spin"):
        inst = fresh(engine, compiled)
        with pytest.raises(PluginMemoryError, match="4 MiB"):
            inst.export(name)()
        assert inst.memory.size() <= LIMITS.memory_bytes
    inst = fresh(engine, compiled)
    assert inst.export("grow")(63) == 1  # up to the cap is fine
    assert inst.export("grow")(1) == -1


def test_stack_overflow_traps_with_a_short_message(engine: WasmerEngine, compiled: object) -> None:
    inst = fresh(engine, compiled)
    with pytest.raises(PluginTrapError, match="overflowed its stack") as info:
        inst.export("recurse")(0)
    assert len(str(info.value)) < 300 and "\n" not in str(info.value)
    assert fresh(engine, compiled).export("count")(5) == 5


def test_traps_and_guest_exit(engine: WasmerEngine, compiled: object) -> None:
    inst = fresh(engine, compiled)
    with pytest.raises(PluginTrapError, match="unreachable"):
        inst.export("trap")()
    with pytest.raises(PluginTrapError, match=r"divide by zero|division"):
        fresh(engine, compiled).export("div")(0)
    with pytest.raises(PluginTrapError, match="guest exited with code 3"):
        fresh(engine, compiled).export("exit")()


def test_host_function_errors_reach_the_caller_unchanged(
    engine: WasmerEngine, compiled: object
) -> None:
    """A guest asking the host to log from a bad pointer gets the host's PluginABIError."""
    host = Host()
    guest = wasmer.wat2wasm("""(module (import "env" "log" (func $log (param i32 i32)))
      (memory (export "memory") 1)
      (func (export "bad") (call $log (i32.const 65000) (i32.const 1000))))""")
    bad = engine.instantiate(engine.compile(guest, LIMITS), host.funcs()[:1], LIMITS)
    with pytest.raises(PluginABIError, match="outside its memory"):
        bad.export("bad")()


def test_serialize_round_trip(engine: WasmerEngine, compiled: object) -> None:
    data = engine.serialize(compiled)
    again = engine.deserialize(data)
    assert engine.shape(again) == engine.shape(compiled)
    host = Host()
    inst = engine.instantiate(again, host.funcs(), LIMITS)
    inst.export("hello")()
    assert host.logs == [b"hello from wasm"]
    inst.set_deadline(0.1)
    with pytest.raises(PluginTimeoutError):
        inst.export("spin")()  # the instrumentation survives serialization
    with pytest.raises(PluginMemoryError):
        engine.instantiate(again, Host().funcs(), LIMITS).export("bomb")()


def test_garbage_artifacts_are_module_errors(engine: WasmerEngine, compiled: object) -> None:
    data = engine.serialize(compiled)
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x01
    other_cap = bytearray(data)
    other_cap[16] ^= 0x01  # the page count in the envelope
    for junk in (b"", b"garbage" * 100, data[:100], data[:-1], bytes(flipped), bytes(other_cap)):
        with pytest.raises(ModuleError):
            engine.deserialize(junk)


def test_bad_modules_are_module_errors(engine: WasmerEngine) -> None:
    with pytest.raises(ModuleError, match="not a WebAssembly module"):
        engine.compile(b"(module)", LIMITS)
    with pytest.raises(ModuleError, match="not valid WebAssembly"):
        engine.compile(b"\x00asm\x01\x00\x00\x00\x01\x05", LIMITS)
    with pytest.raises(ModuleError, match="initial memory"):
        engine.compile(wasmer.wat2wasm("(module (memory 65))"), LIMITS)
    with pytest.raises(ModuleError, match="imports its memory"):
        engine.compile(wasmer.wat2wasm('(module (import "env" "m" (memory 1)))'), LIMITS)


def test_instantiation_errors(engine: WasmerEngine, compiled: object) -> None:
    with pytest.raises(ModuleError, match="cannot be instantiated"):
        engine.instantiate(compiled, [], LIMITS)  # the env imports are missing
    with pytest.raises(ModuleError, match="memory cap"):
        engine.instantiate(compiled, Host().funcs(), Limits(memory_bytes=8 * MIB))
    looping_start = wasmer.wat2wasm("(module (func $s (loop (br 0))) (start $s))")
    with pytest.raises(PluginTimeoutError, match="start function"):
        engine.instantiate(engine.compile(looping_start, LIMITS), [], LIMITS)
    trapping_start = wasmer.wat2wasm("(module (func $s unreachable) (start $s))")
    with pytest.raises(PluginTrapError, match="start function: unreachable"):
        engine.instantiate(engine.compile(trapping_start, LIMITS), [], LIMITS)


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


def test_dropped_instances_release_their_memory(engine: WasmerEngine, compiled: object) -> None:
    """wasmer holds host functions where the GC cannot see; nothing there may point back at
    the instance, or every instance (and its multi-GiB reservation) would live forever."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the address-space size")
    gc.collect()
    before = _address_space()
    for _ in range(8):
        inst = fresh(engine, compiled)
        inst.export("hello")()
        assert inst.export("grow")(1) == 1  # the memory-grown callback ran
        del inst  # dropped without close(), as a crashed caller would
    gc.collect()
    assert _address_space() - before < 2 * 1024**3  # one instance reserves several GiB


def test_close_is_idempotent(engine: WasmerEngine, compiled: object) -> None:
    inst = fresh(engine, compiled)
    inst.close()
    inst.close()
    assert inst.export("count") is None
    with pytest.raises(PluginABIError):
        inst.memory.read(0, 1)
    engine.close()


# --- real compiler output --------------------------------------------------------------------

RUST_LIB = r"""
#[no_mangle]
pub extern "C" fn alloc(len: usize) -> *mut u8 {
    let mut v = Vec::<u8>::with_capacity(len);
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

#[no_mangle]
pub extern "C" fn checksum(p: *const u8, len: usize) -> u32 {
    let s = unsafe { std::slice::from_raw_parts(p, len) };
    s.iter().fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(*b as u32))
}

#[no_mangle]
pub extern "C" fn hog(mib: usize) -> usize { let v = vec![1u8; mib << 20]; v.len() }

#[no_mangle]
pub extern "C" fn spin(n: u64) -> u64 {
    let mut a = 0u64;
    let mut i = 0;
    while i < n { a = a.wrapping_mul(6364136223846793005).wrapping_add(i); i += 1; }
    a
}
"""


@pytest.fixture(scope="module")
def rust_wasm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    cargo, rustc = Path("/usr/bin/cargo"), Path("/usr/bin/rustc")
    if not cargo.exists() or not rustc.exists():
        pytest.skip("Debian's cargo/rustc are not installed")
    sysroot = subprocess.run(
        [str(rustc), "--print", "sysroot"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not (Path(sysroot) / "lib" / "rustlib" / "wasm32-wasi").is_dir():
        pytest.skip("the wasm32-wasi standard library is not installed")
    crate = tmp_path_factory.mktemp("rust-wasmer")
    (crate / "src").mkdir()
    (crate / "Cargo.toml").write_text(
        '[package]\nname = "guest"\nversion = "0.1.0"\nedition = "2021"\n\n'
        '[lib]\ncrate-type = ["cdylib"]\n\n[profile.release]\npanic = "abort"\n'
    )
    (crate / "src" / "lib.rs").write_text(RUST_LIB)
    env = {**os.environ, "RUSTC": str(rustc), "CARGO_HOME": str(crate / ".cargo-home")}
    done = subprocess.run(
        [str(cargo), "build", "--release", "--offline", "--target", "wasm32-wasi"],
        cwd=crate,
        env={**env, "CARGO_TARGET_DIR": str(crate / "target")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return (crate / "target" / "wasm32-wasi" / "release" / "guest.wasm").read_bytes()


def wasi_stubs(engine: WasmerEngine, wasm: bytes) -> list[HostFunc]:
    """The WASI functions the module imports: an empty environment, ENOSYS (52) for the rest."""
    shape = engine.shape(engine.compile(wasm, LIMITS))

    def sizes(memory: Memory, count_ptr: int, size_ptr: int) -> int:
        memory.write(count_ptr, bytes(4))
        memory.write(size_ptr, bytes(4))
        return 0

    def empty(memory: Memory, *args: int) -> int:
        return 0

    def enosys(memory: Memory, *args: int) -> int:
        return 52

    def proc_exit(memory: Memory, code: int) -> None:
        raise GuestExit(code)

    special = {
        "environ_sizes_get": sizes,
        "args_sizes_get": sizes,
        "environ_get": empty,
        "args_get": empty,
        "proc_exit": proc_exit,
    }
    out = []
    for imp in shape.imports:
        assert imp.module == "wasi_snapshot_preview1" and imp.type is not None
        out.append(HostFunc(imp.module, imp.name, imp.type, special.get(imp.name, enosys)))
    return out


@pytest.mark.cargo
@pytest.mark.slow
def test_a_rust_module_runs_within_its_limits(engine: WasmerEngine, rust_wasm: bytes) -> None:
    compiled = engine.compile(rust_wasm, LIMITS)
    host = wasi_stubs(engine, rust_wasm)
    inst = engine.instantiate(compiled, host, LIMITS)
    data = os.urandom(100_000)
    ptr = inst.export("alloc")(len(data))  # grows the memory past its initial size
    inst.memory.write(ptr, data)
    expected = 7
    for b in data:
        expected = (expected * 31 + b) & 0xFFFFFFFF
    assert inst.export("checksum")(ptr, len(data)) & 0xFFFFFFFF == expected
    assert inst.export("hog")(1) == MIB
    with pytest.raises(PluginMemoryError):
        inst.export("hog")(8)  # over the 4 MiB cap: Rust's allocator aborts
    inst = engine.instantiate(compiled, host, LIMITS)
    assert inst.export("spin")(1000) & 0xFFFFFFFFFFFFFFFF == _spin(1000)
    inst.set_deadline(0.2)
    with pytest.raises(PluginTimeoutError):
        inst.export("spin")(1 << 62)


def _spin(n: int) -> int:
    a = 0
    for i in range(n):
        a = (a * 6364136223846793005 + i) & 0xFFFFFFFFFFFFFFFF
    return a
