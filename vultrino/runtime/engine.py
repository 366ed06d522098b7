"""The small protocol every WebAssembly engine adapter implements.

Adapters (the subpackages ``wasmtime/`` and ``wasmer/``) are the only modules that import an
engine SDK. They know nothing about plugins or ABIs: the ABI codecs in ``abi.py`` drive an
:class:`Instance` through exported functions and linear-memory reads and writes, so each adapter
stays small. What an engine offers beyond that is declared in its :class:`EngineCapabilities`;
nothing probes an engine, instance or memory for optional attributes.

Errors: adapters raise only :mod:`vultrino.errors` types (``ModuleError`` when a module cannot be
compiled or instantiated; ``PluginTrapError``, ``PluginTimeoutError``, ``PluginMemoryError`` from
calls; ``PluginABIError`` for out-of-bounds memory access requested by the host). Engine
exceptions are mapped ``from exc`` inside the adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from vultrino.runtime.abi import Session

ValType = Literal["i32", "i64", "f32", "f64", "v128", "funcref", "externref"]
ExternKind = Literal["func", "memory", "table", "global", "tag"]

MIB = 1024 * 1024
WASM_PAGE = 65536
#: Tables sit outside the memory cap, so every engine keeps them small: a module or component
#: may have at most :data:`MAX_TABLES` tables of at most :data:`MAX_TABLE_ELEMENTS` entries each
#: (8 bytes an entry: 512 KiB a table, 2 MiB in all). Compilers emit one table of a few thousand
#: entries (CPython built by componentize-py: about 5700, beside a small one of its own).
MAX_TABLES = 4
MAX_TABLE_ELEMENTS = 1 << 16
#: Globals are per-instance state outside the memory cap too (16 bytes or more each): a core
#: module may declare at most this many (compilers emit a handful; 4096 globals are at most
#: 64 KiB an instance).
MAX_GLOBALS = 4096


@dataclass(frozen=True)
class Limits:
    """What one guest call may use. Enforced on every engine."""

    deadline_s: float = 5.0
    memory_bytes: int = 128 * MIB
    output_bytes: int = 8 * MIB

    def __post_init__(self) -> None:
        if not self.deadline_s > 0:
            raise ValueError("deadline_s must be positive")
        if self.memory_bytes < WASM_PAGE:
            raise ValueError("memory_bytes must be at least one wasm page (65536)")
        if self.output_bytes < 1:
            raise ValueError("output_bytes must be positive")


@dataclass(frozen=True)
class FuncType:
    params: tuple[ValType, ...]
    results: tuple[ValType, ...]

    def __str__(self) -> str:
        return f"({', '.join(self.params)}) -> ({', '.join(self.results)})"


@dataclass(frozen=True)
class ImportDesc:
    module: str
    name: str
    kind: ExternKind
    type: FuncType | None = None  # set for functions


@dataclass(frozen=True)
class ExportDesc:
    name: str
    kind: ExternKind
    type: FuncType | None = None  # set for functions


@dataclass(frozen=True)
class ModuleShape:
    """Imports and exports of a module, as the engine sees them; ``start``: it has a start
    function, which runs while it is instantiated (filled in by the runtime, which reads the
    module's bytes)."""

    imports: tuple[ImportDesc, ...]
    exports: tuple[ExportDesc, ...]
    start: bool = False

    def export(self, name: str) -> ExportDesc | None:
        for e in self.exports:
            if e.name == name:
                return e
        return None


class Memory(Protocol):
    """A guest's linear memory, as host functions and ABI codecs see it."""

    def read(self, ptr: int, length: int) -> bytes:
        """Copy ``length`` bytes at ``ptr``; ``PluginABIError`` when out of bounds."""
        ...

    def write(self, ptr: int, data: bytes) -> None:
        """Copy ``data`` to ``ptr``; ``PluginABIError`` when out of bounds."""
        ...

    def size(self) -> int:
        """Current size in bytes."""
        ...

    def view(self, ptr: int, length: int) -> bytes | memoryview:
        """``length`` bytes at ``ptr`` without a copy where the engine can (valid until the
        guest runs again; the caller drops it first), else a copy as :meth:`read` makes."""
        ...


class GuestExit(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a host function to end the guest call (WASI ``proc_exit``)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class HostFunc:
    """A function the host offers to guests: ``fn(memory, *args) -> result | None``.

    ``reroutable``: an engine whose instances attach helpers may route the guest's calls of it
    through a slot that :meth:`Instance.attach` later points at an export of the helper (the
    ``log`` import, buffered in the helper's memory instead of a call into Python each time).
    Until then, and whenever the helper calls it back as ``host.<name>``, ``fn`` runs. A guest
    with a start function never gets a rerouted import (see :attr:`ModuleShape.start`).
    """

    module: str
    name: str
    type: FuncType
    fn: Callable[..., int | float | None]
    reroutable: bool = False


class Helper(Protocol):
    """A module of the host's own, instantiated beside a guest by ``Instance.attach``."""

    memory: Memory

    def export(self, name: str) -> Callable[..., int | None] | None:
        """As :meth:`Instance.export`; calls run in the guest's store, under its limits."""
        ...


class Instance(Protocol):
    """One instantiated module with its own store and limits."""

    memory: Memory

    def export(self, name: str) -> Callable[..., int | None] | None:
        """A fast bound callable for an exported function, or None when it is not exported.

        Calls raise ``PluginTrapError``/``PluginTimeoutError``/``PluginMemoryError``. After any
        such error the instance is poisoned and the caller must instantiate a fresh one.
        """
        ...

    def set_deadline(self, seconds: float) -> None:
        """Give calls made from now on a total wall-clock budget of ``seconds``."""
        ...

    def attach(self, wat: str, imports: Sequence[str], reroute: Sequence[str] = ()) -> Helper:
        """Instantiate a module of the host's own (text format) in this instance's store.

        Its imports from module ``guest`` are bound to this instance's exports of those names
        (and ``memory``); its imports from module ``host`` to the instance's host functions of
        those names. Each name in ``reroute`` is a reroutable host function the guest imports:
        from now on the guest's calls of it run the helper's export of that name (same type).
        The helper's calls share the guest's deadline, traps and memory cap; the guest cannot
        reach the helper's memory. ``ModuleError`` when it cannot be done — always, on an
        engine whose capabilities do not include ``fused_call``.
        """
        ...

    def close(self) -> None:
        """Release the instance; idempotent."""
        ...


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine offers beyond the core protocol, declared by the adapter."""

    #: WASI 0.2 components run on it: :meth:`Engine.components` returns its component engine.
    components: bool = False
    #: Compiled modules and instances may only be used on the thread that created them
    #: (wasmer-python's objects raise ``PanicException`` elsewhere). The runtime then
    #: deserializes a module once per thread and keeps one instance per calling thread
    #: instead of a shared pool.
    thread_affinity: bool = False
    #: :meth:`Instance.attach` works, so an ABI 2 call can be one transition into the store
    #: (the fused call of ``abi.py``) instead of three calls from the host.
    fused_call: bool = False


class ComponentEngine(Protocol):
    """Compiles, checks and instantiates WASI 0.2 components (the runtime caches them)."""

    #: The engine name component artifacts are cached under (never a core engine's name).
    cache_name: str

    def compile(self, wasm: bytes) -> object:
        """``ModuleError`` when the component does not compile."""
        ...

    def check(self, component: object) -> tuple[str, ...]:
        """The component's imports; ``ModuleError`` naming every way it misses the world."""
        ...

    def serialize(self, component: object) -> bytes: ...

    def deserialize(self, data: bytes) -> object:
        """Load a serialized component; ``ModuleError`` when the engine rejects it."""
        ...

    def session(
        self, component: object, log_func: Callable[[str, str], None], limits: Limits
    ) -> Session:
        """A new instance of the component, serving ABI 2 calls."""
        ...


class Engine(Protocol):
    """An engine adapter. ``name`` is ``wasmtime`` or ``wasmer``."""

    name: str
    version: str
    capabilities: EngineCapabilities

    def fingerprint(self, limits: Limits) -> str:
        """What, besides the wasm bytes, a compiled artifact depends on (for the cache key)."""
        ...

    def compile(self, wasm: bytes, limits: Limits) -> object:
        """Validate and compile; ``ModuleError`` naming what is wrong."""
        ...

    def shape(self, native: object) -> ModuleShape: ...

    def serialize(self, native: object) -> bytes: ...

    def deserialize(self, data: bytes) -> object:
        """Load a serialized artifact; ``ModuleError`` when the engine rejects it."""
        ...

    def instantiate(self, native: object, host: Sequence[HostFunc], limits: Limits) -> Instance: ...

    def components(self) -> ComponentEngine:
        """The component engine that shares this engine (made once); ``ModuleError`` when the
        capabilities do not include ``components``."""
        ...

    def close(self) -> None: ...
