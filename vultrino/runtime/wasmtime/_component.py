"""WASI 0.2 components on wasmtime's component API: plugins in any language.

A *component* (a ``.wasm`` whose header says layer 1, as ``wasm-tools component new`` and
componentize-py write them) that targets ``wit/vultrino-plugin.wit`` runs here; core modules go
through :mod:`vultrino.runtime.abi` as before. Only wasmtime runs components (its adapter
declares the ``components`` capability and hands this engine out from ``components()``): on
wasmer a component is refused with a message saying so.

This module uses the core-module adapter only through its package-internal interface:
``WasmtimeEngine.wasmtime_engine`` (the configured engine) and ``WasmtimeEngine.ticker`` (the
epoch ticker), so components get the same configuration and deadline enforcement.

What a component gets, and what it may import:

* the world's ``host`` interface (``log``) and exports its ``handler`` interface
  (``execute: func(list<u8>) -> list<u8>``), named in :mod:`vultrino.runtime.wit`; both are
  checked against the world's types when the component is loaded, so a mismatch fails at
  install, naming the item.
* WASI 0.2 (``wasi:io``, ``wasi:clocks``, ``wasi:random``, ``wasi:cli``, ``wasi:filesystem``,
  ``wasi:sockets``, any ``0.2.x``) with **no capabilities**: no preopened directories, no
  environment, no arguments, empty stdin, no network (wasmtime's WASI context denies every
  socket address and name lookup unless told otherwise). stdout and stderr go, line by line, to
  the plugin log — never to Vultrino's stdout. Any other import (``wasi:http``, another
  package's interface) is refused at load, by name.

Limits are those of core modules: the wall-clock deadline through the engine's epoch ticker,
and every wait a guest can ask for ends by it (:class:`_Clock`, below),
``Store.set_limits`` for memory (a component may have :data:`MAX_MEMORIES` linear memory,
which may grow to ``limits.memory_bytes``, and ``MAX_TABLES`` tables of
``MAX_TABLE_ELEMENTS`` entries), and the output cap on the returned bytes.
Compiled components are cached with :class:`~vultrino.runtime.cache.ModuleCache` like modules.

``list<u8>`` across the component API: wasmtime-py converts each byte to and from a Python
object (about 1.4 s per MiB round trip). :func:`_fast_call` fills and reads wasmtime's value
arrays with two strided ``memoryview`` copies instead (about 0.19 s per MiB round trip, most of
it inside wasmtime); it is self-tested once and falls back to wasmtime-py's own call. wasmtime
itself refuses to copy more than about 2.6 MiB (128 MiB of "hostcall fuel" at 48 bytes per
value) in one direction of one call: a bigger request or result is a clear
``PluginABIError``. See ``docs/plugins/abi.md``.
"""

from __future__ import annotations

import ctypes
import logging
import math
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, NoReturn

import wasmtime
from wasmtime import _bindings
from wasmtime import _ffi as ffi
from wasmtime import component as wc
from wasmtime.component import _enter

from vultrino import _msgpack
from vultrino.errors import (
    EngineError,
    ModuleError,
    ParameterError,
    PluginABIError,
    PluginTimeoutError,
    PluginTrapError,
)
from vultrino.runtime import _keys, _wasi, abi
from vultrino.runtime.abi import KeySlot
from vultrino.runtime.engine import MAX_TABLE_ELEMENTS, MAX_TABLES, MIB, Limits
from vultrino.runtime.wit import (
    EXECUTE,
    EXECUTE_TEXT,
    HANDLER,
    HANDLERS,
    HOST,
    HOSTS,
    HTTP,
    HTTP_SEND,
    KEY_FORMATS,
    KEY_FORMATS_SINCE,
    KEYS,
    KEYS_FUNCTIONS,
    KEYS_MODULES,
    LOG,
    LOG_LEVEL,
    LOG_LEVELS,
    WIT_FILE,
    keys_functions,
)

if TYPE_CHECKING:
    from vultrino.runtime.wasmtime._engine import WasmtimeEngine

__all__ = [
    "ALLOWED_WASI",
    "HOSTCALL_LIST_BYTES",
    "ComponentSession",
    "WasmtimeComponentEngine",
]

log = logging.getLogger("vultrino.runtime.component")

#: The WASI 0.2 packages a component may import (all provided with no capabilities).
ALLOWED_WASI: Final = ("io", "clocks", "random", "cli", "filesystem", "sockets")
_WASI_IMPORT = re.compile(r"^wasi:(?P<pkg>[a-z-]+)/[a-z0-9-]+@0\.2\.\d+$")
#: Linear memories, tables and core instances one component may create. wasmtime caps each
#: memory and each table on its own, so one memory keeps a component within the memory cap, as
#: a core module is; componentize-py's CPython components and Rust components (with or without
#: the preview 1 adapter) have one memory, two tables (CPython's about 5700 entries) and up to
#: about 30 core instances.
MAX_MEMORIES: Final = 1
MAX_INSTANCES: Final = 100
#: What wasmtime lets one call copy across the component boundary (bytes of a list<u8>).
HOSTCALL_LIST_BYTES: Final = (128 * MIB) // 48
_TOO_MUCH = "too much data is being copied"
_MONOTONIC_CLOCK = re.compile(r"^wasi:clocks/monotonic-clock@0\.2\.\d+$")

#: A component of the host's own, instantiated beside a guest that imports
#: ``wasi:clocks/monotonic-clock``: it passes wasmtime's own ``subscribe-duration`` through, so
#: :class:`_Clock` can hand the guest a real ``pollable`` for a wait it has shortened.
_SUBSCRIBER_WAT: Final = """
(component
  (import "wasi:io/poll@0.2.0" (instance $poll (export "pollable" (type (sub resource)))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (export "pollable" (type $p (eq $pollable)))
    (export "subscribe-duration" (func (param "when" u64) (result (own $p))))))
  (core func $sub (canon lower (func $clock "subscribe-duration")))
  (core module $M
    (import "clock" "sub" (func $sub (param i64) (result i32)))
    (func (export "sub") (param i64) (result i32) (call $sub (local.get 0))))
  (core instance $m (instantiate $M (with "clock" (instance (export "sub" (func $sub))))))
  (func (export "subscribe-duration") (param "when" u64) (result (own $pollable))
    (canon lift (core func $m "sub"))))
"""


def _short(message: str, limit: int = 300) -> str:
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    pick = next((line for line in lines if line.startswith("wasm trap:")), None)
    if pick is None:
        pick = lines[0] if lines else "unknown engine error"
    pick = pick.removeprefix("wasm trap: ")
    return pick if len(pick) <= limit else pick[: limit - 3] + "..."


class WasmtimeComponentEngine:
    """Compiles, checks and instantiates components on a :class:`WasmtimeEngine`'s engine
    (the ``ComponentEngine`` protocol of ``engine.py``).

    It shares the engine (so its configuration and epoch ticker) with the core-module adapter;
    ``owner`` is that adapter.
    """

    cache_name = "wasmtime-component"

    def __init__(self, owner: WasmtimeEngine) -> None:
        self.wasmtime_engine: wasmtime.Engine = owner.wasmtime_engine
        self.ticker = owner.ticker
        self.fast = _fast_available()
        #: Whether 1.1.0 components are called through ``execute-text`` (bulk string copies);
        #: off only to measure ``execute`` of the same component.
        self.text = self.fast and _text_available()
        self._subscriber: wc.Component | None = None
        self._subscriber_lock = threading.Lock()

    def subscriber(self) -> wc.Component:
        """The compiled :data:`_SUBSCRIBER_WAT` (compiled once per engine, on first need)."""
        with self._subscriber_lock:
            if self._subscriber is None:
                self._subscriber = wc.Component(
                    self.wasmtime_engine, wasmtime.wat2wasm(_SUBSCRIBER_WAT)
                )
            return self._subscriber

    # -- compile and cache --

    def compile(self, wasm: bytes) -> wc.Component:
        try:
            return wc.Component(self.wasmtime_engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"the component does not compile: {_short(str(exc), 400)}") from None

    def serialize(self, component: object) -> bytes:
        return bytes(_component(component).serialize())

    def deserialize(self, data: bytes) -> wc.Component:
        try:
            return wc.Component.deserialize(self.wasmtime_engine, data)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"wasmtime rejected a cached component: {_short(str(exc))}") from None

    # -- the world check --

    def check(self, component: object) -> tuple[str, ...]:
        """The component's import names; ``ModuleError`` listing every way it misses the world."""
        comp = _component(component)
        ctype = comp.type
        problems: list[str] = []
        imports = ctype.imports(self.wasmtime_engine)
        exports = ctype.exports(self.wasmtime_engine)
        for name, item in imports.items():
            if name in HOSTS:
                problems.extend(self._check_host(item, name))
                continue
            if name in KEYS_MODULES:
                problems.extend(self._check_keys(item, name))
                continue
            if name == HTTP:
                problems.extend(self._check_http(item))
                continue
            match = _WASI_IMPORT.match(name)
            if match is None or match["pkg"] not in ALLOWED_WASI:
                problems.append(
                    f"import `{name}` is not provided by Vultrino (a component may import only "
                    f"`{HOST}`, `{KEYS}`, `{HTTP}` and WASI 0.2 interfaces of "
                    + ", ".join(f"wasi:{p}" for p in ALLOWED_WASI)
                    + ")"
                )
        handler = next((h for h in HANDLERS if h in exports), None)
        if handler is None:
            problems.append(
                f"missing export `{HANDLER}` (the `handler` interface of {WIT_FILE}; "
                f"or `{HANDLERS[-1]}` of an older version)"
            )
        else:
            problems.extend(self._check_handler(exports[handler], handler))
        if problems:
            raise ModuleError(
                f"the component does not fit the Vultrino plugin world ({WIT_FILE}): "
                + "; ".join(problems)
            )
        return tuple(imports)

    def _funcs(self, item: Any, what: str) -> tuple[dict[str, Any], list[str]]:
        ty = item.ty
        if not isinstance(ty, wc.ComponentInstanceType):
            return {}, [f"`{what}` is not an interface instance"]
        return {n: e.ty for n, e in ty.exports(self.wasmtime_engine).items()}, []

    def _check_host(self, item: Any, host: str) -> list[str]:
        funcs, problems = self._funcs(item, host)
        for name, ty in funcs.items():
            if name == LOG:
                params = ty.params if isinstance(ty, wc.FuncType) else None
                ok = (
                    params is not None
                    and len(params) == 2
                    and isinstance(params[0][1], wc.EnumType)
                    and params[0][1].names == list(LOG_LEVELS)
                    and isinstance(params[1][1], wc.String)
                    and ty.result is None
                )
                if not ok:
                    problems.append(
                        f"import `{host}`.`{LOG}` is not "
                        f"`func(level: {LOG_LEVEL}, message: string)`"
                    )
            elif name != LOG_LEVEL:
                problems.append(f"import `{host}`.`{name}` is not provided by Vultrino")
        return problems

    def _check_http(self, item: Any) -> list[str]:
        """``http.send: func(request: list<u8>) -> list<u8>``, and nothing else."""
        funcs, problems = self._funcs(item, HTTP)
        for name, ty in funcs.items():
            params = ty.params if isinstance(ty, wc.FuncType) else None
            if name != HTTP_SEND:
                problems.append(f"import `{HTTP}`.`{name}` is not provided by Vultrino")
            elif not (
                params is not None
                and len(params) == 1
                and _is_bytes(params[0][1])
                and _is_bytes(ty.result)
            ):
                problems.append(f"import `{HTTP}`.`{name}` does not have the type of {WIT_FILE}")
        return problems

    def _check_keys(self, item: Any, module: str) -> list[str]:
        """The ``keys`` functions it imports, each with its kind's shape (wit.KEYS_FUNCTIONS)
        in that version of the interface (1.2.0 has four key formats, 1.3.0 six)."""
        funcs, problems = self._funcs(item, module)
        known = keys_functions(module)
        formats = KEY_FORMATS_SINCE[module.rsplit("@", 1)[-1]]
        arity = {"sign": 3, "public": 2, "hash": 1, "verify": 3}
        for name, ty in funcs.items():
            if name in ("key-error", "key-format"):
                continue
            kind = known.get(name)
            if kind is None:
                problems.append(f"import `{module}`.`{name}` is not provided by Vultrino")
                continue
            params = ty.params if isinstance(ty, wc.FuncType) else None
            ok = (
                params is not None
                and len(params) == arity[kind]
                and isinstance(
                    params[0][1], wc.ListType if kind in ("hash", "verify") else wc.String
                )
                and (kind in ("hash", "verify") or _is_enum(params[1][1], formats))
                and ty.result is not None
            )
            if not ok:
                problems.append(f"import `{module}`.`{name}` does not have the type of {WIT_FILE}")
        return problems

    def _check_handler(self, item: Any, handler: str) -> list[str]:
        """``execute`` (every version) and ``execute-text`` (1.1.0 on) with their types."""
        funcs, problems = self._funcs(item, handler)
        wanted = {EXECUTE: ("list<u8>", _is_bytes)}
        if handler != HANDLERS[-1]:
            wanted[EXECUTE_TEXT] = ("string", _is_string)
        for func, (spelled, is_type) in wanted.items():
            ty = funcs.get(func)
            if ty is None:
                problems.append(f"`{handler}` does not export `{func}`")
                continue
            ok = (
                isinstance(ty, wc.FuncType)
                and len(ty.params) == 1
                and is_type(ty.params[0][1])
                and ty.result is not None
                and is_type(ty.result)
            )
            if not ok:
                problems.append(
                    f"`{handler}`.`{func}` is not `func(request: {spelled}) -> {spelled}`"
                )
        return problems

    # -- instances --

    def session(
        self, component: object, log_func: Callable[[str, str], None], limits: Limits
    ) -> ComponentSession:
        return ComponentSession(self, _component(component), log_func, limits)


def _is_bytes(ty: Any) -> bool:
    return isinstance(ty, wc.ListType) and isinstance(ty.element, wc.U8)


def _is_enum(ty: Any, cases: Sequence[str]) -> bool:
    return isinstance(ty, wc.EnumType) and list(ty.names) == list(cases)


def _is_string(ty: Any) -> bool:
    return isinstance(ty, wc.String)


def _component(native: object) -> wc.Component:
    if not isinstance(native, wc.Component):
        raise TypeError("not a wasmtime component")
    return native


class _NoMemory:
    """A component's memories are its own: the host cannot look at them (see module.py)."""

    def size(self) -> int:
        raise EngineError("a component's memory is not visible to the host")


class ComponentSession(abi.Session):
    """One component instance in its own store, serving ABI 2 calls (``abi.Session``)."""

    abi = 2

    def __init__(
        self,
        engine: WasmtimeComponentEngine,
        component: wc.Component,
        log_func: Callable[[str, str], None],
        limits: Limits,
    ) -> None:
        self.output = _wasi.GuestOutput(log_func, max_line=4096)
        self.instance = self  # what PluginModule looks at: .memory, .close()
        self.memory = _NoMemory()
        self._deadline = limits.deadline_s
        #: When the running call (or the instantiation) must end, in time.monotonic() seconds.
        self.ends = time.monotonic() + limits.deadline_s
        #: Whether the running call asked for a wait that :class:`_Clock` cut at the deadline.
        self.cut_short = False
        self._cap = limits.output_bytes
        self._ticker = engine.ticker
        self._pending: BaseException | None = None
        self.closed = False
        store = wasmtime.Store(engine.wasmtime_engine)
        store.set_limits(
            memory_size=limits.memory_bytes,
            table_elements=MAX_TABLE_ELEMENTS,
            instances=MAX_INSTANCES,
            tables=MAX_TABLES,
            memories=MAX_MEMORIES,
        )
        store.set_epoch_deadline(self._ticker.ticks(limits.deadline_s))
        wasi = wasmtime.WasiConfig()  # nothing inherited, nothing preopened: no capabilities
        wasi.stdout_custom = self._writer(1)
        wasi.stderr_custom = self._writer(2)
        store.set_wasi(wasi)
        self._store = store
        self._ticker.acquire(limits.deadline_s)
        self._ticket = weakref.finalize(self, self._ticker.release, limits.deadline_s)
        linker = wc.Linker(engine.wasmtime_engine)
        try:
            linker.add_wasip2()
            clocks = [
                name
                for name in component.type.imports(engine.wasmtime_engine)
                if _MONOTONIC_CLOCK.match(name)
            ]
            if clocks:
                _Clock(self, engine, store).define(linker, clocks)
            host_log = self._host_log(log_func)
            for name in HOSTS:  # every version's, so 1.0.0 and 1.1.0 components both link
                with linker.root() as root, root.add_instance(name) as host:
                    host.add_func(LOG, host_log)
            imported = component.type.imports(engine.wasmtime_engine)
            for module in KEYS_MODULES:  # each version's interface, as the component names it
                if module not in imported:
                    continue
                if self.keys is None:
                    self.keys = KeySlot()
                slot = self.keys
                with linker.root() as root, root.add_instance(module) as keys:
                    for fn in keys_functions(module):
                        keys.add_func(fn, self._keys_func(fn, slot))
            if HTTP in imported:
                if self.keys is None:
                    self.keys = KeySlot()
                with linker.root() as root, root.add_instance(HTTP) as http:
                    http.add_func(HTTP_SEND, self._http_func(self.keys))
            self._inst = linker.instantiate(store, component)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            self._ticket()
            store.close()
            self._pending = None
            text = _short(str(exc), 400)
            if "count too high" in text or "table" in text:
                text += (
                    f" (a component may have {MAX_MEMORIES} memory and {MAX_TABLES} tables of "
                    f"at most {MAX_TABLE_ELEMENTS} elements)"
                )
            elif "memory" in text and ("limit" in text or "minimum" in text):
                cap = limits.memory_bytes // MIB
                text += f" (limits.memory_bytes caps its memory at {cap} MiB)"
            raise ModuleError(f"the component cannot be instantiated: {text}") from None
        func, self.text = self._handler(component, store, engine.text)
        if func is None:
            self._ticket()
            store.close()
            raise ModuleError(f"the component does not export `{HANDLER}`.`{EXECUTE}`")
        self._func = func
        #: What carries the bytes: ``execute-text``'s string (1.1.0 components), else
        #: ``execute``'s list<u8> (strided copies, or wasmtime-py's own conversion).
        self._call: Callable[[wc.Func, wasmtime.Store, bytes], bytes]
        self._text = _TextCaller(func, store) if self.text else None
        if self.text:
            self._call = self._text_call
        else:
            self._call = _fast_call if engine.fast else _public_call

    def _handler(
        self, component: wc.Component, store: wasmtime.Store, text: bool
    ) -> tuple[wc.Func | None, bool]:
        """The function calls go to, and whether it is ``execute-text``."""
        for name in HANDLERS:
            handler = component.get_export_index(name)
            if handler is None:
                continue
            if text and name != HANDLERS[-1]:
                index = component.get_export_index(EXECUTE_TEXT, handler)
                if index is not None:
                    return self._inst.get_func(store, index), True
            index = component.get_export_index(EXECUTE, handler)
            return (self._inst.get_func(store, index) if index is not None else None), False
        return None, False

    # -- host side --

    def _writer(self, fd: int) -> Callable[[bytes], int]:
        output = self.output

        def write(data: bytes) -> int:
            try:  # an exception here would be printed to stdout by wasmtime-py
                output.write(fd, data)
            except Exception:
                log.exception("plugin output failed")
            return len(data)

        return write

    def _host_log(self, log_func: Callable[[str, str], None]) -> Callable[..., None]:
        def host_log(store: Any, level: Any, message: str) -> None:
            name = level if isinstance(level, str) else str(level)
            if name not in LOG_LEVELS:
                name = "info"
            text = message
            if len(text.encode("utf-8", "replace")) > 4096:
                cut = text.encode("utf-8", "replace")
                text = cut[:4096].decode("utf-8", "replace") + (
                    f" [... {len(cut) - 4096} more bytes dropped]"
                )
            try:
                log_func(name, text)
            except BaseException as exc:
                self._pending = exc
                raise wasmtime.WasmtimeError("host log failed") from None

        return host_log

    def _keys_func(self, name: str, slot: KeySlot) -> Callable[..., bytes | str | bool]:
        """``keys.<name>`` for a component: bytes, or the ``key-error`` case's name (the
        untagged form wasmtime-py gives ``result<list<u8>, key-error>``); a hash, bytes."""
        kind = KEYS_FUNCTIONS[name]
        if kind == "hash":
            digest = _keys.hash_op(name)
            return lambda store, data: digest(bytes(data))
        if kind == "verify":
            check = _keys.verify_op(name)
            return lambda store, key, message, signature: check(
                bytes(key), bytes(message), bytes(signature)
            )
        sign = _keys.sign_op(name) if kind == "sign" else None
        public = _keys.public_op(name) if kind == "public" else None

        def run(store: Any, field: str, fmt: Any, data: Any = b"") -> bytes | str:
            index = KEY_FORMATS.index(fmt) if fmt in KEY_FORMATS else len(KEY_FORMATS)
            try:
                if sign is not None:
                    return sign(slot.ring, field, index, bytes(data))
                assert public is not None
                return public(slot.ring, field, index)
            except _keys.KeyFailure as exc:
                return exc.case
            except BaseException as exc:
                self._pending = exc
                raise wasmtime.WasmtimeError(f"host keys.{name} failed") from None

        return run

    def _http_func(self, slot: KeySlot) -> Callable[..., bytes]:
        """``http.send`` for a component: the current call's handler, bytes in and out."""

        def send(store: Any, data: Any) -> bytes:
            try:
                ring = slot.ring
                handler = ring.http if ring is not None else None
                return abi._NO_HTTP if handler is None else handler(bytes(data))
            except BaseException as exc:
                self._pending = exc
                raise wasmtime.WasmtimeError("host http.send failed") from None

        return send

    # -- calls --

    def set_deadline(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds
        self._store.set_epoch_deadline(self._ticker.ticks(seconds))

    def timed_out(self) -> NoReturn:
        """Stop the call from inside a host function: it ran out of time."""
        self._pending = PluginTimeoutError(f"the call ran past its {self._deadline:g} s deadline")
        raise wasmtime.WasmtimeError("deadline passed")

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.closed:
            raise PluginTrapError("the instance is closed")
        try:
            data = _msgpack.packb(request)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ParameterError(f"the request cannot be encoded as MessagePack: {exc}") from exc
        if not self.text and len(data) > HOSTCALL_LIST_BYTES:
            raise ParameterError(
                f"the request is {len(data)} bytes; wasmtime passes at most "
                f"{HOSTCALL_LIST_BYTES} bytes to a component in one call"
            )
        self.ends = time.monotonic() + self._deadline
        self.cut_short = False
        self._store.set_epoch_deadline(self._ticker.ticks(self._deadline))
        try:
            raw = self._call(self._func, self._store, data)
            if self._text is not None:
                self._text.post_return()
            else:
                self._func.post_return(self._store)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise self._translate(exc) from None
        finally:
            if self.output.pending:
                self.output.flush()
        if self.cut_short and time.monotonic() >= self.ends:
            # It waited until the deadline and went on before the epoch trap caught it: the
            # guest saw a shorter wait than it asked for, so its answer cannot stand.
            raise PluginTimeoutError(f"the call ran past its {self._deadline:g} s deadline")
        if len(raw) > self._cap:
            raise PluginABIError(
                f"execute returned a {len(raw)}-byte result, over the {self._cap}-byte output "
                "cap (raise limits.output_bytes if that is expected)"
            )
        return abi.check_response(abi.decode_abi2(raw))

    def _translate(self, exc: BaseException) -> BaseException:
        pending, self._pending = self._pending, None
        if pending is not None:
            return pending
        text = str(exc)
        if self.text and any(word in text for word in _BAD_STRING):
            return PluginABIError(
                f"execute-text returned a string the host cannot read ({_short(text)})"
            )
        if _TOO_MUCH in text:
            return PluginABIError(
                "the component's answer is larger than wasmtime copies out of a component in one "
                f"call (about {HOSTCALL_LIST_BYTES // 1024} KiB of list<u8>); keep results smaller"
            )
        code = getattr(getattr(exc, "trap_code", None), "name", "")
        if code == "INTERRUPT" or "wasm trap: interrupt" in text:
            return PluginTimeoutError(f"the call ran past its {self._deadline:g} s deadline")
        return PluginTrapError(f"the guest trapped: {_short(text)}")

    def _text_call(self, func: wc.Func, store: wasmtime.Store, data: bytes) -> bytes:
        """``execute-text``: the bytes as Latin-1 text each way, then checked against the cap
        (the string is never longer than the guest's memory, which the memory cap bounds)."""
        assert self._text is not None
        raw = self._text(data if data.isascii() else _latin1_utf8(data))
        if raw.isascii():
            return raw
        if len(raw) > 2 * self._cap:  # every character is at most two bytes of UTF-8
            return raw  # over the cap either way: call() says so
        try:
            return raw.decode("utf-8").encode("latin-1")
        except UnicodeError as exc:
            self._text.post_return()
            raise PluginABIError(
                f"execute-text returned a character that is not a byte (at character "
                f"{getattr(exc, 'start', '?')}: every character must be U+0000..U+00FF, the "
                "value of one byte of the answer)"
            ) from None

    def export(self, name: str) -> None:  # the Instance protocol; components have none
        return None

    def attach(self, wat: str, imports: Sequence[str], reroute: Sequence[str] = ()) -> NoReturn:
        raise ModuleError("a component takes no host helpers")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._ticket()
            self._store.close()


class _Clock:
    """``wasi:clocks/monotonic-clock`` whose waits end by the call's deadline.

    wasmtime's own ``subscribe-duration`` / ``subscribe-instant`` make pollables that
    ``wasi:io/poll`` then waits on *inside the host*, where the epoch deadline cannot interrupt
    it: a guest asking to sleep ten seconds (componentize-py's ``time.sleep`` does this) would
    hold its call, and the thread running it, for ten seconds whatever the deadline, and one
    waiting for an instant far in the future would never return. So the guest's clock
    interface is defined here instead (shadowing the one ``add_wasip2`` links):

    * ``subscribe-duration(d)`` and ``subscribe-instant(t)`` ask wasmtime's own
      ``subscribe-duration`` (through :data:`_SUBSCRIBER_WAT`, instantiated in the guest's
      store) for the shorter of the wait and what is left of the call's time, so the pollable
      is wasmtime's own and ``poll`` / ``block`` work as before, but no wait on it outlasts the
      deadline. Once no time is left, subscribing fails the call with ``PluginTimeoutError``,
      so a guest that sleeps in a loop ends there; one that computes on gets the epoch trap.
    * ``now`` and ``resolution`` read the host's monotonic clock (nanoseconds since the
      instance was made; 1 ns), as wasmtime's did.

    A call whose wait was cut and that returns after its deadline (the guest woke at the
    deadline and answered before the next epoch tick) fails with ``PluginTimeoutError`` too:
    its guest slept less than it asked for.

    The other pollables a guest can get never wait long: stdin is empty, stdout and stderr are
    always writable, and every socket address and name lookup is refused.
    """

    def __init__(
        self, session: ComponentSession, engine: WasmtimeComponentEngine, store: wasmtime.Store
    ) -> None:
        self._session = session
        self._origin = time.monotonic_ns()
        linker = wc.Linker(engine.wasmtime_engine)
        linker.add_wasip2()
        instance = linker.instantiate(store, engine.subscriber())
        func = instance.get_func(store, "subscribe-duration")
        if func is None:  # pragma: no cover - the component above exports it
            raise ModuleError("the host's clock component is broken")
        self._subscribe_duration = func

    def define(self, linker: wc.Linker, names: Sequence[str]) -> None:
        linker.allow_shadowing = True
        for name in names:
            with linker.root() as root, root.add_instance(name) as clock:
                clock.add_func("now", self._now)
                clock.add_func("resolution", self._resolution)
                clock.add_func("subscribe-duration", self._duration)
                clock.add_func("subscribe-instant", self._instant)
        linker.allow_shadowing = False

    def _now(self, store: Any) -> int:
        return time.monotonic_ns() - self._origin

    def _resolution(self, store: Any) -> int:
        return 1

    def _instant(self, store: Any, when: int) -> Any:
        return self._subscribe(store, max(0, when - (time.monotonic_ns() - self._origin)))

    def _duration(self, store: Any, nanoseconds: int) -> Any:
        return self._subscribe(store, nanoseconds)

    def _subscribe(self, store: Any, nanoseconds: int) -> Any:
        left = self._session.ends - time.monotonic()
        if left <= 0:
            self._session.timed_out()
        wait = math.ceil(left * 1e9)
        if nanoseconds < wait:
            wait = nanoseconds
        else:
            self._session.cut_short = True
        return self._subscribe_duration(store, wait)


# --- list<u8> lowering ---------------------------------------------------------------------------
#: What wasmtime says when a guest's string cannot be lifted (out of bounds, not UTF-8).
_BAD_STRING: Final = ("string", "utf-8", "utf8", "out of bounds", "out-of-bounds")


def _public_call(func: wc.Func, store: wasmtime.Store, data: bytes) -> bytes:
    result = func(store, data)
    if not isinstance(result, bytes):
        raise PluginABIError("execute did not return bytes")
    return result


try:
    _VAL: Any = ffi.wasmtime_component_val_t
    _VAL_SIZE: int = ctypes.sizeof(_VAL)
    _VAL_OF: int = _VAL.of.offset
    _VAL_KIND: int = _VAL.kind.offset
    _KIND_U8: int = ffi.WASMTIME_COMPONENT_U8.value
    _KIND_LIST: int = ffi.WASMTIME_COMPONENT_LIST.value
    _KIND_STRING: int = ffi.WASMTIME_COMPONENT_STRING.value
    # the C functions themselves, not wasmtime-py's one-line Python wrappers around them
    _byte_vec_new: Any = getattr(_bindings, "_wasm_byte_vec_new", ffi.wasm_byte_vec_new)
    _func_call: Any = getattr(
        _bindings, "_wasmtime_component_func_call", ffi.wasmtime_component_func_call
    )
    _post_return: Any = getattr(
        _bindings, "_wasmtime_component_func_post_return", ffi.wasmtime_component_func_post_return
    )
    _val_delete: Any = getattr(
        _bindings, "_wasmtime_component_val_delete", ffi.wasmtime_component_val_delete
    )
    _FAST_MISSING: str | None = None
except AttributeError as _exc:  # pragma: no cover - other wasmtime releases
    _FAST_MISSING = f"wasmtime internals differ ({_exc})"


def _fast_call(func: wc.Func, store: wasmtime.Store, data: bytes) -> bytes:
    """``func(store, data)`` for ``list<u8> -> list<u8>`` with strided copies, not per byte."""
    n = len(data)
    size = _VAL_SIZE
    param = (_VAL * 1)()
    raw = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(ctypes.byref(raw), n)
    if n:
        array = (ctypes.c_ubyte * (n * size)).from_address(ctypes.addressof(raw.data.contents))
        view = memoryview(array).cast("B")
        view[_VAL_KIND::size] = bytes((_KIND_U8,)) * n
        view[_VAL_OF::size] = data
        del view
    param[0].kind = _KIND_LIST
    param[0].of.list = raw
    result = _VAL()
    try:
        err = ffi.wasmtime_component_func_call(
            ctypes.byref(func._func), store._context(), param, 1, ctypes.byref(result), 1
        )
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(param[0]))
    if err:
        error = wasmtime.WasmtimeError._from_ptr(err)
        _enter.maybe_raise_last_exn()
        raise error
    try:
        if result.kind != _KIND_LIST:
            raise PluginABIError("execute did not return a list")
        items = result.of.list
        m = int(items.size)
        if not m:
            return b""
        array = (ctypes.c_ubyte * (m * size)).from_address(ctypes.addressof(items.data.contents))
        view = memoryview(array).cast("B")
        if view[_VAL_KIND::size] != bytes((_KIND_U8,)) * m:
            raise PluginABIError("execute did not return a list of bytes")
        out = view[_VAL_OF::size].tobytes()
        del view
        return out
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(result))


def _latin1_utf8(data: bytes) -> bytes:
    """Each byte as the character of the same value, in UTF-8 (what ``execute-text`` takes)."""
    return data.decode("latin-1").encode("utf-8")


class _TextCaller:
    """Calls a ``string -> string`` function of one store with UTF-8 bytes and returns the
    answer's UTF-8 bytes: wasmtime copies both in bulk. Its ctypes objects are made once (a
    small call would spend most of its host-side time making them). The caller runs
    :meth:`post_return` after each successful call."""

    def __init__(self, func: wc.Func, store: wasmtime.Store) -> None:
        self._func = ctypes.byref(func._func)
        self._context = store._context()
        self._param = (_VAL * 1)()
        self._param_ref = ctypes.byref(self._param[0])
        self._string_ref = ctypes.byref(self._param[0].of.string)
        self._result = _VAL()
        self._result_ref = ctypes.byref(self._result)

    def __call__(self, text: bytes) -> bytes:
        param = self._param
        param[0].kind = _KIND_STRING
        _byte_vec_new(self._string_ref, len(text), _bytes_ptr(text))
        try:
            err = _func_call(self._func, self._context, param, 1, self._result_ref, 1)
        finally:
            _val_delete(self._param_ref)
        if err:
            error = wasmtime.WasmtimeError._from_ptr(err)
            _enter.maybe_raise_last_exn()
            raise error
        result = self._result
        try:
            if result.kind != _KIND_STRING:
                raise PluginABIError("execute-text did not return a string")
            out = result.of.string
            return ctypes.string_at(out.data, out.size) if out.size else b""
        finally:
            _val_delete(self._result_ref)

    def post_return(self) -> None:
        err = _post_return(self._func, self._context)
        if err:
            error = wasmtime.WasmtimeError._from_ptr(err)
            _enter.maybe_raise_last_exn()
            raise error


def _bytes_ptr(data: bytes) -> Any:
    return ctypes.cast(ctypes.c_char_p(data), ctypes.POINTER(ctypes.c_ubyte))


_SELF_TEST: Final = """
(component
  (core module $M
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $bump))
      (global.set $bump (i32.add (global.get $bump) (local.get 3)))
      (local.get $p))
    (func (export "rev") (param $ptr i32) (param $len i32) (result i32)
      (i32.store (i32.const 0) (local.get $ptr))
      (i32.store (i32.const 4) (local.get $len))
      (i32.const 0)))
  (core instance $m (instantiate $M))
  (func (export "echo") (param "x" (list u8)) (result (list u8))
    (canon lift (core func $m "rev") (memory (core memory $m "memory"))
      (realloc (core func $m "realloc"))))
  (func (export "text") (param "x" string) (result string)
    (canon lift (core func $m "rev") (memory (core memory $m "memory"))
      (realloc (core func $m "realloc")))))
"""

_fast_checked: bool | None = None


def _fast_available() -> bool:
    """Whether :func:`_fast_call` agrees with wasmtime-py's own call (checked once)."""
    global _fast_checked  # noqa: PLW0603 - a process-wide memo
    if _fast_checked is None:
        try:
            if _FAST_MISSING is not None:
                raise RuntimeError(_FAST_MISSING)
            engine = wasmtime.Engine()
            comp = wc.Component(engine, wasmtime.wat2wasm(_SELF_TEST))
            store = wasmtime.Store(engine)
            inst = wc.Linker(engine).instantiate(store, comp)
            func = inst.get_func(store, "echo")
            assert func is not None
            for sample in (b"", b"\x00\xff\x01", bytes(range(256)) * 5):
                if _fast_call(func, store, sample) != sample or func(store, sample) != sample:
                    raise RuntimeError("the strided list<u8> copy does not round-trip")
            _fast_checked = True
        except Exception as exc:  # any failure means: use wasmtime-py's call
            log.warning("fast list<u8> lowering unavailable (%s); using wasmtime-py's", exc)
            _fast_checked = False
    return _fast_checked


_text_checked: bool | None = None


def _text_available() -> bool:
    """Whether :class:`_TextCaller` agrees with wasmtime-py's own call (checked once)."""
    global _text_checked  # noqa: PLW0603 - a process-wide memo
    if _text_checked is None:
        try:
            engine = wasmtime.Engine()
            comp = wc.Component(engine, wasmtime.wat2wasm(_SELF_TEST))
            store = wasmtime.Store(engine)
            inst = wc.Linker(engine).instantiate(store, comp)
            func = inst.get_func(store, "text")
            assert func is not None
            caller = _TextCaller(func, store)
            for sample in ("", "\x00\xff\x01", bytes(range(256)).decode("latin-1") * 5):
                data = sample.encode("utf-8")
                answer = caller(data)
                caller.post_return()
                if answer != data or func(store, sample) != sample:
                    raise RuntimeError("the string copy does not round-trip")
            _text_checked = True
        except Exception as exc:  # any failure means: call execute instead
            log.warning("bulk string calls unavailable (%s); using execute's list<u8>", exc)
            _text_checked = False
    return _text_checked
