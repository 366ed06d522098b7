"""The wasmtime adapter for core modules (with ``_component.py``, the only home of wasmtime).

Limits: the wall-clock deadline uses *epoch interruption* — one ticker thread per engine bumps
the engine's epoch every few milliseconds and compiled code checks it at function entries and
loop heads; a store whose call has run past its deadline traps. Memory is capped with
``Store.set_limits`` (``memory.grow`` fails past the cap) and the store may hold one instance and
one memory. The engine is built with ``memory_may_move = False``: a linear memory never moves
once created, so a cached pointer to its base stays valid while it grows.

Two call paths implement the same :class:`~vultrino.runtime.engine.Instance`:

* the **fast path** (default on the verified wasmtime release) calls wasmtime's C API through
  the ctypes bindings the package already loads: ``wasmtime_func_call_unchecked`` with cached
  function handles and one preallocated argument array, a ``memoryview`` over the linear memory,
  host functions defined with ``wasmtime_linker_define_func_unchecked`` and an epoch-deadline
  callback, so starting a call costs one attribute store instead of a C call. A warm ABI 2 call
  costs a few microseconds; wasmtime-py's ``Func.__call__`` alone costs ~40.
* the **public path** uses only wasmtime-py's public API. It is chosen when
  ``VULTRINO_WASMTIME_FASTPATH=0``, when the installed wasmtime is not the verified release
  (:data:`VERIFIED_VERSION`; ``VULTRINO_WASMTIME_FASTPATH=1`` overrides that), or when the fast
  path's self-test fails. Both paths pass the same conformance suite.

Engine exceptions never leave this module: they become :mod:`vultrino.errors` types. Engine
messages (which can carry a backtrace of thousands of frames) are cut to one short line.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import logging
import math
import os
import struct
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, NoReturn, cast

import wasmtime
import wasmtime._bindings as _b
from wasmtime import _ffi as ffi

from vultrino.errors import (
    EngineUnavailableError,
    ModuleError,
    PluginABIError,
    PluginTimeoutError,
    PluginTrapError,
)
from vultrino.runtime.engine import (
    MAX_TABLE_ELEMENTS,
    MAX_TABLES,
    MIB,
    WASM_PAGE,
    EngineCapabilities,
    ExportDesc,
    ExternKind,
    FuncType,
    GuestExit,
    HostFunc,
    ImportDesc,
    Limits,
    ModuleShape,
    ValType,
)

if TYPE_CHECKING:
    from vultrino.runtime.wasmtime._component import WasmtimeComponentEngine

__all__ = ["ENV_FASTPATH", "VERIFIED_VERSION", "Ticker", "WasmtimeEngine"]

log = logging.getLogger("vultrino.runtime.wasmtime")

#: The wasmtime-py release whose C-API bindings the fast path was verified against.
VERIFIED_VERSION: Final = "50.0.1"
ENV_FASTPATH: Final = "VULTRINO_WASMTIME_FASTPATH"

_M32 = 0xFFFF_FFFF

_TRAP_NAMES: Final[dict[str, str]] = {
    "STACK_OVERFLOW": "stack overflow (the guest recursed too deeply)",
    "MEMORY_OUT_OF_BOUNDS": "out-of-bounds memory access",
    "HEAP_MISALIGNED": "misaligned memory access",
    "TABLE_OUT_OF_BOUNDS": "out-of-bounds table access",
    "INDIRECT_CALL_TO_NULL": "indirect call to a null table entry",
    "BAD_SIGNATURE": "indirect call with the wrong signature",
    "INTEGER_OVERFLOW": "integer overflow",
    "INTEGER_DIVISION_BY_ZERO": "integer division by zero",
    "BAD_CONVERSION_TO_INTEGER": "invalid conversion to integer",
    "UNREACHABLE": (
        "`unreachable` executed (the guest panicked or aborted; its stderr is in the plugin log)"
    ),
}
_TIMEOUT_NAMES: Final = frozenset({"INTERRUPT", "OUT_OF_FUEL"})


def _installed_version() -> str:
    try:
        return importlib.metadata.version("wasmtime")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - vendored copies
        return "unknown"


def _short(message: str, limit: int = 200) -> str:
    """One useful line of an engine message: the ``wasm trap:`` line or the last line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    pick = next((line for line in lines if line.startswith("wasm trap:")), None)
    if pick is None:
        pick = lines[-1] if lines else "unknown engine error"
    pick = pick.removeprefix("wasm trap: ")
    return pick if len(pick) <= limit else pick[: limit - 3] + "..."


# --- the engine --------------------------------------------------------------------------------


class Ticker:
    """One thread per engine that advances the epoch while any instance exists.

    Every store of the engine — a core module's or a component's — takes a ticket with
    :meth:`acquire` for as long as it lives and sets its epoch deadline in :meth:`ticks`.

    The period is a twentieth of the shortest deadline among live instances (at most 100 ms,
    at least 1 ms): a call is interrupted at most one period after its deadline, and an idle
    process with plugins loaded wakes about ten times a second.
    """

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._deadlines: list[float] = []
        self._stop: threading.Event | None = None
        self.period = 0.1

    def acquire(self, deadline_s: float) -> None:
        with self._lock:
            self._deadlines.append(deadline_s)
            self._retune()
            if self._stop is None:
                self._stop = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="vultrino-epoch", daemon=True
                )
                thread.start()

    def release(self, deadline_s: float) -> None:
        with self._lock:
            if deadline_s in self._deadlines:
                self._deadlines.remove(deadline_s)
            self._retune()
            if not self._deadlines and self._stop is not None:
                self._stop.set()
                self._stop = None

    def _retune(self) -> None:
        shortest = min(self._deadlines, default=2.0)
        self.period = min(0.1, max(0.001, shortest / 20))

    def ticks(self, seconds: float) -> int:
        """Epoch ticks that cover ``seconds`` (for the public path's per-call deadline)."""
        return math.ceil(seconds / self.period) + 1

    def _run(self, stop: threading.Event) -> None:
        engine = self._engine  # keeps the engine alive as long as this thread runs
        while not stop.wait(self.period):
            engine.increment_epoch()


class WasmtimeEngine:
    """The default engine. ``fastpath`` None follows ``VULTRINO_WASMTIME_FASTPATH`` and the
    version check; True/False forces a path (True still falls back if the self-test fails).

    What the component engine of this package builds on (its interface here, nothing private):
    :attr:`wasmtime_engine`, the configured ``wasmtime.Engine`` every store is made from, and
    :attr:`ticker`, the epoch ticker that enforces every store's deadline.
    """

    name = "wasmtime"
    wasmtime_engine: wasmtime.Engine
    ticker: Ticker
    capabilities: EngineCapabilities

    def __init__(self, *, fastpath: bool | None = None) -> None:
        self.version = _installed_version()
        config = wasmtime.Config()
        config.epoch_interruption = True
        try:  # knobs a future wasmtime-py might rename; only the fast path needs the first
            config.memory_may_move = False
            self._static_memory = True
        except AttributeError:  # pragma: no cover - other releases
            self._static_memory = False
        with contextlib.suppress(AttributeError):
            config.wasm_threads = False
            config.shared_memory = False
        try:
            self.wasmtime_engine = wasmtime.Engine(config)
        except wasmtime.WasmtimeError as exc:
            raise EngineUnavailableError(f"wasmtime cannot start: {_short(str(exc))}") from exc
        self.ticker = Ticker(self.wasmtime_engine)
        self._helpers: dict[str, wasmtime.Module] = {}
        self._components: WasmtimeComponentEngine | None = None
        self._closed = False
        self.fastpath = self._choose_path(fastpath)
        # Only the fast path's instances attach the fused-call helper.
        self.capabilities = EngineCapabilities(components=True, fused_call=self.fastpath)

    def _helper(self, wat: str) -> wasmtime.Module:
        """A host helper module, compiled once per engine (a race compiles it twice)."""
        module = self._helpers.get(wat)
        if module is None:
            try:
                module = wasmtime.Module(self.wasmtime_engine, wat)
            except wasmtime.WasmtimeError as exc:
                raise ModuleError(f"a host helper does not compile: {_short(str(exc))}") from None
            self._helpers[wat] = module
        return module

    # -- path selection --

    def _choose_path(self, wanted: bool | None) -> bool:
        env = os.environ.get(ENV_FASTPATH, "").strip()
        if wanted is None:
            if env == "0":
                return False
            if env != "1" and self.version != VERIFIED_VERSION:
                log.info(
                    "wasmtime %s is not the verified %s; using the public-API call path",
                    self.version,
                    VERIFIED_VERSION,
                )
                return False
        elif not wanted:
            return False
        try:
            _FastPath.self_test(self)
        except Exception as exc:  # any failure means: do not trust the fast path
            log.warning("wasmtime fast path unavailable (%s); using the public API", exc)
            return False
        return True

    # -- Engine protocol --

    def fingerprint(self, limits: Limits) -> str:
        # Limits are enforced by the store, not compiled in; only the config matters.
        return "config=epoch,static-memory,no-threads;v1"

    def compile(self, wasm: bytes, limits: Limits) -> object:
        try:
            return wasmtime.Module(self.wasmtime_engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"the module does not compile: {_short(str(exc), 400)}") from None

    def shape(self, native: object) -> ModuleShape:
        module = _module(native)
        imports = tuple(
            ImportDesc(i.module, i.name or "", *_extern(i.type)) for i in module.imports
        )
        exports = tuple(ExportDesc(e.name, *_extern(e.type)) for e in module.exports)
        return ModuleShape(imports, exports)

    def serialize(self, native: object) -> bytes:
        return bytes(_module(native).serialize())

    def deserialize(self, data: bytes) -> object:
        try:
            if self.fastpath:
                return _deserialize_in_place(self.wasmtime_engine, data)
            return wasmtime.Module.deserialize(self.wasmtime_engine, data)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"wasmtime rejected a cached module: {_short(str(exc))}") from None

    def instantiate(
        self, native: object, host: Sequence[HostFunc], limits: Limits
    ) -> _FastInstance | _PublicInstance:
        if self._closed:
            raise ModuleError("the wasmtime engine is closed")
        cls = _FastInstance if self.fastpath else _PublicInstance
        return cls(self, _module(native), host, limits)

    def components(self) -> WasmtimeComponentEngine:
        """The component engine on this engine (made once; a race makes it twice)."""
        components = self._components
        if components is None:
            from vultrino.runtime.wasmtime._component import WasmtimeComponentEngine

            components = self._components = WasmtimeComponentEngine(self)
        return components

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> WasmtimeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _deserialize_in_place(engine: wasmtime.Engine, data: bytes) -> wasmtime.Module:
    """``Module.deserialize`` without its extra copy: wasmtime reads ``data`` where it lies."""
    data = bytes(data)
    ptr = ctypes.cast(ctypes.c_char_p(data), ctypes.POINTER(ctypes.c_uint8))
    out = ctypes.POINTER(ffi.wasmtime_module_t)()
    error = ffi.wasmtime_module_deserialize(engine.ptr(), ptr, len(data), ctypes.byref(out))
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
    return wasmtime.Module._from_ptr(out)


def _module(native: object) -> wasmtime.Module:
    if not isinstance(native, wasmtime.Module):
        raise TypeError("not a wasmtime module")
    return native


def _valtype(vt: wasmtime.ValType) -> ValType:
    text = str(vt)
    return {"anyref": "externref"}.get(text, text)  # type: ignore[return-value]


def _functype(ft: wasmtime.FuncType) -> FuncType:
    return FuncType(tuple(map(_valtype, ft.params)), tuple(map(_valtype, ft.results)))


def _extern(t: object) -> tuple[ExternKind, FuncType | None]:
    if isinstance(t, wasmtime.FuncType):
        return "func", _functype(t)
    if isinstance(t, wasmtime.MemoryType):
        return "memory", None
    if isinstance(t, wasmtime.TableType):
        return "table", None
    if isinstance(t, wasmtime.GlobalType):
        return "global", None
    return "tag", None


def _wasm_functype(ft: FuncType) -> wasmtime.FuncType:
    make = {
        "i32": wasmtime.ValType.i32,
        "i64": wasmtime.ValType.i64,
        "f32": wasmtime.ValType.f32,
        "f64": wasmtime.ValType.f64,
    }
    try:
        return wasmtime.FuncType([make[p]() for p in ft.params], [make[r]() for r in ft.results])
    except KeyError as exc:
        raise ModuleError(f"host functions cannot take or return {exc.args[0]}") from None


# --- shared instance logic ---------------------------------------------------------------------


class _BaseInstance:
    """What both call paths share: the store, its limits, and error translation."""

    def __init__(self, engine: WasmtimeEngine, limits: Limits) -> None:
        self._engine = engine
        self._limits = limits
        self._store = wasmtime.Store(engine.wasmtime_engine)
        self._set_limits(1, 1, 0)
        self._pending: BaseException | None = None
        self._timed_out = False
        self._deadline_s = limits.deadline_s
        self.poisoned = False
        self.closed = False
        engine.ticker.acquire(limits.deadline_s)
        # released by close(), or when a forgotten instance is collected
        self._ticket = weakref.finalize(self, engine.ticker.release, limits.deadline_s)

    def _set_limits(self, instances: int, memories: int, host_tables: int) -> None:
        """The store's limits: ``instances`` instances and ``memories`` memories in all, the
        guest's own being one of each (so a module cannot bring a second memory past the cap),
        the rest the host's. Tables are outside the memory cap: the guest may have at most
        ``MAX_TABLES`` of ``MAX_TABLE_ELEMENTS`` entries, besides ``host_tables`` of the
        host's (one slot each)."""
        self._store.set_limits(
            memory_size=self._limits.memory_bytes,
            table_elements=MAX_TABLE_ELEMENTS,
            instances=instances,
            tables=MAX_TABLES + host_tables,
            memories=memories,
        )

    def _instantiate(self, linker: wasmtime.Linker, module: wasmtime.Module) -> wasmtime.Instance:
        try:
            return linker.instantiate(self._store, module)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            if self._pending is None and not self._timed_out and not isinstance(exc, wasmtime.Trap):
                self._release()
                text = _short(str(exc), 400)
                if "table" in text:
                    text += (
                        f" (a plugin may have {MAX_TABLES} tables of at most "
                        f"{MAX_TABLE_ELEMENTS} elements)"
                    )
                elif "memory count" in text:
                    text += " (a plugin may have one memory)"
                elif "memory" in text and ("limit" in text or "minimum" in text):
                    cap = self._limits.memory_bytes
                    text += f" (limits.memory_bytes caps memory at {cap // MIB} MiB)"
                raise ModuleError(f"the module cannot be instantiated: {text}") from None
            self._release()
            raise self._translate(exc) from None
        except BaseException:
            self._release()
            raise

    def _translate(self, exc: BaseException) -> BaseException:
        """The Vultrino error for a failed call (pending host exceptions win)."""
        self.poisoned = True
        pending, self._pending = self._pending, None
        if pending is not None:
            return pending
        if self._timed_out:
            return PluginTimeoutError(f"the call ran past its {self._deadline_s:g} s deadline")
        code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
        name = getattr(code, "name", "")
        if name in _TIMEOUT_NAMES:
            return PluginTimeoutError(f"the call ran past its {self._deadline_s:g} s deadline")
        text = _TRAP_NAMES.get(name) or _short(str(exc))
        return PluginTrapError(f"the guest trapped: {text}")

    def _release(self) -> None:
        self._ticket()

    def _close_store(self) -> None:
        self.closed = True
        self._release()
        self._store.close()


# --- the public-API path -----------------------------------------------------------------------


class _HostAbortError(Exception):
    """Raised through wasmtime-py to unwind a call; the real exception is kept on the instance."""


class _PublicMemory:
    def __init__(
        self, store: wasmtime.Store | wasmtime.Caller, memory: wasmtime.Memory | None
    ) -> None:
        self._store = store
        self._memory = memory

    def size(self) -> int:
        return 0 if self._memory is None else self._memory.data_len(self._store)

    def read(self, ptr: int, length: int) -> bytes:
        _bounds(ptr, length, self.size())
        if length == 0:
            return b""
        assert self._memory is not None
        return bytes(self._memory.read(self._store, ptr, ptr + length))

    def write(self, ptr: int, data: bytes) -> None:
        _bounds(ptr, len(data), self.size())
        if data:
            assert self._memory is not None
            self._memory.write(self._store, bytearray(data), ptr)

    view = read  # wasmtime-py's public API only copies


def _bounds(ptr: int, length: int, size: int) -> None:
    if ptr < 0 or length < 0 or ptr + length > size:
        raise PluginABIError(
            f"{length} bytes at {ptr:#x} lie outside the guest's memory ({size} bytes)"
        )


class _PublicInstance(_BaseInstance):
    """wasmtime-py's public API only."""

    def __init__(
        self,
        engine: WasmtimeEngine,
        module: wasmtime.Module,
        host: Sequence[HostFunc],
        limits: Limits,
    ) -> None:
        super().__init__(engine, limits)
        self.set_deadline(limits.deadline_s)
        linker = wasmtime.Linker(engine.wasmtime_engine)
        for hf in host:
            linker.define_func(
                hf.module, hf.name, _wasm_functype(hf.type), self._host(hf), access_caller=True
            )
        instance = self._instantiate(linker, module)
        exports = instance.exports(self._store)
        mem = exports.get("memory")
        self.memory = _PublicMemory(self._store, mem if isinstance(mem, wasmtime.Memory) else None)
        self._funcs = {k: v for k, v in exports.items() if isinstance(v, wasmtime.Func)}

    def _host(self, hf: HostFunc) -> Callable[..., Any]:
        fn = hf.fn
        result_kind = hf.type.results[0] if hf.type.results else None

        def call(caller: wasmtime.Caller, *args: Any) -> Any:
            try:
                mem = caller.get("memory")
                memory = _PublicMemory(caller, mem if isinstance(mem, wasmtime.Memory) else None)
                result = fn(memory, *args)
                return None if result_kind is None else _as_signed(result, result_kind)
            except BaseException as exc:
                self._pending = exc
                raise _HostAbortError(hf.name) from None

        return call

    def export(self, name: str) -> Callable[..., int | None] | None:
        func = self._funcs.get(name)
        if func is None:
            return None
        store = self._store
        kinds = _functype(func.type(store)).params

        def call(*args: int) -> int | None:
            if self.closed:
                raise PluginTrapError("the instance is closed")
            try:
                signed = (_as_signed(v, k) for v, k in zip(args, kinds, strict=False))
                result: int | None = func(store, *signed)
            except Exception as exc:  # wasmtime errors and host aborts alike
                raise self._translate(exc) from None
            return result

        return call

    def set_deadline(self, seconds: float) -> None:
        self._deadline_s = seconds
        self._store.set_epoch_deadline(self._engine.ticker.ticks(seconds))

    def attach(self, wat: str, imports: Sequence[str], reroute: Sequence[str] = ()) -> NoReturn:
        raise ModuleError("host helpers need the wasmtime fast path (fused_call)")

    def close(self) -> None:
        if not self.closed:
            self._funcs = {}
            self.memory = _PublicMemory(self._store, None)
            self._close_store()


# --- the fast path -----------------------------------------------------------------------------

_FORMAT: Final = {"i32": "i12x", "i64": "q8x", "f32": "f12x", "f64": "d8x"}
_FIELD: Final = {"i32": "i32", "i64": "i64", "f32": "f32", "f64": "f64"}
_SIGNED: Final = {"i32": 32, "i64": 64}
try:  # the C-API internals the fast path relies on; any difference disables it
    _RAW: Any = _b.wasmtime_val_raw
    _CALL: Any = type(_b._wasmtime_func_call_unchecked)(("wasmtime_func_call_unchecked", ffi.dll))
    _CALL.restype = ctypes.c_void_p
    # A host callback that receives the argument array's address as a plain integer (wasmtime's
    # binding types it as a pointer to ``wasmtime_val_raw``, so each argument read would make a
    # ctypes object): one ``string_at`` and one ``unpack`` read every argument.
    _HOST_CB: Any = ctypes.CFUNCTYPE(
        _b.wasmtime_func_unchecked_callback_t._restype_,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_size_t,
    )
    _DEFINE: Any = type(_b._wasmtime_linker_define_func_unchecked)(
        ("wasmtime_linker_define_func_unchecked", ffi.dll)
    )
    _DEFINE.argtypes = [
        *_b._wasmtime_linker_define_func_unchecked.argtypes[:6],
        _HOST_CB,
        *_b._wasmtime_linker_define_func_unchecked.argtypes[7:],
    ]
    _DEFINE.restype = _b._wasmtime_linker_define_func_unchecked.restype
    _CALLER_PTR: Any = ctypes.POINTER(_b.wasmtime_caller)
    _EPOCH_CB: Any = _b._wasmtime_store_epoch_deadline_callback.argtypes[1]
    _NO_FINALIZER: Any = _b._wasmtime_store_epoch_deadline_callback.argtypes[3]()
    _NO_HOST_FINALIZER: Any = _b._wasmtime_linker_define_func_unchecked.argtypes[8]()
    _SLOT: int = ctypes.sizeof(_RAW)
    _FAST_MISSING: str | None = None
except (AttributeError, IndexError, TypeError) as _exc:  # pragma: no cover - other releases
    _FAST_MISSING = f"wasmtime internals differ ({_exc})"


def _as_signed(value: Any, kind: str) -> Any:
    bits = _SIGNED.get(kind)
    if bits is None or not isinstance(value, int):
        return value
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


class _FastMemory:
    """The linear memory as a ``memoryview``; refreshed when an access passes its cached size.

    The base never moves (``memory_may_move = False``) and memory never shrinks, so a view
    taken at one size stays valid; only accesses past it need a fresh size from wasmtime.
    """

    def __init__(self, ctx: Any, memory: Any) -> None:
        self._ctx = ctx
        self._memory = memory  # a wasmtime_memory_t, kept alive with the instance
        self._size = -1
        self._view = memoryview(b"")
        self.refresh()

    def refresh(self) -> None:
        if self._memory is None:
            return
        ref = ctypes.byref(self._memory)
        size = int(ffi.wasmtime_memory_data_size(self._ctx, ref))
        if size != self._size:
            base = ctypes.cast(ffi.wasmtime_memory_data(self._ctx, ref), ctypes.c_void_p).value
            array = (ctypes.c_ubyte * size).from_address(base or 0) if size else b""
            self._view = memoryview(array).cast("B")
            self._size = size

    def size(self) -> int:
        self.refresh()
        return self._size

    def read(self, ptr: int, length: int) -> bytes:
        end = ptr + length
        if end > self._size or ptr < 0 or length < 0:
            self.refresh()
            _bounds(ptr, length, self._size)
        return self._view[ptr:end].tobytes()

    def write(self, ptr: int, data: bytes) -> None:
        end = ptr + len(data)
        if end > self._size or ptr < 0:
            self.refresh()
            _bounds(ptr, len(data), self._size)
        self._view[ptr:end] = data

    def view(self, ptr: int, length: int) -> memoryview:
        """A zero-copy view, valid until the guest runs again or the instance closes."""
        end = ptr + length
        if end > self._size or ptr < 0 or length < 0:
            self.refresh()
            _bounds(ptr, length, self._size)
        return self._view[ptr:end]

    def invalidate(self) -> None:
        self._memory = None
        self._size = 0
        self._view = memoryview(b"")


class _CallerMemory:
    """The memory as seen from inside a host function (through the caller's context)."""

    def __init__(self, caller: Any, memory: Any) -> None:
        self._ctx = ffi.wasmtime_caller_context(caller)
        self._memory = memory

    def _span(self) -> tuple[int, int]:
        if self._memory is None:
            return 0, 0
        ref = ctypes.byref(self._memory)
        base = ctypes.cast(ffi.wasmtime_memory_data(self._ctx, ref), ctypes.c_void_p).value
        return base or 0, int(ffi.wasmtime_memory_data_size(self._ctx, ref))

    def size(self) -> int:
        return self._span()[1]

    def read(self, ptr: int, length: int) -> bytes:
        base, size = self._span()
        _bounds(ptr, length, size)
        return ctypes.string_at(base + ptr, length) if length else b""

    def write(self, ptr: int, data: bytes) -> None:
        base, size = self._span()
        _bounds(ptr, len(data), size)
        if data:
            ctypes.memmove(base + ptr, data, len(data))

    view = read  # a host function's accesses are small: a copy is the safe choice


class _FastInstance(_BaseInstance):
    """Calls through ``wasmtime_func_call_unchecked`` with preallocated arguments."""

    def __init__(
        self,
        engine: WasmtimeEngine,
        module: wasmtime.Module,
        host: Sequence[HostFunc],
        limits: Limits,
    ) -> None:
        super().__init__(engine, limits)
        store = self._store
        self._ctx_ptr = store._context()
        self._ctx = ctypes.c_void_p(ctypes.cast(self._ctx_ptr, ctypes.c_void_p).value)
        self._deadline_at = time.monotonic() + limits.deadline_s
        self._epoch_cb = _EPOCH_CB(self._on_epoch)
        _b.wasmtime_store_epoch_deadline_callback(store.ptr(), self._epoch_cb, None, _NO_FINALIZER)
        store.set_epoch_deadline(1)
        self._trap = ctypes.c_void_p()
        self._trap_ref = ctypes.c_void_p(ctypes.addressof(self._trap))
        self._args = (_RAW * 16)()
        self._args_ref = ctypes.c_void_p(ctypes.addressof(self._args))
        self._argbuf = memoryview(self._args).cast("B")
        self._host_memory: Any = None
        #: What host functions see once the instance exists: the instance's own memory
        #: accessor, whose cached base and size are refreshed when the size changes (a
        #: ``cabi_realloc`` a host function calls may grow it). During instantiation (a start
        #: function calling an import) they see the memory through the caller instead.
        self._host_view: _FastMemory | None = None
        self._callbacks: list[Any] = []
        self._host = {hf.name: hf for hf in host}
        linker = wasmtime.Linker(engine.wasmtime_engine)
        routed = [hf for hf in host if hf.reroutable]
        self._slots: dict[str, int] = {}
        self._stub: wasmtime.Instance | None = None
        if routed:
            self._set_limits(2, 1, 1)  # the stub: one instance, one table, no memory
            self._route(linker, routed)
        for hf in host:
            if not hf.reroutable:
                self._define(linker, hf)
        self._instance = self._instantiate(linker, module)
        mem = self._lookup("memory")
        self._mem_raw = mem._memory if isinstance(mem, wasmtime.Memory) else None
        self._host_memory = self._mem_raw
        self.memory = _FastMemory(self._ctx_ptr, self._mem_raw)
        self._host_view = self.memory if self._mem_raw is not None else None
        self._funcs: list[wasmtime.Func] = []
        self._exports: dict[str, Callable[..., Any]] = {}
        self._helper: _FastHelper | None = None

    def _lookup(
        self, name: str, instance: wasmtime.Instance | None = None
    ) -> wasmtime.Func | wasmtime.Memory | None:
        """One export by name (wasmtime-py's ``exports()`` would wrap every export first)."""
        item = _b.wasmtime_extern_t()
        raw = name.encode()
        of = instance or self._instance
        found = ffi.wasmtime_instance_export_get(
            self._ctx_ptr, ctypes.byref(of._instance), raw, len(raw), ctypes.byref(item)
        )
        if not found:
            return None
        kind = cast(int, item.kind)
        if kind == ffi.WASMTIME_EXTERN_FUNC.value:
            return wasmtime.Func._from_raw(item.of.func)
        if kind == ffi.WASMTIME_EXTERN_MEMORY.value:
            return wasmtime.Memory._from_raw(item.of.memory)
        return None

    # -- host functions --

    def _define(self, linker: wasmtime.Linker, hf: HostFunc) -> None:
        params = hf.type.params
        unpack = struct.Struct("<" + "".join(_FORMAT[p] for p in params)).unpack_from
        nbytes = _SLOT * len(params)
        result_field = _FIELD[hf.type.results[0]] if hf.type.results else None
        fn = hf.fn
        trap_message = f"host function {hf.name} failed".encode()
        read = ctypes.string_at

        def callback(env: Any, caller: int, vals: int, nvals: int) -> int:
            try:
                args = unpack(read(vals, nbytes)) if nbytes else ()
                view = self._host_view
                if view is None:  # during instantiation: through the caller
                    ptr = ctypes.cast(caller, _CALLER_PTR)
                    result = fn(_CallerMemory(ptr, self._host_memory or _caller_memory(ptr)), *args)
                else:
                    result = fn(view, *args)
                if result_field is not None:
                    slot = _RAW.from_address(vals)
                    setattr(slot, result_field, _as_signed(result, result_field))
                return 0
            except BaseException as exc:  # carried over the C boundary
                self._pending = exc
                trap = ffi.wasmtime_trap_new(trap_message, len(trap_message))
                return ctypes.cast(trap, ctypes.c_void_p).value or 0

        cb = _HOST_CB(callback)
        self._callbacks.append(cb)
        module = hf.module.encode()
        name = hf.name.encode()
        functype = _wasm_functype(hf.type)  # must outlive the call below
        error = _DEFINE(
            linker.ptr(),
            module,
            len(module),
            name,
            len(name),
            functype.ptr(),
            cb,
            None,
            _NO_HOST_FINALIZER,
        )
        if error:
            raise ModuleError(
                f"cannot define host function {hf.module}.{hf.name}: "
                f"{_short(str(wasmtime.WasmtimeError._from_ptr(error)))}"
            )

    def _route(self, linker: wasmtime.Linker, routed: Sequence[HostFunc]) -> None:
        """Link the guest's imports of ``routed`` to a stub in its store that calls through a
        table: slot ``i`` starts as the host function itself and :meth:`attach` may point it
        at a helper's export (a call that stays inside the store)."""
        types = "".join(
            f"(type $t{i} (func (param {' '.join(hf.type.params)})"
            f"{' (result ' + ' '.join(hf.type.results) + ')' if hf.type.results else ''}))"
            for i, hf in enumerate(routed)
        )
        imports = "".join(
            f'(import "host" "{hf.name}" (func $h{i} (type $t{i})))' for i, hf in enumerate(routed)
        )
        funcs = "".join(
            f'(func (export "{hf.name}") (type $t{i}) '
            + "".join(f"(local.get {k}) " for k in range(len(hf.type.params)))
            + f"(call_indirect $slots (type $t{i}) (i32.const {i})))"
            for i, hf in enumerate(routed)
        )
        elems = " ".join(f"$h{i}" for i in range(len(routed)))
        n = len(routed)
        wat = (
            f'(module {types} {imports} (table $slots (export "slots") {n} {n} funcref) '
            f"(elem (table $slots) (i32.const 0) func {elems}) {funcs})"
        )
        stub_linker = wasmtime.Linker(self._engine.wasmtime_engine)
        for i, hf in enumerate(routed):
            self._define(stub_linker, HostFunc("host", hf.name, hf.type, hf.fn))
            self._slots[hf.name] = i
        stub = self._instantiate(stub_linker, self._engine._helper(wat))
        self._stub = stub
        for hf in routed:
            func = self._lookup(hf.name, stub)
            if not isinstance(func, wasmtime.Func):  # pragma: no cover - the stub exports it
                raise ModuleError(f"the host stub does not export `{hf.name}`")
            linker.define(self._store, hf.module, hf.name, func)

    def _on_epoch(self, ctx: Any, data: Any, delta: Any, kind: Any) -> int:
        if time.monotonic() >= self._deadline_at:
            self._timed_out = True
            error = ffi.wasmtime_error_new(b"vultrino: deadline reached")
            return ctypes.cast(error, ctypes.c_void_p).value or 0
        delta[0] = 1
        kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
        return 0

    # -- Instance protocol --

    def set_deadline(self, seconds: float) -> None:
        self._deadline_s = seconds
        self._deadline_at = time.monotonic() + seconds

    def attach(self, wat: str, imports: Sequence[str], reroute: Sequence[str] = ()) -> _FastHelper:
        """A host helper module in this store, importing ``memory`` and ``imports`` from the
        guest as module ``guest`` and the host functions named in ``reroute`` as module
        ``host``; the guest's calls of those then run the helper's exports of the same names
        (see :class:`vultrino.runtime.engine.Instance`)."""
        if self.closed:
            raise ModuleError("the instance is closed")
        if self._helper is not None:
            raise ModuleError("the instance already has a helper")
        for name in reroute:
            if name not in self._slots:
                raise ModuleError(f"the guest does not import a reroutable `{name}`")
        module = self._engine._helper(wat)
        linker = wasmtime.Linker(self._engine.wasmtime_engine)
        for name in ("memory", *imports):
            item = self._lookup(name)
            if item is None:
                raise ModuleError(f"the instance does not export `{name}`")
            linker.define(self._store, "guest", name, item)
        for name in reroute:
            hf = self._host[name]
            self._define(linker, HostFunc("host", name, hf.type, hf.fn))
        # the guest is in place: now the helper and its memory may join
        stub = 1 if self._stub is not None else 0
        self._set_limits(2 + stub, 2, stub)
        try:
            instance = linker.instantiate(self._store, module)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            text = _short(str(exc))
            raise ModuleError(f"the host helper cannot be instantiated: {text}") from None
        if reroute:
            assert self._stub is not None
            slots = self._stub.exports(self._store)["slots"]
            assert isinstance(slots, wasmtime.Table)
            for name in reroute:
                func = self._lookup(name, instance)
                if not isinstance(func, wasmtime.Func):
                    raise ModuleError(f"the host helper does not export `{name}`")
                slots.set(self._store, self._slots[name], func)
        self._helper = _FastHelper(self, instance)
        return self._helper

    def export(self, name: str) -> Callable[..., int | None] | None:
        call = self._exports.get(name)
        if call is None:
            call = self._bind(name)
            if call is not None:
                self._exports[name] = call
        return call

    def _bind(
        self, name: str, instance: wasmtime.Instance | None = None
    ) -> Callable[..., Any] | None:
        """A fast call of the guest's export ``name`` (or of ``instance``'s, a helper in this
        store); None once closed or when it is not a function."""
        if self.closed:
            return None
        func = self._lookup(name, instance)
        if not isinstance(func, wasmtime.Func):
            return None
        self._funcs.append(func)  # keeps the handle the call points into alive
        return self._make_call(func)

    def _make_call(self, func: wasmtime.Func) -> Callable[..., Any]:
        ftype = _functype(func.type(self._store))
        kinds = ftype.params
        if any(k not in _FORMAT for k in (*kinds, *ftype.results)) or max(
            len(kinds), len(ftype.results)
        ) > len(self._args):
            raise ModuleError(f"cannot call an export of type {ftype} from the host")
        pack = struct.Struct("<" + "".join(_FORMAT[k] for k in kinds)).pack_into
        results = ftype.results
        unpack = struct.Struct("<" + "".join(_FORMAT[k] for k in results)).unpack_from
        raw = _CALL
        ctx = self._ctx
        fref = ctypes.c_void_p(ctypes.addressof(func._func))
        args = self._args_ref
        count = ctypes.c_size_t(max(len(kinds), len(results)))
        trap_ref = self._trap_ref
        trap = self._trap
        buf = self._argbuf
        fail = self._fail
        nparams = len(kinds)

        def repack(params: tuple[Any, ...]) -> None:
            """Values out of the signed range (pointers above 2 GiB): wrap, then pack."""
            if len(params) != nparams:
                raise TypeError(f"expected {nparams} arguments, got {len(params)}")
            pack(buf, 0, *(_as_signed(v, k) for v, k in zip(params, kinds, strict=True)))

        # Three shapes so the hot path has no branches on the result count.
        if len(results) == 1:

            def call(*params: Any) -> Any:
                if self.closed:
                    raise PluginTrapError("the instance is closed")
                try:
                    pack(buf, 0, *params)
                except struct.error:
                    repack(params)
                err = raw(ctx, fref, args, count, trap_ref)
                if err or trap:  # c_void_p is falsy when NULL
                    fail(err)
                return unpack(buf, 0)[0]

        elif not results:

            def call(*params: Any) -> Any:
                if self.closed:
                    raise PluginTrapError("the instance is closed")
                try:
                    pack(buf, 0, *params)
                except struct.error:
                    repack(params)
                err = raw(ctx, fref, args, count, trap_ref)
                if err or trap:  # c_void_p is falsy when NULL
                    fail(err)
                return None

        else:

            def call(*params: Any) -> Any:
                if self.closed:
                    raise PluginTrapError("the instance is closed")
                try:
                    pack(buf, 0, *params)
                except struct.error:
                    repack(params)
                err = raw(ctx, fref, args, count, trap_ref)
                if err or trap:  # c_void_p is falsy when NULL
                    fail(err)
                return unpack(buf, 0)

        return call

    def _fail(self, err: int | None) -> None:
        trap = self._trap.value
        self._trap.value = None
        exc: BaseException
        if trap:
            exc = wasmtime.Trap._from_ptr(ctypes.cast(trap, ctypes.POINTER(ffi.wasm_trap_t)))
            if err:
                wasmtime.WasmtimeError._from_ptr(
                    ctypes.cast(err or 0, ctypes.POINTER(ffi.wasmtime_error_t))
                )
        else:
            exc = wasmtime.WasmtimeError._from_ptr(
                ctypes.cast(err or 0, ctypes.POINTER(ffi.wasmtime_error_t))
            )
        if self.closed:
            raise PluginTrapError("the instance is closed")
        raise self._translate(exc) from None

    def close(self) -> None:
        if not self.closed:
            self.memory.invalidate()
            if self._helper is not None:
                self._helper.memory.invalidate()
                self._helper = None
            self._exports = {}
            self._funcs = []
            self._close_store()
            self._callbacks = []


class _FastHelper:
    """A host helper instance in a guest's store; its calls go through the guest's fast path
    (same deadline, same error translation, refused once the guest is closed)."""

    def __init__(self, owner: _FastInstance, instance: wasmtime.Instance) -> None:
        self._owner = owner
        self._instance = instance
        mem = owner._lookup("memory", instance)
        raw = mem._memory if isinstance(mem, wasmtime.Memory) else None
        self.memory = _FastMemory(owner._ctx_ptr, raw)

    def export(self, name: str) -> Callable[..., int | None] | None:
        return self._owner._bind(name, self._instance)


def _caller_memory(caller: Any) -> Any:
    """The caller's exported memory (during instantiation, before the instance is known)."""
    item = _b.wasmtime_extern_t()
    if ffi.wasmtime_caller_export_get(caller, b"memory", 6, ctypes.byref(item)) and (
        cast(int, item.kind) == ffi.WASMTIME_EXTERN_MEMORY.value
    ):
        return item.of.memory
    return None


class _FastPath:
    """A self-test run once per engine before trusting the fast path."""

    WAT = """
    (module
      (import "t" "add" (func $add (param i32 i64) (result i64)))
      (import "t" "boom" (func $boom))
      (memory (export "memory") 1)
      (func (export "f") (param i32 i64) (result i64)
        (i32.store (i32.const 16) (local.get 0))
        (call $add (local.get 0) (local.get 1)))
      (func (export "g") (result i32) (i32.load (i32.const 32)))
      (func (export "trap") unreachable)
      (func (export "host_fails") (call $boom)))
    """

    @staticmethod
    def self_test(engine: WasmtimeEngine) -> None:
        if _FAST_MISSING is not None:
            raise RuntimeError(_FAST_MISSING)
        if not engine._static_memory:
            raise RuntimeError("Config.memory_may_move is not available")
        if _SLOT != 16:
            raise RuntimeError(f"wasmtime_val_raw is {_SLOT} bytes, expected 16")
        compiled = wasmtime.Module(engine.wasmtime_engine, bytes(wasmtime.wat2wasm(_FastPath.WAT)))
        module = _deserialize_in_place(engine.wasmtime_engine, bytes(compiled.serialize()))

        def add(memory: Any, a: int, b: int) -> int:
            memory.write(40, b"ok")
            return a + b

        def boom(memory: Any) -> None:
            raise GuestExit(7)

        host = [
            HostFunc("t", "add", FuncType(("i32", "i64"), ("i64",)), add),
            HostFunc("t", "boom", FuncType((), ()), boom),
        ]
        # A generous deadline, set again just before the calls: on a loaded machine the time
        # between instantiation and the last call must not make the self-test fail.
        inst = _FastInstance(engine, module, host, Limits(deadline_s=10.0, memory_bytes=WASM_PAGE))
        try:
            inst.set_deadline(10.0)
            f, g = inst.export("f"), inst.export("g")
            assert f is not None and g is not None
            if f(0xFFFF_FFFE, 1 << 40) != -2 + (1 << 40):
                raise RuntimeError("wrong result from a call")
            if inst.memory.read(16, 4) != b"\xfe\xff\xff\xff" or inst.memory.read(40, 2) != b"ok":
                raise RuntimeError("memory view does not match the guest's memory")
            inst.memory.write(32, struct.pack("<i", 12345))
            if g() != 12345:
                raise RuntimeError("a host write is not visible to the guest")
            for name, expected in (("trap", PluginTrapError), ("host_fails", GuestExit)):
                fn = inst.export(name)
                assert fn is not None
                try:
                    fn()
                except expected:
                    pass
                else:
                    raise RuntimeError(f"{name} did not raise {expected.__name__}")
        finally:
            inst.close()
