"""The two plugin ABIs, engine-neutral: checking a module's shape and running one call.

ABI 2 (DESIGN.md 5.1) is the canonical-ABI lowering of ``wit/vultrino-plugin.wit`` with
MessagePack request and response. ABI 1 (DESIGN.md 5.2) is the JSON ABI of the Rust Vultrino,
kept so published plugins run unchanged. The ABI is detected from the exports.

A *session* wraps one :class:`~vultrino.runtime.engine.Instance` and turns a neutral request
``{"action", "params", "credential"}`` into guest calls and the answer back into
``{"ok": value}`` or ``{"error": {"code", "message"}}``. Sessions hold bound export callables,
so the hot path is a handful of attribute loads and three guest calls. Byte-level details are
in ``docs/plugins/abi.md``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from vultrino import _msgpack
from vultrino.errors import ModuleError, ParameterError, PluginABIError
from vultrino.runtime import _keys, _wasi
from vultrino.runtime.engine import (
    WASM_PAGE,
    ExportDesc,
    FuncType,
    HostFunc,
    ImportDesc,
    Instance,
    Limits,
    Memory,
    ModuleShape,
)
from vultrino.runtime.wit import EXECUTE_EXPORT as EXECUTE
from vultrino.runtime.wit import (
    EXECUTE_EXPORTS,
    HTTP,
    HTTP_SEND,
    KEY_ERRORS,
    KEYS,
    KEYS_FUNCTIONS,
    KEYS_MODULES,
    LOG,
    LOG_LEVELS,
    REALLOC,
    WIT_FILE,
    keys_functions,
)
from vultrino.runtime.wit import HOST as HOST_MODULE
from vultrino.runtime.wit import HOSTS as HOST_MODULES
from vultrino.runtime.wit import POST_EXECUTE_EXPORT as POST_EXECUTE
from vultrino.runtime.wit import POST_EXECUTE_EXPORTS as POST_EXECUTES

__all__ = [
    "ABI1_CODES",
    "ERROR_CODES",
    "EXECUTE",
    "HOST_MODULE",
    "HOST_MODULES",
    "LOG",
    "POST_EXECUTE",
    "REALLOC",
    "FUSED_BYTES",
    "FUSED_DATA",
    "MAX_ANSWER_DEPTH",
    "MAX_ANSWER_VALUES",
    "LOG_LEVELS",
    "Abi1Session",
    "Abi2Session",
    "HTTP_TYPE",
    "KEYS_TYPES",
    "KeySlot",
    "ModuleInfo",
    "Session",
    "check_counts",
    "check_module",
    "abi2_exports",
    "check_response",
    "decode_abi1",
    "decode_abi2",
    "encode_abi1",
    "fused_abi2_wat",
    "new_session",
    "host_functions",
    "is_component",
]

# --- names and signatures ----------------------------------------------------------------------
# The ABI 2 names (HOST_MODULE, LOG, REALLOC, EXECUTE, POST_EXECUTE, LOG_LEVELS) are those of
# the plugin world, imported above from wit.py. A module may use the names of any version of the
# world this host runs (HOST_MODULES, and execute and post-return of one version, as
# :func:`abi2_exports` finds them): a 1.1.0 module's are those of a 1.0.0 module with the
# version changed; its `execute-text` export is for components and is not used here.

MEMORY: Final = "memory"

V1_VERSION: Final = "vultrino_plugin_version"
V1_ALLOC: Final = "vultrino_alloc"
V1_FREE: Final = "vultrino_free"
V1_EXECUTE: Final = "vultrino_execute"
V1_VALIDATE: Final = "vultrino_validate_params"

ERROR_CODES: Final = frozenset({"invalid_params", "unknown_action", "invalid_credential", "failed"})

#: ABI 1 result codes, as the Rust Vultrino's pgp-signing plugin defines them (0 ok, -1 error,
#: -2 invalid action, -3 invalid params) plus the positive codes of its ``WasmResultCode`` enum.
#: Any other non-zero code is ``failed``.
ABI1_CODES: Final[dict[int, str]] = {
    -1: "failed",
    -2: "unknown_action",
    -3: "invalid_params",
    1: "invalid_params",
    2: "unknown_action",
    3: "failed",
    4: "failed",
    5: "invalid_credential",
}

_I32x4_I32 = FuncType(("i32", "i32", "i32", "i32"), ("i32",))
_I32x2_I32 = FuncType(("i32", "i32"), ("i32",))

ABI2_REQUIRED: Final[dict[str, FuncType]] = {
    REALLOC: _I32x4_I32,
    EXECUTE: _I32x2_I32,
}
ABI2_OPTIONAL: Final[dict[str, FuncType]] = {POST_EXECUTE: FuncType(("i32",), ())}
ABI1_REQUIRED: Final[dict[str, FuncType]] = {
    V1_VERSION: FuncType((), ("i32",)),
    V1_ALLOC: FuncType(("i32",), ("i32",)),
    V1_FREE: FuncType(("i32", "i32"), ()),
    V1_EXECUTE: FuncType(("i32", "i32"), ("i64",)),
}
ABI1_OPTIONAL: Final[dict[str, FuncType]] = {V1_VALIDATE: _I32x4_I32}
LOG_TYPE: Final = FuncType(("i32", "i32", "i32"), ())
#: The canonical-ABI lowering of the ``keys`` functions by kind (wit.KEYS_FUNCTIONS): the
#: arguments flattened, then a return pointer (the result does not fit one flat value).
KEYS_TYPES: Final[dict[str, FuncType]] = {
    "sign": FuncType(("i32",) * 6, ()),  # field ptr, len, format, data ptr, len, retptr
    "public": FuncType(("i32",) * 4, ()),  # field ptr, len, format, retptr
    "hash": FuncType(("i32",) * 3, ()),  # data ptr, len, retptr
    "verify": FuncType(("i32",) * 6, ("i32",)),  # key, message, signature (ptr, len each)
}
#: ``http.send: func(request: list<u8>) -> list<u8>``: request ptr, len, retptr.
HTTP_TYPE: Final = FuncType(("i32",) * 3, ())

_M32 = 0xFFFF_FFFF
_M64 = 0xFFFF_FFFF_FFFF_FFFF
_PAIR = struct.Struct("<II")
_U32 = struct.Struct("<I")
_ZERO32 = bytes(4)
_LOG_ENTRY = struct.Struct("<II")


@dataclass(frozen=True)
class ModuleInfo:
    """What :meth:`WasmRuntime.inspect` found: the ABI, the module's digest, size and shape."""

    abi: int
    sha256: str
    size: int
    imports: tuple[ImportDesc, ...]
    exports: tuple[ExportDesc, ...]


# --- checking a module -------------------------------------------------------------------------


def is_component(wasm: bytes) -> bool:
    """True when ``wasm`` is a component: magic, then version ``0d 00`` and layer ``01 00``."""
    return bytes(wasm[:4]) == b"\0asm" and bytes(wasm[6:8]) == b"\x01\x00"


def abi2_exports(has_export: Callable[[str], object | None]) -> tuple[str, str]:
    """The names of ``execute`` and its post-return in a module (of the newest version of the
    world whose ``execute`` it exports; the current version's when it exports none)."""
    for execute, post in zip(EXECUTE_EXPORTS, POST_EXECUTES, strict=True):
        if has_export(execute) is not None:
            return execute, post
    return EXECUTE, POST_EXECUTE


def detect_abi(shape: ModuleShape) -> int | None:
    """2 when the ABI 2 ``execute`` is exported, 1 for the ABI 1 exports, else None."""
    if any(shape.export(name) is not None for name in EXECUTE_EXPORTS):
        return 2
    if shape.export(V1_EXECUTE) is not None or shape.export(V1_VERSION) is not None:
        return 1
    return None


def check_module(shape: ModuleShape) -> int:
    """The module's ABI; ``ModuleError`` listing every offending import and export."""
    abi = detect_abi(shape)
    if abi is None:
        raise ModuleError(
            "this module is not a Vultrino plugin: it exports neither "
            f"`{EXECUTE}` (ABI 2, see {WIT_FILE}) nor `{V1_EXECUTE}` (ABI 1)"
        )
    if abi == 2:
        execute, post = abi2_exports(shape.export)
        required = {REALLOC: _I32x4_I32, execute: _I32x2_I32}
        optional = {post: ABI2_OPTIONAL[POST_EXECUTE]}
    else:
        required, optional = ABI1_REQUIRED, ABI1_OPTIONAL
    problems: list[str] = []
    memory = shape.export(MEMORY)
    if memory is None or memory.kind != "memory":
        problems.append(f"missing required export `{MEMORY}` (the linear memory)")
    for name, ftype in required.items():
        problems.extend(_check_export(shape.export(name), name, ftype, required=True))
    for name, ftype in optional.items():
        problems.extend(_check_export(shape.export(name), name, ftype, required=False))
    for imp in shape.imports:
        problem = _check_import(imp, abi)
        if problem:
            problems.append(problem)
    if problems:
        raise ModuleError(
            f"the module does not fit Vultrino plugin ABI {abi}: " + "; ".join(problems)
        )
    return abi


def _check_export(
    export: ExportDesc | None, name: str, ftype: FuncType, *, required: bool
) -> list[str]:
    if export is None:
        return [f"missing required export `{name}` {ftype}"] if required else []
    if export.kind != "func":
        return [f"export `{name}` is a {export.kind}, expected a function {ftype}"]
    if export.type != ftype:
        return [f"export `{name}` has signature {export.type}, expected {ftype}"]
    return []


def _check_import(imp: ImportDesc, abi: int = 2) -> str | None:
    where = f"import `{imp.module}`.`{imp.name}`"
    if imp.module == HTTP:
        if imp.name != HTTP_SEND:
            return f"{where} is not a function of the http interface (see {WIT_FILE})"
        if abi != 2:
            return f"{where}: the http interface is for ABI 2 modules (it needs `{REALLOC}`)"
        if imp.kind != "func" or imp.type != HTTP_TYPE:
            return f"{where} has signature {imp.type or imp.kind}, expected {HTTP_TYPE}"
        return None
    if imp.module in KEYS_MODULES:
        kind = keys_functions(imp.module).get(imp.name)
        if kind is None:
            return f"{where} is not a function of that version's keys interface (see {WIT_FILE})"
        if abi != 2:
            return f"{where}: the keys interface is for ABI 2 modules (it needs `{REALLOC}`)"
        if imp.kind != "func" or imp.type != KEYS_TYPES[kind]:
            return f"{where} has signature {imp.type or imp.kind}, expected {KEYS_TYPES[kind]}"
        return None
    if imp.module in HOST_MODULES and imp.name == LOG:
        if imp.kind != "func" or imp.type != LOG_TYPE:
            return f"{where} has signature {imp.type or imp.kind}, expected {LOG_TYPE}"
        return None
    if imp.module == _wasi.MODULE:
        if imp.kind != "func" or imp.type is None:
            return f"{where} is a {imp.kind}; only WASI functions can be imported"
        expected = _wasi.SIGNATURES.get(imp.name)
        if expected is not None and imp.type != expected:
            return f"{where} has signature {imp.type}, expected {expected} (WASI preview 1)"
        return None
    return (
        f"{where} is not provided by Vultrino (a plugin may import only `{HOST_MODULE}`.`{LOG}`, "
        f"`{KEYS}` functions, `{HTTP}`.`{HTTP_SEND}` and `{_wasi.MODULE}` functions)"
    )


#: More imports or exports than any plugin needs; a module past these is refused before it is
#: compiled (wrapping every export in Python is linear in their number, so this bounds load time).
MAX_IMPORTS: Final = 1000
MAX_EXPORTS: Final = 1000


def check_counts(wasm: bytes) -> None:
    """Refuse a module with more imports or exports than :data:`MAX_IMPORTS`/`MAX_EXPORTS`.

    Reads only the section headers and the two counts; a malformed binary is left for the
    engine to report.
    """
    counts = _section_counts(wasm, {2: "imports", 7: "exports"})
    for what, limit in (("imports", MAX_IMPORTS), ("exports", MAX_EXPORTS)):
        n = counts.get(what, 0)
        if n > limit:
            raise ModuleError(f"the module has {n} {what}; a plugin may have at most {limit}")


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 35:
            raise ValueError("bad LEB128")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _section_counts(wasm: bytes, wanted: dict[int, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    pos = 8  # magic and version
    try:
        while pos < len(wasm) and len(out) < len(wanted):
            section = wasm[pos]
            size, body = _leb128(wasm, pos + 1)
            if section in wanted:
                out[wanted[section]] = _leb128(wasm, body)[0]
            pos = body + size
    except ValueError:
        pass
    return out


# --- host functions ----------------------------------------------------------------------------


def host_functions(
    shape: ModuleShape,
    log: Callable[[str, str], None],
    *,
    max_message_bytes: int = 4096,
    wants: Callable[[str], bool] | None = None,
    buffer: LogBuffer | None = None,
    keys: KeySlot | None = None,
) -> tuple[list[HostFunc], _wasi.GuestOutput]:
    """The host functions the module imports: ``log`` and WASI, both ending in ``log``, and the
    ``keys`` functions, which act on what ``keys`` is bound to during a call.

    Returns them with the :class:`~vultrino.runtime._wasi.GuestOutput` that buffers stdout and
    stderr lines; flush it after each call. ``wants(level)``, when given, is asked before a
    ``log`` message is read out of memory and decoded: False means nobody would see it (it is
    still checked against memory, so a bad pointer fails the call either way). With a
    ``buffer``, ``log`` is reroutable (:class:`LogBuffer`) unless the module has a start
    function, and lines the buffer holds go to the log before any other.
    """
    output = _wasi.GuestOutput(log, max_line=max_message_bytes)
    funcs: list[HostFunc] = []
    wasi: dict[str, FuncType] = {}
    for imp in shape.imports:
        if imp.module in HOST_MODULES and imp.name == LOG:
            reroutable = buffer is not None and not shape.start
            funcs.append(
                _log_function(log, max_message_bytes, wants, buffer, reroutable, module=imp.module)
            )
            if buffer is not None:
                buffer.rerouted = reroutable
                output.before = buffer.flush
        elif imp.module in KEYS_MODULES and imp.name in KEYS_FUNCTIONS:
            funcs.append(_keys_function(imp.name, keys or KeySlot(), imp.module))
        elif imp.module == HTTP and imp.name == HTTP_SEND:
            funcs.append(_http_function(keys or KeySlot()))
        elif imp.module == _wasi.MODULE and imp.type is not None:
            wasi[imp.name] = imp.type
    funcs.extend(_wasi.host_functions(wasi, output, max_output_bytes=64 * max_message_bytes))
    return funcs, output


def _log_function(
    log: Callable[[str, str], None],
    cap: int,
    wants: Callable[[str], bool] | None = None,
    buffer: LogBuffer | None = None,
    reroutable: bool = False,
    *,
    module: str = HOST_MODULE,
) -> HostFunc:
    levels = LOG_LEVELS
    count = len(levels)

    def host_log(memory: Memory, level: int, ptr: int, length: int) -> None:
        if buffer is not None:
            buffer.flush()  # what the guest logged before this line goes first
        level &= _M32
        if level >= count:
            raise PluginABIError(f"log level {level} is not one of 0 (debug) to 3 (error)")
        ptr &= _M32
        length &= _M32
        name = levels[level]
        if wants is not None and not wants(name):  # written nowhere: only the bounds matter
            if ptr + length > memory.size():
                raise PluginABIError(
                    f"the log message at {ptr:#x} ({length} bytes) is outside memory"
                )
            return
        if length > cap and ptr + length > memory.size():
            raise PluginABIError(f"the log message at {ptr:#x} ({length} bytes) is outside memory")
        try:
            data = memory.read(ptr, min(length, cap))
        except PluginABIError:
            raise PluginABIError(
                f"the log message at {ptr:#x} ({length} bytes) is outside memory"
            ) from None
        text = data.decode("utf-8", "replace")
        if length > cap:
            text += f" [... {length - cap} more bytes dropped]"
        log(name, text)

    return HostFunc(module, LOG, LOG_TYPE, host_log, reroutable=reroutable)


class LogBuffer:
    """The guest's ``log`` lines, kept in the fused-call module's memory until the host reads
    them, instead of a call from the guest into Python per line (about 7 µs each on wasmtime).

    The fused-call module's ``log`` export (:func:`fused_abi2_wat` with ``log=True``) takes
    over the guest's ``log`` import (``Instance.attach(reroute=...)``): a valid line of at most
    the message cap is appended to :data:`LOG_AREA` as ``[level u32][length u32][bytes]``;
    anything else — a bad level, a message outside memory or over the cap, a full area — goes to
    the host's own ``log`` function, which reads what is buffered first and then fails the call
    or cuts the message exactly as before. The host reads the area after every call (whatever
    its outcome) and before any line of the guest's stdout or stderr, so the plugin log sees
    the lines in the order the guest wrote them; each line is counted against the per-call cap
    and skipped unread when no sink would write it (``wants``), as a direct call would be.
    """

    def __init__(
        self,
        log: Callable[[str, str], None],
        wants: Callable[[str], bool] | None = None,
        *,
        cap: int = 4096,
    ) -> None:
        self._log = log
        self._wants = wants
        #: The longest message kept in the buffer (longer ones take the host's path).
        self.cap = cap
        #: Whether the guest's ``log`` import may be rerouted to the buffer (set by
        #: :func:`host_functions`: not for a module with a start function).
        self.rerouted = False
        self._view: Callable[[int, int], Any] | None = None

    def bind(self, memory: Memory) -> None:
        """Read lines from ``memory`` (the fused-call module's) from now on."""
        self._view = memory.view

    def flush(self) -> None:
        view = self._view
        if view is None:
            return
        levels, count, wants = LOG_LEVELS, len(LOG_LEVELS), self._wants
        lines: list[tuple[str, bytes]] = []
        area = view(LOG_AREA, 4 + LOG_ROOM)  # a view: one bounds check, no copy
        try:
            used = _U32.unpack_from(area)[0]
            if not used:
                return
            at, end = 4, 4 + min(used, LOG_ROOM)
            while at + 8 <= end:
                level, length = _LOG_ENTRY.unpack_from(area, at)
                start = at + 8
                at = start + length
                name = levels[level] if level < count else "error"  # the module checked it
                if wants is None or wants(name):  # else counted, and never read
                    lines.append((name, area[start:at].tobytes()))
            area[:4] = _ZERO32  # emptied before anything is passed on
        finally:
            del area  # no view of the module's memory outlives this call
        log = self._log
        for name, raw in lines:
            log(name, raw.decode("utf-8", "replace"))


class KeySlot:
    """What a session's ``keys`` functions act on: the current call's :class:`KeyRing` (None
    between calls and for calls without a credential) and the guest's ``cabi_realloc``, with
    which the host places each output in the guest's memory, as the canonical ABI does."""

    __slots__ = ("realloc", "ring")

    def __init__(self) -> None:
        self.ring: _keys.KeyRing | None = None
        self.realloc: Callable[..., int | None] | None = None


_RESULT = struct.Struct("<BxxxII")  # result<list<u8>, E>: tag, pad, ptr, len (12 bytes)
_ERROR = struct.Struct("<BxxxB")  # tag 1, pad, the enum's case


def _guest_bytes(memory: Memory, ptr: int, length: int, what: str) -> bytes:
    ptr &= _M32
    length &= _M32
    try:
        return memory.read(ptr, length)
    except PluginABIError:
        raise PluginABIError(
            f"the {what} at {ptr:#x} ({length} bytes) of a keys call is outside memory"
        ) from None


def _keys_function(name: str, slot: KeySlot, module: str = KEYS) -> HostFunc:
    kind = KEYS_FUNCTIONS[name]

    def place(memory: Memory, out: bytes) -> int:
        realloc = slot.realloc
        if realloc is None:
            raise PluginABIError(f"keys.{name}: the module exports no `{REALLOC}`")
        ptr = (realloc(0, 0, 1, len(out)) or 0) & _M32
        try:
            memory.write(ptr, out)
        except PluginABIError:
            raise PluginABIError(
                f"{REALLOC} returned {ptr:#x} for {len(out)} bytes of a keys.{name} result, "
                "outside the guest's memory"
            ) from None
        return ptr

    def answer(memory: Memory, retptr: int, run: Callable[[], bytes]) -> None:
        retptr &= _M32
        try:
            out = run()
        except _keys.KeyFailure as exc:
            record = _ERROR.pack(1, KEY_ERRORS.index(exc.case)) + b"\0" * 7
        else:
            record = _RESULT.pack(0, place(memory, out), len(out))
        try:
            memory.write(retptr, record)
        except PluginABIError:
            raise PluginABIError(
                f"keys.{name}: the return pointer {retptr:#x} is outside the guest's memory"
            ) from None

    def field_name(memory: Memory, ptr: int, length: int) -> str:
        raw = _guest_bytes(memory, ptr, length, "field name")
        return raw.decode("utf-8", "replace")

    if kind == "sign":
        op = _keys.sign_op(name)

        def sign(  # noqa: PLR0917 - the lowered signature
            memory: Memory, fp: int, fl: int, fmt: int, dp: int, dl: int, ret: int
        ) -> None:
            # the hot path of a signing plugin: one function, no closures per call
            try:
                field = memory.read(fp & _M32, fl & _M32).decode("utf-8", "replace")
                data = memory.read(dp & _M32, dl & _M32)
            except PluginABIError:
                raise PluginABIError(
                    f"keys.{name}: the field name or the data lies outside the guest's memory"
                ) from None
            try:
                out = op(slot.ring, field, fmt & _M32, data)
            except _keys.KeyFailure as exc:
                record = _ERROR.pack(1, KEY_ERRORS.index(exc.case)) + b"\0" * 7
            else:
                record = _RESULT.pack(0, place(memory, out), len(out))
            try:
                memory.write(ret & _M32, record)
            except PluginABIError:
                raise PluginABIError(
                    f"keys.{name}: the return pointer {ret & _M32:#x} is outside the guest's memory"
                ) from None

        return HostFunc(module, name, KEYS_TYPES[kind], sign)
    if kind == "public":
        pop = _keys.public_op(name)

        def public(memory: Memory, fp: int, fl: int, fmt: int, ret: int) -> None:
            field = field_name(memory, fp, fl)
            answer(memory, ret, lambda: pop(slot.ring, field, fmt & _M32))

        return HostFunc(module, name, KEYS_TYPES[kind], public)
    if kind == "verify":
        vop = _keys.verify_op(name)

        def verify(  # noqa: PLR0917 - the lowered signature
            memory: Memory, kp: int, kl: int, mp: int, ml: int, sp: int, sl: int
        ) -> int:
            key = _guest_bytes(memory, kp, kl, "public key")
            message = _guest_bytes(memory, mp, ml, "message")
            signature = _guest_bytes(memory, sp, sl, "signature")
            return 1 if vop(key, message, signature) else 0

        return HostFunc(module, name, KEYS_TYPES[kind], verify)
    hop = _keys.hash_op(name)

    def digest(memory: Memory, dp: int, dl: int, ret: int) -> None:
        out = hop(_guest_bytes(memory, dp, dl, "data"))
        ptr = place(memory, out)
        try:
            memory.write(ret & _M32, _PAIR.pack(ptr, len(out)))
        except PluginABIError:
            raise PluginABIError(
                f"keys.{name}: the return pointer {ret & _M32:#x} is outside the guest's memory"
            ) from None

    return HostFunc(module, name, KEYS_TYPES[kind], digest)


#: ``http.send``'s answer when the call may send no request (no credential, or the plugin's
#: manifest declares no ``[http]``).
_NO_HTTP: Final = _msgpack.packb(
    {
        "error": {
            "code": "no-credential",
            "message": "this call cannot send HTTP requests: the action has no credential, or "
            "plugin.toml declares no [http] hosts and auth",
        }
    }
)


def _http_function(slot: KeySlot) -> HostFunc:
    """``http.send`` for a core module: the request's bytes to the current call's handler
    (:attr:`KeyRing.http`), its answer placed in the guest's memory by ``cabi_realloc``."""

    def send(memory: Memory, ptr: int, length: int, ret: int) -> None:
        ptr &= _M32
        length &= _M32
        try:
            data = memory.read(ptr, length)
        except PluginABIError:
            raise PluginABIError(
                f"the request at {ptr:#x} ({length} bytes) of an http.send call is outside memory"
            ) from None
        ring = slot.ring
        handler = ring.http if ring is not None else None
        out = _NO_HTTP if handler is None else handler(data)
        realloc = slot.realloc
        if realloc is None:
            raise PluginABIError(f"http.send: the module exports no `{REALLOC}`")
        at = (realloc(0, 0, 1, len(out)) or 0) & _M32
        try:
            memory.write(at, out)
            memory.write(ret & _M32, _PAIR.pack(at, len(out)))
        except PluginABIError:
            raise PluginABIError(
                f"http.send: {REALLOC} returned {at:#x} for {len(out)} bytes, or the return "
                f"pointer {ret & _M32:#x} is outside the guest's memory"
            ) from None

    return HostFunc(HTTP, HTTP_SEND, HTTP_TYPE, send)


# --- responses ---------------------------------------------------------------------------------


def check_response(value: Any) -> dict[str, Any]:
    """``value`` when it is ``{"ok": any}`` or ``{"error": {"code", "message"}}`` (the error
    may carry a third key, ``detail``: a map of what the guest knows of the failure, such as a
    traceback; the plugin layer keeps only the parts it knows), else raise."""
    if type(value) is dict and len(value) == 1:
        if "ok" in value:
            return value
        err = value.get("error")
        if (
            type(err) is dict
            and (len(err) == 2 or (len(err) == 3 and type(err.get("detail")) is dict))
            and type(err.get("code")) is str
            and type(err.get("message")) is str
        ):
            if err["code"] in ERROR_CODES:
                return value
            raise PluginABIError(
                f"the plugin answered with error code {err['code'][:64]!r}, which is not one of "
                f"{', '.join(sorted(ERROR_CODES))}"
            )
    raise PluginABIError(
        'the plugin\'s answer is not {"ok": value} or {"error": {"code": str, "message": str}}'
        f" (got {_describe(value)})"
    )


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(repr(k)[:40] for k in list(value)[:5])
        return f"a map with keys {keys}" if keys else "an empty map"
    return f"a value of type {type(value).__name__}"


# --- sessions ----------------------------------------------------------------------------------


class Session:
    """One instance, ready to serve calls. Not thread-safe: one call at a time."""

    abi: int
    #: The host's log sink for this session; set by whoever creates the session.
    log: Any = None
    #: What the guest's ``keys`` imports act on, bound per call; None when it imports none.
    keys: KeySlot | None = None

    def __init__(self, instance: Instance, limits: Limits, output: _wasi.GuestOutput) -> None:
        self.instance = instance
        self.output = output
        self._memory = instance.memory
        self._deadline = limits.deadline_s
        self._cap = limits.output_bytes

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def flush_log(self) -> None:
        """Pass on the log lines the session still holds (after a failed call)."""

    def close(self) -> None:
        self.instance.close()

    def _export(self, name: str) -> Callable[..., int | None]:
        fn = self.instance.export(name)
        if fn is None:
            raise ModuleError(f"the instance does not export `{name}`")
        return fn

    def _read_result(self, what: str, ptr: int, length: int) -> bytes:
        if length > self._cap:
            self._over_cap(what, length)
        try:
            return self._memory.read(ptr, length)
        except PluginABIError:
            self._outside(what, ptr, length)

    def _over_cap(self, what: str, length: int) -> NoReturn:
        raise PluginABIError(
            f"{what} returned a {length}-byte result, over the {self._cap}-byte output cap "
            "(raise limits.output_bytes if that is expected)"
        )

    def _outside(self, what: str, ptr: int, length: int) -> NoReturn:
        raise PluginABIError(
            f"{what} returned a result at {ptr:#x} of {length} bytes, which lies outside "
            f"the guest's memory ({self._memory.size()} bytes)"
        ) from None


# The fused ABI 2 call: a module of the host's own, instantiated beside the guest when the
# engine can (``Instance.attach``), runs cabi_realloc, the copy of the request, execute, the
# result's bounds checks, the copy of the result and post-return in one host-to-guest
# transition instead of three calls and two host-side memory accesses. The guest never sees its
# memory. Staging layout: [0, 4) result pointer, [4, 8) result length, [8, 12) what
# cabi_realloc returned, [12, 16) what execute returned, then the request (on the way in) and
# the result (on the way out). ``call(n, max)`` returns the result's length, or -1 (cabi_realloc's
# pointer is out of bounds), -2 (execute's is), -3 (the result is), -4 (the result is longer
# than ``max``: it is left in the guest's memory, post-return not called, for the plain path).
FUSED_DATA: Final = 16
FUSED_BYTES: Final = WASM_PAGE
_FUSED_ROOM: Final = FUSED_BYTES - FUSED_DATA  # the longest request or result it holds
_FUSED_HEAD = struct.Struct("<IIII")
#: With a buffered ``log`` (:class:`LogBuffer`) the staging memory has a second page: at
#: LOG_AREA the bytes in use, from LOG_DATA the lines.
LOG_AREA: Final = FUSED_BYTES
LOG_DATA: Final = LOG_AREA + 4
LOG_ROOM: Final = WASM_PAGE - 4
_LOG_WAT = """
  (func (export "log") (param $level i32) (param $ptr i32) (param $len i32)
    (local $used i32) (local $at i32)
    (local.set $used (i32.load $s (i32.const {area})))
    (if (i32.or
          (i32.or (i32.ge_u (local.get $level) (i32.const 4))
                  (i32.gt_u (local.get $len) (i32.const {cap})))
          (i32.or (call $outside (local.get $ptr) (local.get $len))
                  (i32.gt_u (i32.add (local.get $used) (i32.add (local.get $len) (i32.const 8)))
                            (i32.const {room}))))
      (then (call $host_log (local.get $level) (local.get $ptr) (local.get $len)) (return)))
    (local.set $at (i32.add (i32.const {data}) (local.get $used)))
    (i32.store $s (local.get $at) (local.get $level))
    (i32.store $s offset=4 (local.get $at) (local.get $len))
    (memory.copy $s $g (i32.add (local.get $at) (i32.const 8)) (local.get $ptr) (local.get $len))
    (i32.store $s (i32.const {area})
               (i32.add (local.get $used) (i32.add (local.get $len) (i32.const 8)))))
"""
_FUSED_WAT = """(module
  (import "guest" "memory" (memory $g 0))
  (import "guest" "{realloc}" (func $realloc (param i32 i32 i32 i32) (result i32)))
  (import "guest" "{execute}" (func $execute (param i32 i32) (result i32)))
  {post_import}
  {log_import}
  (memory $s (export "memory") {pages} {pages})
  (func $outside (param $p i32) (param $n i32) (result i32)
    (i64.gt_u (i64.add (i64.extend_i32_u (local.get $p)) (i64.extend_i32_u (local.get $n)))
              (i64.shl (i64.extend_i32_u (memory.size $g)) (i64.const 16))))
  (func (export "call") (param $n i32) (param $max i32) (result i32)
    (local $ptr i32) (local $ret i32) (local $rptr i32) (local $rlen i32)
    (local.set $ptr (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $n)))
    (i32.store $s (i32.const 8) (local.get $ptr))
    (if (call $outside (local.get $ptr) (local.get $n)) (then (return (i32.const -1))))
    (memory.copy $g $s (local.get $ptr) (i32.const {data}) (local.get $n))
    (local.set $ret (call $execute (local.get $ptr) (local.get $n)))
    (i32.store $s (i32.const 12) (local.get $ret))
    (if (call $outside (local.get $ret) (i32.const 8)) (then (return (i32.const -2))))
    (local.set $rptr (i32.load $g (local.get $ret)))
    (local.set $rlen (i32.load $g offset=4 (local.get $ret)))
    (i32.store $s (i32.const 0) (local.get $rptr))
    (i32.store $s (i32.const 4) (local.get $rlen))
    (if (i32.gt_u (local.get $rlen) (local.get $max)) (then (return (i32.const -4))))
    (if (call $outside (local.get $rptr) (local.get $rlen)) (then (return (i32.const -3))))
    (memory.copy $s $g (i32.const {data}) (local.get $rptr) (local.get $rlen))
    {post_call}
    (local.get $rlen))
  {log_func})
"""


def fused_abi2_wat(
    post: bool,
    log_cap: int | None = None,
    execute: str = EXECUTE,
    post_name: str = POST_EXECUTE,
) -> str:
    """The text of the fused-call module, for a guest with or without post-return (whose
    exports are named ``execute`` and ``post_name``); with ``log_cap``, also the buffered
    ``log`` of :class:`LogBuffer` (messages up to that size)."""
    log = log_cap is not None
    return _FUSED_WAT.format(
        realloc=REALLOC,
        execute=execute,
        data=FUSED_DATA,
        post_import=(f'(import "guest" "{post_name}" (func $post (param i32)))' if post else ""),
        post_call="(call $post (local.get $ret))" if post else "",
        log_import=(f'(import "host" "{LOG}" (func $host_log (param i32 i32 i32)))' if log else ""),
        pages=2 if log else 1,
        log_func=(
            _LOG_WAT.format(area=LOG_AREA, data=LOG_DATA, room=LOG_ROOM, cap=log_cap) if log else ""
        ),
    )


class Abi2Session(Session):
    """ABI 2: ``cabi_realloc`` the request, ``execute``, read ``[ptr, len]``, post-return.

    With ``fused`` (the engine declares ``fused_call``) the session attaches the fused-call
    module: a request and a result that fit its staging memory make one call into the store,
    and the answer is decoded from the staging memory. Otherwise the answer is decoded from the
    guest's memory through ``Memory.view`` (zero-copy where the engine can), before post-return
    lets the guest reuse that memory.
    """

    abi = 2

    def __init__(
        self,
        instance: Instance,
        limits: Limits,
        output: _wasi.GuestOutput,
        *,
        fused: bool = False,
        log_buffer: LogBuffer | None = None,
    ) -> None:
        super().__init__(instance, limits, output)
        execute, post_name = abi2_exports(instance.export)
        self._log_buffer: LogBuffer | None = None
        self._realloc = self._export(REALLOC)
        self._execute = self._export(execute)
        self._post = instance.export(post_name)
        self._set_deadline = instance.set_deadline
        self._write = self._memory.write
        self._read = self._memory.read
        self._view: Callable[[int, int], bytes | memoryview] = self._memory.view
        self._fused: Callable[..., int | None] | None = None
        self._fused_max = min(_FUSED_ROOM, self._cap)
        if fused:
            imports = [REALLOC, execute] + ([post_name] if self._post is not None else [])
            buffered = log_buffer is not None and log_buffer.rerouted
            cap = log_buffer.cap if log_buffer is not None and buffered else None
            wat = fused_abi2_wat(self._post is not None, cap, execute, post_name)
            try:
                helper = instance.attach(wat, imports, reroute=[LOG] if buffered else ())
            except ModuleError:
                pass  # the plain path serves every call, and log calls the host directly
            else:
                staging = helper.memory
                self._fused = helper.export("call")
                self._stage = staging.write
                self._staged: Callable[[int, int], bytes | memoryview] = staging.view
                if buffered and log_buffer is not None:
                    log_buffer.bind(staging)
                    self._log_buffer = log_buffer

    @property
    def fused(self) -> bool:
        """Whether calls that fit the staging memory are made as one fused call."""
        return self._fused is not None

    @property
    def buffered_log(self) -> bool:
        """Whether the guest's ``log`` lines are kept in the fused-call module (LogBuffer)."""
        return self._log_buffer is not None

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            data = _msgpack.packb(request)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ParameterError(f"the request cannot be encoded as MessagePack: {exc}") from exc
        n = len(data)
        self._set_deadline(self._deadline)
        fused = self._fused
        if fused is None or n > _FUSED_ROOM:
            return self._plain(data, n)
        self._stage(FUSED_DATA, data)
        rlen: int = fused(n, self._fused_max)  # type: ignore[assignment]
        if rlen < 0:
            rptr, length, ptr, ret = _FUSED_HEAD.unpack(self._staged(0, 16))
            if rlen == -1:
                self._realloc_outside(ptr, n)
            if rlen == -2:
                self._result_pointer_outside(ret)
            if rlen == -3:
                self._outside("execute", rptr, length)
            return self._finish(ret, rptr, length)  # -4: longer than the staging memory
        raw = self._staged(FUSED_DATA, rlen)
        value = decode_abi2(raw)
        del raw
        return self._answer(value)

    def _plain(self, data: bytes, n: int) -> dict[str, Any]:
        ptr = self._realloc(0, 0, 1, n) & _M32  # type: ignore[operator]
        try:
            self._write(ptr, data)
        except PluginABIError:
            self._realloc_outside(ptr, n)
        ret = self._execute(ptr, n) & _M32  # type: ignore[operator]
        try:
            rptr, rlen = _PAIR.unpack(self._view(ret, 8))
        except PluginABIError:
            self._result_pointer_outside(ret)
        return self._finish(ret, rptr, rlen)

    def _finish(self, ret: int, rptr: int, rlen: int) -> dict[str, Any]:
        """Check, decode and release the result execute described at ``ret``."""
        if rlen > self._cap:
            self._over_cap("execute", rlen)
        try:
            raw = self._view(rptr, rlen)
        except PluginABIError:
            self._outside("execute", rptr, rlen)
        value = decode_abi2(raw)
        del raw  # no view of guest memory survives the guest's next instruction
        if self._post is not None:
            self._post(ret)
        return self._answer(value)

    def _answer(self, value: Any) -> dict[str, Any]:
        if self._log_buffer is not None:
            self._log_buffer.flush()
        if self.output.pending:
            self.output.flush()
        return check_response(value)

    def flush_log(self) -> None:
        if self._log_buffer is not None:
            self._log_buffer.flush()

    def _realloc_outside(self, ptr: int, n: int) -> NoReturn:
        raise PluginABIError(
            f"cabi_realloc returned {ptr:#x}, but {n} bytes there lie outside the guest's "
            f"memory ({self._memory.size()} bytes)"
        ) from None

    def _result_pointer_outside(self, ret: int) -> NoReturn:
        raise PluginABIError(
            f"execute returned the result pointer {ret:#x}, outside the guest's memory "
            f"({self._memory.size()} bytes)"
        ) from None


class Abi1Session(Session):
    """ABI 1: JSON in via ``vultrino_alloc``, ``vultrino_execute`` -> ``ptr << 32 | len``."""

    abi = 1

    def __init__(self, instance: Instance, limits: Limits, output: _wasi.GuestOutput) -> None:
        super().__init__(instance, limits, output)
        self._alloc = self._export(V1_ALLOC)
        self._free = self._export(V1_FREE)
        self._execute = self._export(V1_EXECUTE)
        self._validate = instance.export(V1_VALIDATE)

    def version(self) -> int:
        """What ``vultrino_plugin_version()`` returns (1 for every plugin this host runs)."""
        self.instance.set_deadline(self._deadline)
        return _signed32(self._export(V1_VERSION)())

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        body, action, params = encode_abi1(request)
        self.instance.set_deadline(self._deadline)
        if self._validate is not None:
            rejected = self._validate_params(action, params)
            if rejected is not None:
                return rejected
        out = self._execute_json(body)
        if self.output.pending:
            self.output.flush()
        return decode_abi1(out)

    def _validate_params(self, action: bytes, params: bytes) -> dict[str, Any] | None:
        aptr = self._put(action)
        pptr = self._put(params)
        rc = _signed32(self._validate(aptr, len(action), pptr, len(params)))  # type: ignore[misc]
        self._free(aptr, len(action))
        self._free(pptr, len(params))
        if rc == 0:
            return None
        if rc == -2:
            name = action.decode(errors="replace")
            return _error("unknown_action", f"the plugin does not support the action {name!r}")
        return _error("invalid_params", f"the plugin rejected the parameters (code {rc})")

    def _execute_json(self, body: bytes) -> bytes:
        ptr = self._put(body)
        packed = self._execute(ptr, len(body)) & _M64  # type: ignore[operator]
        rptr, rlen = packed >> 32, packed & _M32
        if rptr == 0 and rlen:
            raise PluginABIError(
                "vultrino_execute returned a null result pointer (did vultrino_alloc fail?)"
            )
        out = self._read_result("vultrino_execute", rptr, rlen)
        if rptr and rptr != ptr:
            self._free(rptr, rlen)
        self._free(ptr, len(body))
        return out

    def _put(self, data: bytes) -> int:
        ptr = self._alloc(len(data)) & _M32  # type: ignore[operator]
        if ptr == 0:
            raise PluginABIError(f"vultrino_alloc({len(data)}) returned a null pointer")
        try:
            self._memory.write(ptr, data)
        except PluginABIError:
            raise PluginABIError(
                f"vultrino_alloc returned {ptr:#x}, but {len(data)} bytes there lie outside "
                f"the guest's memory ({self._memory.size()} bytes)"
            ) from None
        return ptr


#: An answer may hold at most this many values (map keys and values, array elements) ...
MAX_ANSWER_VALUES: Final = 100_000
#: ... and nest containers at most this deep. Both bound what decoding, scrubbing and JSON
#: conversion of one answer can cost the host, whatever the output cap lets through.
MAX_ANSWER_DEPTH: Final = 64


def decode_abi2(raw: bytes | memoryview) -> Any:
    """One MessagePack value, or ``PluginABIError``."""
    try:
        return _msgpack.unpackb(raw, max_nodes=MAX_ANSWER_VALUES, max_depth=MAX_ANSWER_DEPTH)
    except _msgpack.LimitError as exc:
        raise PluginABIError(
            f"the plugin's answer is refused: {exc} (an answer may hold at most "
            f"{MAX_ANSWER_VALUES} values, nested at most {MAX_ANSWER_DEPTH} deep)"
        ) from None
    except _msgpack.DecodeError:
        raise PluginABIError(
            f"the plugin returned {len(raw)} bytes that are not one MessagePack value"
        ) from None


def encode_abi1(request: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    """The Rust Vultrino's JSON request, the action name and the parameters JSON.

    ``{"action", "credential": {"type": "custom", <field>: "<value>"...}, "parameters":
    {...}}``: the credential exactly as the Rust host serialised a plugin credential (its
    ``CredentialData::Custom`` map of secrets, tagged ``"type": "custom"``), so every value is a
    string and an empty or unset field is left out, as that host never stored one. A request
    without a credential sends ``{}`` (the Rust host always sent an object).
    """
    action = request.get("action")
    if not isinstance(action, str):
        raise ParameterError("the request has no action name")
    credential = request.get("credential")
    fields = credential.get("fields", {}) if isinstance(credential, dict) else {}
    sent: dict[str, Any] = {}
    if isinstance(credential, dict):
        sent["type"] = "custom"
        for name, value in fields.items():
            text = abi1_string(value)
            if text:
                sent[name] = text  # a field named "type" wins, as the last key did there
    params = request.get("params") or {}
    try:
        body = _json({"action": action, "credential": sent, "parameters": params})
        params_json = _json(params)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"the request cannot be encoded as JSON: {exc}") from exc
    return body, action.encode(), params_json


def abi1_string(value: Any) -> str:
    """A field value as the Rust host held it: a string (``true``/``false`` for a checkbox,
    the number's JSON text for a number; None is empty)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def decode_abi1(raw: bytes) -> dict[str, Any]:
    """``{"code", "data", "error"}`` JSON to the neutral answer (codes: :data:`ABI1_CODES`).

    ``data`` is passed on as the string the plugin returned, even when it holds JSON: ABI 1
    plugins answer strings, and parsing would change what callers of the Rust host saw.
    """
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise PluginABIError(
            f"the plugin returned {len(raw)} bytes that are not a JSON document ({exc})"
        ) from None
    if (
        not isinstance(doc, dict)
        or type(doc.get("code")) is not int
        or not isinstance(doc.get("data"), (str, type(None)))
        or not isinstance(doc.get("error"), (str, type(None)))
    ):
        raise PluginABIError(
            'the plugin\'s answer is not {"code": int, "data": string|null, '
            f'"error": string|null}} (got {_describe(doc)})'
        )
    code: int = doc["code"]
    if code == 0:
        return {"ok": doc.get("data")}
    message = doc.get("error") or f"the plugin failed with code {code}"
    return _error(ABI1_CODES.get(code, "failed"), message)


def new_session(
    abi: int,
    instance: Instance,
    limits: Limits,
    output: _wasi.GuestOutput,
    *,
    fused: bool = False,
    log_buffer: LogBuffer | None = None,
) -> Session:
    """A session of the right ABI for ``instance``; ``fused`` when its engine declares
    ``fused_call`` (ABI 2 sessions then attach the fused-call module, with the ``log``
    buffer when ``log_buffer`` was given to :func:`host_functions`)."""
    if abi == 2:
        return Abi2Session(instance, limits, output, fused=fused, log_buffer=log_buffer)
    return Abi1Session(instance, limits, output)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _signed32(value: int | None) -> int:
    v = (value or 0) & _M32
    return v - (1 << 32) if v & 0x8000_0000 else v
