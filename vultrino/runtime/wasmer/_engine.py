"""The wasmer engine adapter (wasmer-python 1.1 with the Cranelift compiler).

wasmer-python offers no fuel, no interruption and no memory limiter, so the limits of DESIGN.md
5.3 are compiled into the module first (see :mod:`vultrino.runtime._instrument`): a fuel
counter at loop headers and call-capable function entries calls back into
:meth:`_Meter.check`, which raises once the deadline has passed; the memory maximum is
lowered to the cap; every ``memory.grow`` reports its outcome. Everything the guest does then
runs at native speed inside one process — no worker process to restart, no signals.

Facts about wasmer-python 1.1 this module relies on (checked by the integration tests):

* an exception raised by a Python host function unwinds the wasm call and reaches the caller
  unchanged, so ``check`` can abort a call and ``GuestExit`` can end one;
* traps are ``RuntimeError("RuntimeError: <reason>\\n<backtrace>")``; a stack overflow carries
  a backtrace of hundreds of thousands of lines, so only the first line is ever kept;
* ``memoryview(memory.buffer)`` is a writable zero-copy view, valid until the memory grows;
* ``Module.deserialize`` trusts its input and can crash the process on a truncated artifact,
  so serialized modules travel in a checksummed envelope that is verified first.

This is the only module that imports wasmer.
"""

from __future__ import annotations

import functools
import hashlib
import platform
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import wasmer
import wasmer_compiler_cranelift

from vultrino.errors import (
    EngineError,
    ModuleError,
    PluginABIError,
    PluginMemoryError,
    PluginTimeoutError,
    PluginTrapError,
    VultrinoError,
)
from vultrino.runtime import _instrument
from vultrino.runtime.engine import (
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

__all__ = ["FUEL_CHUNK", "WasmerEngine"]

#: Fuel handed out per ``check``: about a millisecond of a tight loop, so the host is entered
#: rarely and the deadline is still noticed within a few milliseconds.
FUEL_CHUNK = 1 << 20

_ENVELOPE_MAGIC = b"vultrino-wasmer\x00"
_DIGEST = 32

_TO_WASMER: dict[ValType, Any] = {
    "i32": wasmer.Type.I32,
    "i64": wasmer.Type.I64,
    "f32": wasmer.Type.F32,
    "f64": wasmer.Type.F64,
    "v128": wasmer.Type.V128,
    "externref": wasmer.Type.EXTERN_REF,
    "funcref": wasmer.Type.FUNC_REF,
}
_FROM_WASMER: dict[Any, ValType] = {v: k for k, v in _TO_WASMER.items()}


def _deadline_checked(meter: _Meter, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` behind a deadline check: fuel counts guest instructions only, so a guest that
    spends its time in host calls (a million ``log`` calls) is stopped here instead."""

    def call(*args: Any) -> Any:
        if time.monotonic() > meter.deadline:
            raise _DeadlineExceeded
        return fn(*args)

    return call


class _DeadlineExceeded(Exception):  # noqa: N818 - control flow, mapped to PluginTimeoutError
    """Raised by ``check`` to unwind a guest that ran past its deadline."""


def _first_line(exc: BaseException) -> str:
    """The first line of an engine message, without wasmer's ``RuntimeError:`` prefix."""
    text = str(exc)
    cut = text.find("\n")
    line = text if cut < 0 else text[:cut]
    return line.removeprefix("RuntimeError: ").strip()[:500]


def _human(n: int) -> str:
    return f"{n / MIB:g} MiB" if n >= MIB else f"{n // 1024} KiB"


def _cap_pages(limits: Limits) -> int:
    return max(1, min(limits.memory_bytes // WASM_PAGE, _instrument.MAX_MEMORY_PAGES))


def _func_type(t: Any) -> FuncType:
    return FuncType(
        tuple(_FROM_WASMER[p] for p in t.params), tuple(_FROM_WASMER[r] for r in t.results)
    )


def _extern(t: Any) -> tuple[ExternKind, FuncType | None]:
    if isinstance(t, wasmer.FunctionType):
        return "func", _func_type(t)
    if isinstance(t, wasmer.MemoryType):
        return "memory", None
    if isinstance(t, wasmer.TableType):
        return "table", None
    return "global", None


@dataclass
class _Compiled:
    """A compiled, instrumented module and the memory cap that was written into it.

    wasmer-python's ``Module`` only works on the thread that created it (pyo3 "unsendable"), so
    the thread is recorded to turn a misuse into a clear error rather than a panic.
    """

    module: Any
    pages: int
    thread: int = field(default_factory=threading.get_ident, compare=False)
    shape: ModuleShape | None = field(default=None, compare=False)


class _WasmerMemory:
    """Linear memory through a zero-copy view taken for each access.

    wasmer-python's ``Buffer`` (behind ``memory.buffer``) is bound to the thread that made it:
    dropping one on another thread panics (pyo3 "unsendable"), which a long-lived cached view
    would do when a server closes plugins from its main thread. A fresh view per access costs
    about a microsecond and is always dropped where it was made.
    """

    __slots__ = ("__weakref__", "_memory")

    def __init__(self) -> None:
        self._memory: Any = None  # bound once the instance exists

    def _acquire(self) -> memoryview:
        if self._memory is None:
            raise PluginABIError(
                "the guest's memory is not available (the module exports no memory, the "
                "instance is still starting, or it was closed)"
            )
        return memoryview(self._memory.buffer)

    def _check(self, view: memoryview, ptr: int, length: int) -> int:
        end = ptr + length
        if ptr < 0 or length < 0 or end > len(view):
            raise PluginABIError(
                f"the guest pointed outside its memory: {length} bytes at {ptr:#x}, "
                f"memory is {len(view)} bytes"
            )
        return end

    def read(self, ptr: int, length: int) -> bytes:
        with self._acquire() as view:
            return view[ptr : self._check(view, ptr, length)].tobytes()

    def view(self, ptr: int, length: int) -> memoryview:
        """A zero-copy view; the caller drops it before the guest runs again, on this thread."""
        view = self._acquire()
        return view[ptr : self._check(view, ptr, length)]

    def write(self, ptr: int, data: bytes) -> None:
        with self._acquire() as view:
            view[ptr : self._check(view, ptr, len(data))] = data

    def size(self) -> int:
        if self._memory is None:
            return 0
        return int(self._memory.data_size)


class _Meter:
    """The per-instance state behind the ``check`` import: the deadline and grow outcomes.

    wasmer keeps host functions on the Rust side, where Python's garbage collector cannot see,
    and a wasmer ``Memory`` (or a view of it) keeps its whole instance alive: a host function
    that reached the instance or its memory through strong references would leak the instance
    and its address-space reservation forever. So this object holds no reference to either.
    """

    __slots__ = ("budget", "deadline", "grow_failed")

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.deadline = time.monotonic() + budget
        self.grow_failed = False

    def check(self, reason: int) -> int:
        if reason == _instrument.REASON_GROW_FAILED:
            self.grow_failed = True
        # REASON_GROWN needs nothing: memory views are taken afresh for each access
        if time.monotonic() > self.deadline:
            raise _DeadlineExceeded
        return FUEL_CHUNK


class _WasmerInstance:
    """One instance with its own deadline, fuel callback and memory view."""

    def __init__(
        self, store: Any, compiled: _Compiled, host: Sequence[HostFunc], limits: Limits
    ) -> None:
        self.memory = _WasmerMemory()
        self._cap_bytes = compiled.pages * WASM_PAGE
        # the deadline starts now, so it also covers the start function
        self._meter = meter = _Meter(limits.deadline_s)
        self._closed = False
        self._exported: dict[str, Any] = {}
        imports = wasmer.ImportObject()
        by_module: dict[str, dict[str, Any]] = {}
        # host functions see the memory through a weak proxy, for the reason given in _Meter
        memory_for_host = weakref.proxy(self.memory)
        for h in host:
            ftype = wasmer.FunctionType(
                [_TO_WASMER[p] for p in h.type.params], [_TO_WASMER[r] for r in h.type.results]
            )
            fn = _deadline_checked(meter, functools.partial(h.fn, memory_for_host))
            by_module.setdefault(h.module, {})[h.name] = wasmer.Function(store, fn, ftype)
        check_type = wasmer.FunctionType([wasmer.Type.I32], [wasmer.Type.I64])
        by_module[_instrument.CHECK_MODULE] = {
            _instrument.CHECK_NAME: wasmer.Function(store, meter.check, check_type)
        }
        for module, funcs in by_module.items():
            imports.register(module, funcs)
        try:
            self._instance: Any = wasmer.Instance(compiled.module, imports)
        except Exception as exc:
            if isinstance(exc, RuntimeError) and not str(exc).startswith("RuntimeError: "):
                raise ModuleError(
                    f"the module cannot be instantiated: {_first_line(exc)}; check that every "
                    "import is one the host provides, with the same signature"
                ) from exc
            err = self._translate(exc, "the start function")
            try:
                if err is exc:
                    raise
                raise err from exc
            finally:
                del err
        exports = self._instance.exports
        try:
            memory = exports.memory
        except LookupError:
            memory = None
        if isinstance(memory, wasmer.Memory):
            self.memory._memory = memory

    # -- Instance protocol -----------------------------------------------------------------

    def export(self, name: str) -> Callable[..., int | None] | None:
        if self._closed:
            return None
        try:
            func = getattr(self._instance.exports, name)
        except LookupError:
            return None
        if not isinstance(func, wasmer.Function):
            return None
        # Held by the instance, not by the wrapper: close() drops it, so neither a session that
        # keeps its wrappers nor a traceback through ``call`` keeps the instance's memory alive.
        self._exported[name] = func
        exported = self._exported
        translate = self._translate
        meter = self._meter
        where = f"export {name!r}"

        def call(*args: int) -> Any:
            meter.grow_failed = False
            if not exported:
                raise EngineError(f"{where}: the instance is closed")
            try:
                return exported[name](*args)
            except Exception as exc:
                err = translate(exc, where)
                try:
                    if err is exc:
                        raise
                    raise err from exc
                finally:
                    del err

        return call

    def set_deadline(self, seconds: float) -> None:
        meter = self._meter
        meter.budget = seconds
        meter.deadline = time.monotonic() + seconds

    def attach(self, wat: str, imports: Sequence[str], reroute: Sequence[str] = ()) -> NoReturn:
        raise ModuleError("the wasmer engine attaches no host helpers (no fused_call)")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.memory._memory = None
        self._instance = None
        self._exported.clear()

    # -- errors ----------------------------------------------------------------------------

    def _translate(self, exc: Exception, where: str) -> Exception:
        """Map what a guest call raised to the Vultrino error the caller sees."""
        if isinstance(exc, VultrinoError):
            return exc  # raised by a host function (e.g. a bad pointer in a log call)
        if isinstance(exc, _DeadlineExceeded):
            if self._meter.grow_failed:  # a memory bomb that kept trying until the deadline
                return self._memory_error(where, "deadline reached")
            return PluginTimeoutError(
                f"the guest ran past its {self._meter.budget:g} s deadline in {where} and was "
                "stopped; if the plugin legitimately needs longer, raise the deadline"
            )
        if isinstance(exc, GuestExit):
            return PluginTrapError(f"guest exited with code {exc.code} in {where}")
        if not isinstance(exc, RuntimeError):
            return exc  # a host function's own bug: let it surface unchanged
        reason = _first_line(exc)
        if reason.startswith("Parameters of type"):
            return TypeError(f"{where}: {reason}")
        if "call stack exhausted" in reason:
            return PluginTrapError(
                f"the guest overflowed its stack in {where} (call stack exhausted, most likely "
                "unbounded recursion)"
            )
        if self._meter.grow_failed:
            return self._memory_error(where, reason)
        return PluginTrapError(f"the guest trapped in {where}: {reason}")

    def _memory_error(self, where: str, reason: str) -> PluginMemoryError:
        return PluginMemoryError(
            f"the guest ran out of memory in {where}: it tried to grow past the cap of "
            f"{_human(self._cap_bytes)} and then failed ({reason}); raise the "
            "memory limit if the plugin legitimately needs more"
        )


class WasmerEngine:
    """The ``Engine`` protocol on wasmer-python with Cranelift, limits by instrumentation."""

    name = "wasmer"
    #: Modules and instances only work on the thread that created them; the runtime
    #: deserializes a module once per thread (the store itself may be shared). No components,
    #: and no host helpers in an instance's store (so no fused call).
    capabilities = EngineCapabilities(thread_affinity=True)

    def __init__(self) -> None:
        self.version = f"{wasmer.__version__}+cranelift"
        self._store: Any = wasmer.Store(wasmer.engine.Universal(wasmer_compiler_cranelift.Compiler))

    def fingerprint(self, limits: Limits) -> str:
        version = _instrument.INSTRUMENT_VERSION
        return f"wasmer-{self.version} {platform.machine()} instrument-{version} pages-" + str(
            _cap_pages(limits)
        )

    def compile(self, wasm: bytes, limits: Limits) -> object:
        wasm = bytes(wasm)
        if not wasm.startswith(b"\x00asm"):
            raise ModuleError("the file is not a WebAssembly module (no \\0asm header)")
        if not wasmer.Module.validate(self._store, wasm):
            try:
                wasmer.Module(self._store, wasm)
            except Exception as exc:
                raise ModuleError(
                    f"the module is not valid WebAssembly: {_first_line(exc)}"
                ) from exc
            raise ModuleError("the module is not valid WebAssembly")
        pages = _cap_pages(limits)
        instrumented = _instrument.instrument(wasm, max_memory_pages=pages)
        try:
            module = wasmer.Module(self._store, instrumented)
        except Exception as exc:
            raise ModuleError(f"wasmer cannot compile the module: {_first_line(exc)}") from exc
        return _Compiled(module, pages)

    def shape(self, native: object) -> ModuleShape:
        compiled = self._compiled(native)
        if compiled.shape is None:
            module = compiled.module
            imports = []
            for i in module.imports:
                if i.module == _instrument.CHECK_MODULE:
                    continue  # added by the instrumentation, not the plugin's
                kind, ftype = _extern(i.type)
                imports.append(ImportDesc(i.module, i.name, kind, ftype))
            exports = []
            for e in module.exports:
                kind, ftype = _extern(e.type)
                exports.append(ExportDesc(e.name, kind, ftype))
            compiled.shape = ModuleShape(tuple(imports), tuple(exports))
        return compiled.shape

    def serialize(self, native: object) -> bytes:
        compiled = self._compiled(native)
        head = self._envelope_head(compiled.pages)
        payload = bytes(compiled.module.serialize())
        return head + hashlib.sha256(head + payload).digest() + payload

    def deserialize(self, data: bytes) -> object:
        data = bytes(data)
        magic = len(_ENVELOPE_MAGIC)
        if len(data) < magic + 4 or not data.startswith(_ENVELOPE_MAGIC):
            raise ModuleError("the cached module is not a Vultrino wasmer artifact")
        pages = int.from_bytes(data[magic : magic + 4], "little")
        head = self._envelope_head(pages)
        digest = data[len(head) : len(head) + _DIGEST]
        payload = data[len(head) + _DIGEST :]
        if not data.startswith(head) or hashlib.sha256(head + payload).digest() != digest:
            raise ModuleError(
                "the cached module is corrupt or was built by another wasmer or Vultrino version"
            )
        try:
            module = wasmer.Module.deserialize(self._store, payload)
        except Exception as exc:
            raise ModuleError(f"wasmer rejected the cached module: {_first_line(exc)}") from exc
        return _Compiled(module, pages)

    def instantiate(
        self, native: object, host: Sequence[HostFunc], limits: Limits
    ) -> _WasmerInstance:
        compiled = self._compiled(native)
        if compiled.pages != _cap_pages(limits):
            raise ModuleError(
                f"the module was compiled for a memory cap of {compiled.pages} pages but the "
                f"limits ask for {_cap_pages(limits)}; compile it again with these limits"
            )
        return _WasmerInstance(self._store, compiled, host, limits)

    def components(self) -> NoReturn:
        raise ModuleError("the wasmer engine runs no WebAssembly components; use wasmtime")

    def close(self) -> None:
        """Nothing to release: compiled modules and instances free themselves when dropped."""

    def _envelope_head(self, pages: int) -> bytes:
        tag = f"{self.version} {platform.machine()} {_instrument.INSTRUMENT_VERSION}".encode()
        return _ENVELOPE_MAGIC + pages.to_bytes(4, "little") + bytes([len(tag)]) + tag

    @staticmethod
    def _compiled(native: object) -> _Compiled:
        if not isinstance(native, _Compiled):
            raise TypeError("not a module compiled by the wasmer engine")
        if native.thread != threading.get_ident():
            raise EngineError(
                "a wasmer module can only be used on the thread that compiled or deserialized "
                "it; deserialize it again on this thread"
            )
        return native
