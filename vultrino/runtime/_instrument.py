"""Rewrite a wasm module so that limits hold on an engine that cannot enforce them itself.

wasmer-python has no fuel, no epoch interruption and no memory limiter, and a Python thread
cannot stop native code that never returns. So the limits are compiled into the module before
the engine sees it; the engine then only has to run ordinary wasm.

**Deadline.** A new imported function ``vultrino:instrument.check (reason i32) -> i64`` and a
new mutable ``i64`` global, the fuel, are added. Only loops and call cycles can run without
bound, so only they are metered:

* every ``loop`` header runs ``fuel -= 1; if fuel <= 0 { fuel = check(REASON_FUEL) }``;
* every function that calls another defined function (directly, indirectly or by tail call)
  runs the same tick at its entry, which bounds recursion.

The straight-line work between two ticks is therefore bounded by the size of one function body.
``check`` hands out a fresh chunk of fuel, or raises once the wall-clock deadline has passed,
which unwinds the wasm call; the host is entered once per chunk, not once per tick.

Inside a function that loops, the fuel lives in an added local: a counter in a global (or in
memory) puts a store-to-load round trip on every iteration, which made tight loops eight times
slower, while a local stays in a register. The local is loaded from the global at entry and
after calls that may spend fuel, and written back before such calls, before tail calls and
before every way out of the function (``return``, a branch to the function's own label, the
final ``end``), so no fuel is lost between functions. A function that calls but does not loop
ticks the global itself, once, at entry, and leaves it authoritative. Functions with neither
loops nor calls to defined functions are left untouched.

**Memory cap.** The memory's maximum is lowered to the cap, so ``memory.grow`` past it returns
-1 exactly as the spec allows. Every ``memory.grow`` goes through a small added function that
reports the outcome to ``check`` (``REASON_GROW_FAILED`` / ``REASON_GROWN``): the host learns
that the guest hit the cap (for a precise ``PluginMemoryError``) and that its view of the linear
memory must be re-acquired. Tables, which sit outside the memory cap, get a maximum of
``MAX_TABLE_ELEMENTS`` entries, and a module with more than ``MAX_TABLES`` tables is refused,
so tables cannot make the host allocate more than a few MiB.

**Indices.** The import is appended after the existing ones, which shifts every defined
function's index by one, so every function index is rewritten: ``call``, ``return_call``,
``ref.func`` (in code and in constant expressions), element segments (all eight forms), exports
and the start section. Types, globals and functions that are added go after the existing ones,
so no other index moves. The ``name`` section is dropped (its function indices would be stale);
everything else — section order, other custom sections, data — is copied byte for byte. The
guest cannot reach the fuel or ``check``: their indices lie past everything the original code,
validated before instrumentation, can refer to.

The decoder knows the MVP plus what Rust and clang emit today: sign extension, saturating
conversions, bulk memory, reference types, typed ``select``, multi-value block types, tail calls,
threads (atomics) and SIMD (including relaxed SIMD). Anything else is a ``ModuleError`` naming the
opcode. Pure Python without dependencies, so it is tested against any engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vultrino.errors import ModuleError
from vultrino.runtime.engine import MAX_TABLE_ELEMENTS, MAX_TABLES

__all__ = [
    "CHECK_MODULE",
    "CHECK_NAME",
    "INSTRUMENT_VERSION",
    "MAX_MEMORY_PAGES",
    "MAX_TABLES",
    "MAX_TABLE_ELEMENTS",
    "REASON_FUEL",
    "REASON_GROWN",
    "REASON_GROW_FAILED",
    "instrument",
]

#: Bump whenever the output for the same input changes (it is part of the cache fingerprint).
INSTRUMENT_VERSION = 2
CHECK_MODULE = "vultrino:instrument"
CHECK_NAME = "check"
REASON_FUEL = 0
REASON_GROW_FAILED = 1
REASON_GROWN = 2
#: The most pages a 32-bit memory can have (4 GiB).
MAX_MEMORY_PAGES = 65536

_MAGIC = b"\x00asm\x01\x00\x00\x00"
_FUNC, _TABLE, _MEMORY, _GLOBAL, _TAG = 0, 1, 2, 3, 4
# Value types that are a single byte; the typed-reference forms (0x63, 0x64) are not supported.
_VALTYPES = frozenset({0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F})
_REFTYPES = frozenset({0x70, 0x6F})
# Where a standard section goes; the tag section (13) sits between memory and global, the data
# count section (12) between element and code.
_ORDER = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 5.5, 6: 6, 7: 7, 8: 8, 9: 9, 12: 9.5, 10: 10, 11: 11}


class _Malformed(Exception):  # noqa: N818 - internal signal, turned into ModuleError
    pass


def _fail(what: str) -> ModuleError:
    return ModuleError(
        f"the module cannot be prepared for the wasmer engine: {what}; rebuild it for "
        "wasm32-wasip1 without unusual target features, or use the wasmtime engine"
    )


def instrument(wasm: bytes, *, max_memory_pages: int, initial_fuel: int = 0) -> bytes:
    """Return ``wasm`` with the deadline ticks, the memory cap and the table cap compiled in.

    ``wasm`` must already be valid (the engine validates it first); the result is valid too and
    behaves identically except that it calls ``check`` and cannot grow past the caps. A module
    with an imported memory, several memories, more than ``MAX_TABLES`` tables, or an initial
    memory above the cap is refused with a ``ModuleError``, as is one using an instruction the
    decoder does not know.
    """
    if not 1 <= max_memory_pages <= MAX_MEMORY_PAGES:
        raise ValueError(f"max_memory_pages must be in 1..{MAX_MEMORY_PAGES}")
    try:
        return _Rewriter(bytes(wasm), max_memory_pages, initial_fuel).run()
    except (_Malformed, IndexError) as exc:
        detail = str(exc) if isinstance(exc, _Malformed) else "it ends in the middle of a section"
        raise ModuleError(f"the module is malformed: {detail}") from exc


# --- LEB128 ----------------------------------------------------------------------------------


def _u32(b: bytes, i: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = b[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise _Malformed("integer too long")


def _skip_leb(b: bytes, i: int) -> int:
    end = i + 10
    while b[i] & 0x80:
        i += 1
        if i >= end:
            raise _Malformed("integer too long")
    return i + 1


def _enc_u32(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _enc_s64(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _name(s: str) -> bytes:
    raw = s.encode()
    return _enc_u32(len(raw)) + raw


# --- the opcode table ------------------------------------------------------------------------

(
    _K_NONE,
    _K_LEB,
    _K_BLOCK,
    _K_LOOP,
    _K_END,
    _K_BR,
    _K_BR_TABLE,
    _K_RETURN,
    _K_CALL,
    _K_RETURN_CALL,
    _K_CALL_INDIRECT,
    _K_RETURN_CALL_INDIRECT,
    _K_REF_FUNC,
    _K_SELECT_T,
    _K_MEMARG,
    _K_GROW,
    _K_F32,
    _K_F64,
    _K_FC,
    _K_FD,
    _K_FE,
) = range(21)
_UNKNOWN = -1

_KIND: dict[int, int] = dict.fromkeys((0x00, 0x01, 0x05, 0x1A, 0x1B, 0xD1), _K_NONE)
_KIND.update(dict.fromkeys(range(0x45, 0xC5), _K_NONE))  # numeric, incl. sign extension
# locals, globals, table.get/set, memory.size, integer constants, ref.null's heap type
_KIND.update(dict.fromkeys((0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x3F, 0x41, 0x42), _K_LEB))
_KIND.update(dict.fromkeys(range(0x28, 0x3F), _K_MEMARG))
_KIND.update(
    {
        0xD0: _K_LEB,
        0x02: _K_BLOCK,
        0x04: _K_BLOCK,
        0x03: _K_LOOP,
        0x0B: _K_END,
        0x0C: _K_BR,
        0x0D: _K_BR,
        0x0E: _K_BR_TABLE,
        0x0F: _K_RETURN,
        0x10: _K_CALL,
        0x11: _K_CALL_INDIRECT,
        0x12: _K_RETURN_CALL,
        0x13: _K_RETURN_CALL_INDIRECT,
        0x1C: _K_SELECT_T,
        0x40: _K_GROW,
        0x43: _K_F32,
        0x44: _K_F64,
        0xD2: _K_REF_FUNC,
        0xFC: _K_FC,
        0xFD: _K_FD,
        0xFE: _K_FE,
    }
)
_TABLE_KIND: list[int] = [_KIND.get(op, _UNKNOWN) for op in range(256)]

_NAMED_UNSUPPORTED = {
    **dict.fromkeys((0x06, 0x07, 0x08, 0x09, 0x0A, 0x18, 0x19, 0x1F), "exception handling"),
    **dict.fromkeys((0x14, 0x15, 0xD3, 0xD4, 0xD5, 0xD6), "typed function references"),
}

# 0xFC: saturating conversions (0-7, no immediate), then bulk memory and table instructions
# with this many LEB immediates.
_FC_IMMEDIATES = {**dict.fromkeys(range(8), 0), 8: 2, 9: 1, 10: 2, 11: 1, 12: 2, 13: 1, 14: 2}
_FC_IMMEDIATES.update({15: 1, 16: 1, 17: 1})

# 0xFD (SIMD): which sub-opcodes exist and what follows them.
_SIMD_RESERVED = frozenset(
    {0x9A, 0xA2, 0xA5, 0xA6, 0xAF, 0xB0, 0xB2, 0xB3, 0xB4, 0xBB, 0xC2, 0xC5, 0xC6, 0xCF, 0xD0}
    | {0xD2, 0xD3, 0xD4, 0xE2, 0xEE}
)
_S_NONE, _S_MEMARG, _S_MEMARG_LANE, _S_LANE, _S_BYTES16 = range(5)


def _simd_kind(sub: int) -> int:
    if sub <= 0x0B or sub in (0x5C, 0x5D):  # loads and stores
        return _S_MEMARG
    if sub in (0x0C, 0x0D):  # v128.const, i8x16.shuffle
        return _S_BYTES16
    if 0x15 <= sub <= 0x22:  # extract / replace lane
        return _S_LANE
    if 0x54 <= sub <= 0x5B:  # load / store lane
        return _S_MEMARG_LANE
    if sub <= 0xFF and sub not in _SIMD_RESERVED:
        return _S_NONE
    if 0x100 <= sub <= 0x113:  # relaxed SIMD
        return _S_NONE
    return _UNKNOWN


def _memarg(b: bytes, i: int) -> int:
    align, i = _u32(b, i)
    if align & 0x40:  # multi-memory: a memory index follows
        i = _skip_leb(b, i)
    return _skip_leb(b, i)


def _skip_prefixed(b: bytes, i: int, op: int, start: int) -> int:
    """Skip the sub-opcode and immediates of a 0xFC / 0xFD / 0xFE instruction."""
    sub, i = _u32(b, i)
    if op == 0xFC:
        n = _FC_IMMEDIATES.get(sub)
        if n is not None:
            for _ in range(n):
                i = _skip_leb(b, i)
            return i
    elif op == 0xFD:
        s = _simd_kind(sub)
        if s == _S_NONE:
            return i
        if s == _S_MEMARG:
            return _memarg(b, i)
        if s == _S_MEMARG_LANE:
            return _memarg(b, i) + 1
        if s == _S_LANE:
            return i + 1
        if s == _S_BYTES16:
            return i + 16
    elif sub == 0x03:  # atomic.fence
        return i + 1
    elif sub <= 0x02 or 0x10 <= sub <= 0x4E:  # atomic memory instructions
        return _memarg(b, i)
    raise _fail(f"unknown opcode {op:#04x} {sub:#x} at offset {start:#x}")


# --- code ------------------------------------------------------------------------------------

# Markers in a rewritten body, resolved once every function is known (non-negative integers
# are direct calls to that new function index).
_SAVE = -1  # write the fuel local back to the global, if this function keeps one
_LOAD = -2  # reload the fuel local from the global, if this function keeps one


@dataclass
class _Ctx:
    """Module-wide facts the code rewriter needs."""

    imported_funcs: int
    check_index: int
    fuel_global: int
    grow_index: int  # the added memory.grow wrapper
    grew: bool = False  # a memory.grow was rewritten, so the wrapper must be added

    def remap(self, index: int) -> int:
        return index + 1 if index >= self.imported_funcs else index


@dataclass
class _Body:
    """One function body being rewritten."""

    locals_count: int  # parameters + declared locals = the index of the added fuel local
    locals_decl: bytes  # the original locals declaration, minus its group count
    groups: int
    parts: list[bytes | int] = field(default_factory=list)
    loops: bool = False
    calls: bool = False  # calls a defined function, indirectly, or by tail call

    @property
    def metered(self) -> bool:
        return self.loops or self.calls


class _Fuel:
    """The byte sequences that keep one function's fuel local in step with the global."""

    def __init__(self, ctx: _Ctx, local: int) -> None:
        g, loc = _enc_u32(ctx.fuel_global), _enc_u32(local)
        refill = b"\x04\x40\x41" + _enc_u32(REASON_FUEL) + b"\x10" + _enc_u32(ctx.check_index)
        # local -= 1; if local <= 0 { local = check(REASON_FUEL) }  (stack-neutral)
        self.tick = b"\x20" + loc + self._decrement(loc, refill)
        self.entry_tick = b"\x23" + g + self._decrement(loc, refill)
        # global -= 1; if global <= 0 { global = check(REASON_FUEL) }, for loop-free functions
        self.global_tick = b"".join(
            (
                b"\x23", g, b"\x42\x01\x7d\x22", loc, b"\x24", g,
                b"\x20", loc, b"\x42\x00\x57", refill, b"\x24", g, b"\x0b",
            )
        )  # fmt: skip
        self.load = b"\x23" + g + b"\x21" + loc
        self.save = b"\x20" + loc + b"\x24" + g

    @staticmethod
    def _decrement(loc: bytes, refill: bytes) -> bytes:
        return b"\x42\x01\x7d\x22" + loc + b"\x42\x00\x57" + refill + b"\x21" + loc + b"\x0b"


_CONST_KINDS = frozenset({_K_LEB, _K_F32, _K_F64, _K_REF_FUNC, _K_END, _K_FD})


def _rewrite_code(
    b: bytes, i: int, ctx: _Ctx, body: _Body, *, const: bool = False
) -> tuple[list[bytes | int], int]:
    """Rewrite the instructions from ``i`` up to the ``end`` that closes the expression.

    With ``const`` (a constant expression) only function indices change. Returns the parts
    (bytes and markers) and the position after that ``end``; ``body`` learns whether the code
    loops or calls.
    """
    out: list[bytes | int] = []
    fuel = _Fuel(ctx, body.locals_count)
    table = _TABLE_KIND
    imported = ctx.imported_funcs
    skip = _skip_leb
    depth = 0  # a branch to label ``depth`` leaves the function
    last = i  # start of the bytes not yet copied to ``out``
    while True:
        start = i
        op = b[i]
        i += 1
        kind = table[op]
        if kind == _K_NONE:
            continue
        if const and kind not in _CONST_KINDS:
            raise _Malformed(f"opcode {op:#04x} in a constant expression at offset {start:#x}")
        if kind == _K_LEB:  # one-byte LEBs inline: most of the time goes here
            i = i + 1 if b[i] < 0x80 else skip(b, i)
        elif kind == _K_MEMARG:
            # fast path: a one-byte alignment without memory index, a one-byte offset
            i = i + 2 if b[i] < 0x40 and b[i + 1] < 0x80 else _memarg(b, i)
        elif kind in (_K_BLOCK, _K_LOOP):
            depth += 1
            if b[i] in (0x63, 0x64):
                raise _fail(f"a typed-reference block type at offset {i:#x}")
            i = skip(b, i)
            if kind == _K_LOOP:
                out += (b[last:i], fuel.tick)
                last = i
                body.loops = True
        elif kind == _K_END:
            if depth == 0:
                if not const:
                    out += (b[last:start], _SAVE)
                    last = start
                out.append(b[last:i])
                return out, i
            depth -= 1
        elif kind == _K_BR:
            label, i = _u32(b, i)
            if label == depth:
                out += (b[last:start], _SAVE)
                last = start
        elif kind == _K_CALL:
            index, i = _u32(b, i)
            if index >= imported:
                out += (b[last:start], index + 1)
                last = i
                body.calls = True
        elif kind == _K_REF_FUNC:
            index, i = _u32(b, i)
            if index >= imported:
                out += (b[last : start + 1], _enc_u32(index + 1))
                last = i
        elif kind == _K_RETURN:
            out += (b[last:start], _SAVE)
            last = start
        elif kind == _K_CALL_INDIRECT:
            i = skip(b, skip(b, i))
            out += (b[last:start], _SAVE, b[start:i], _LOAD)
            last = i
            body.calls = True
        elif kind == _K_RETURN_CALL:
            index, i = _u32(b, i)
            out += (b[last:start], _SAVE, b"\x12" + _enc_u32(ctx.remap(index)))
            last = i
            body.calls = True
        elif kind == _K_RETURN_CALL_INDIRECT:
            i = skip(b, skip(b, i))
            out += (b[last:start], _SAVE)
            last = start
            body.calls = True
        elif kind == _K_F32:
            i += 4
        elif kind == _K_F64:
            i += 8
        elif kind == _K_BR_TABLE:
            count, i = _u32(b, i)
            leaves = False
            for _ in range(count + 1):
                label, i = _u32(b, i)
                leaves = leaves or label == depth
            if leaves:
                out += (b[last:start], _SAVE)
                last = start
        elif kind == _K_GROW:
            memory, i = _u32(b, i)
            if memory != 0:
                raise _fail(f"memory.grow on memory {memory} at offset {start:#x}")
            out += (b[last:start], b"\x10" + _enc_u32(ctx.grow_index))
            last = i
            ctx.grew = True
        elif kind == _K_SELECT_T:
            count, i = _u32(b, i)
            for _ in range(count):
                if b[i] not in _VALTYPES:
                    raise _fail(f"value type {b[i]:#04x} in select at offset {i:#x}")
                i += 1
        elif kind >= _K_FC:
            i = _skip_prefixed(b, i, op, start)
        else:
            feature = _NAMED_UNSUPPORTED.get(op)
            detail = f" ({feature} is not supported)" if feature else ""
            raise _fail(f"unknown opcode {op:#04x} at offset {start:#x}{detail}")


def _const_expr(b: bytes, i: int, ctx: _Ctx) -> tuple[bytes, int]:
    parts, i = _rewrite_code(b, i, ctx, _Body(0, b"", 0), const=True)
    return b"".join(p for p in parts if isinstance(p, bytes)), i


def _finish_body(body: _Body, ctx: _Ctx, metered: list[bool]) -> bytes:
    """Resolve the markers of one body now that every function's metering is known.

    A function with loops keeps its fuel in a local and syncs it with the global around calls
    that may spend fuel and on the way out. A function with calls but no loops ticks the global
    once at entry and leaves it authoritative, so its calls and exits cost nothing.
    """
    fuel = _Fuel(ctx, body.locals_count)
    local = body.loops
    code: list[bytes] = []
    if body.metered:
        code.append(_enc_u32(body.groups + 1) + body.locals_decl + b"\x01\x7e")
        if not local:
            code.append(fuel.global_tick)
        else:
            code.append(fuel.entry_tick if body.calls else fuel.load)
    else:
        code.append(_enc_u32(body.groups) + body.locals_decl)
    first_defined = ctx.imported_funcs + 1
    for part in body.parts:
        if isinstance(part, bytes):
            code.append(part)
        elif part == _SAVE:
            if local:
                code.append(fuel.save)
        elif part == _LOAD:
            if local:
                code.append(fuel.load)
        else:  # a direct call to a defined function
            call = b"\x10" + _enc_u32(part)
            if local and metered[part - first_defined]:
                code += (fuel.save, call, fuel.load)
            else:
                code.append(call)
    joined = b"".join(code)
    return _enc_u32(len(joined)) + joined


def _grow_body(ctx: _Ctx) -> bytes:
    """``(func (param $d i32) (result i32))``: grow, tell the host how it went, return the result.

    Both outcomes matter to the host: a failure means the guest hit the cap, a success means
    any cached view of the linear memory is stale. The wrapper spends no fuel.
    """
    code = b"".join(
        (
            b"\x00",  # no locals besides the parameter
            b"\x20\x00\x40\x00\x21\x00",  # $d = memory.grow($d)
            b"\x41", _enc_u32(REASON_GROW_FAILED), b"\x41", _enc_u32(REASON_GROWN),
            b"\x20\x00\x41\x7f\x46\x1b",  # $d == -1 ? GROW_FAILED : GROWN
            b"\x10", _enc_u32(ctx.check_index), b"\x1a",  # check(reason); drop the fuel
            b"\x20\x00\x0b",  # return $d
        )
    )  # fmt: skip
    return _enc_u32(len(code)) + code


# --- sections --------------------------------------------------------------------------------


@dataclass
class _Section:
    id: int
    raw: bytes  # the whole section as it appeared, header included
    start: int  # absolute offsets of the payload in the module
    end: int


def _section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + _enc_u32(len(payload)) + payload


def _limits(b: bytes, i: int) -> tuple[int, int, int | None, int]:
    """``(flags, minimum, maximum, next position)`` of a limits field."""
    flags = b[i]
    if flags & ~0x03:
        raise _fail(f"limits flags {flags:#x} (64-bit memories and tables are not supported)")
    minimum, i = _u32(b, i + 1)
    maximum = None
    if flags & 0x01:
        maximum, i = _u32(b, i)
    return flags, minimum, maximum, i


def _capped(
    flags: int, minimum: int, maximum: int | None, cap: int, *, what: str, advice: str
) -> bytes:
    if minimum > cap:
        raise ModuleError(
            f"the module's initial {what} is {minimum}, above the cap of {cap}; {advice}"
        )
    new_max = cap if maximum is None else min(maximum, cap)
    return bytes([flags | 0x01]) + _enc_u32(minimum) + _enc_u32(new_max)


def _valtype(byte: int, where: str) -> None:
    if byte not in _VALTYPES:
        raise _fail(f"value type {byte:#04x} in {where} (typed references are not supported)")


class _Rewriter:
    """Parses the sections of one module and produces the instrumented module."""

    def __init__(self, wasm: bytes, cap: int, initial_fuel: int) -> None:
        self.b = wasm
        self.cap = cap
        self.initial_fuel = initial_fuel
        if wasm[:8] != _MAGIC:
            raise _fail("it is not a wasm core module (bad magic number or version)")
        self.sections: list[_Section] = []
        self.by_id: dict[int, _Section] = {}
        i = 8
        while i < len(wasm):
            sid = wasm[i]
            size, j = _u32(wasm, i + 1)
            if j + size > len(wasm):
                raise _Malformed("a section runs past the end of the module")
            s = _Section(sid, wasm[i : j + size], j, j + size)
            self.sections.append(s)
            if sid != 0:
                if sid in self.by_id or sid not in _ORDER:
                    raise _Malformed(f"unexpected section id {sid}")
                self.by_id[sid] = s
            i = j + size

    def entries(self, sid: int, entry: Callable[[int], tuple[bytes, int]]) -> list[bytes]:
        """Each entry of the vector that makes up section ``sid``, rewritten by ``entry``."""
        s = self.by_id.get(sid)
        if s is None:
            return []
        count, i = _u32(self.b, s.start)
        out = []
        for _ in range(count):
            part, i = entry(i)
            out.append(part)
        if i != s.end:
            raise _Malformed(f"section {sid} is not as long as its contents")
        return out

    def run(self) -> bytes:
        b = self.b
        types = self.entries(1, self.type_entry)
        self.imported_funcs = self.imported_globals = self.imported_tables = 0
        imports = self.entries(2, self.import_entry)
        funcs = self.entries(3, lambda i: (b[i : _skip_leb(b, i)], _skip_leb(b, i)))
        globals_count = _u32(b, self.by_id[6].start)[0] if 6 in self.by_id else 0
        self.ctx = ctx = _Ctx(
            imported_funcs=self.imported_funcs,
            check_index=self.imported_funcs,
            fuel_global=self.imported_globals + globals_count,
            grow_index=self.imported_funcs + 1 + len(funcs),
        )
        self.param_counts = [_u32(t, 1)[0] for t in types]
        self.func_types = [_u32(f, 0)[0] for f in funcs]
        check_type, grow_type = len(types), len(types) + 1
        types += (b"\x60\x01\x7f\x01\x7e", b"\x60\x01\x7f\x01\x7f")
        imports.append(_name(CHECK_MODULE) + _name(CHECK_NAME) + b"\x00" + _enc_u32(check_type))
        fuel = b"\x7e\x01\x42" + _enc_s64(self.initial_fuel) + b"\x0b"

        new = {1: types, 2: imports, 6: [*self.entries(6, self.global_entry), fuel]}
        for sid, entry in ((4, self.table_entry), (5, self.memory_entry)):
            if sid in self.by_id:
                new[sid] = self.entries(sid, entry)
        if len(new.get(5, [])) > 1:
            raise _fail("it defines several memories (multi-memory)")
        if self.imported_tables + len(new.get(4, [])) > MAX_TABLES:
            raise ModuleError(
                f"the module has {self.imported_tables + len(new.get(4, []))} tables; a plugin may "
                f"have at most {MAX_TABLES}"
            )
        if 7 in self.by_id:
            new[7] = self.entries(7, self.export_entry)
        if 9 in self.by_id:
            new[9] = self.entries(9, self.element_entry)
        if 10 in self.by_id:
            new[10] = self.code()
        if ctx.grew:
            new[3] = [*funcs, _enc_u32(grow_type)]
            new[10].append(_grow_body(ctx))
        replaced = {sid: _section(sid, _enc_u32(len(v)) + b"".join(v)) for sid, v in new.items()}
        if 8 in self.by_id:
            index, i = _u32(b, self.by_id[8].start)
            if i != self.by_id[8].end:
                raise _Malformed("the start section is not as long as its contents")
            replaced[8] = _section(8, _enc_u32(ctx.remap(index)))
        return self.assemble(replaced)

    # -- one entry of each section ---------------------------------------------------------

    def type_entry(self, i: int) -> tuple[bytes, int]:
        b = self.b
        start = i
        if b[i] != 0x60:
            raise _fail(f"type form {b[i]:#04x} (GC types are not supported)")
        i += 1
        for _ in range(2):  # parameters, results
            n, i = _u32(b, i)
            for _ in range(n):
                _valtype(b[i], "a function type")
                i += 1
        return b[start:i], i

    def import_entry(self, i: int) -> tuple[bytes, int]:
        b = self.b
        start = i
        names = []
        for _ in range(2):
            n, i = _u32(b, i)
            names.append(b[i : i + n].decode("utf-8", "replace"))
            i += n
        if names[0] == CHECK_MODULE:
            raise ModuleError(f"the module imports from the reserved namespace {CHECK_MODULE!r}")
        kind = b[i]
        i += 1
        if kind == _FUNC:
            self.imported_funcs += 1
            i = _skip_leb(b, i)
        elif kind == _TABLE:
            if b[i] not in _REFTYPES:
                raise _fail(f"table element type {b[i]:#04x}")
            self.imported_tables += 1
            i = _limits(b, i + 1)[3]
        elif kind == _MEMORY:
            raise ModuleError(
                f"the module imports its memory ({names[0]}.{names[1]}); a plugin must define "
                "and export its own memory"
            )
        elif kind == _GLOBAL:
            self.imported_globals += 1
            _valtype(b[i], "an imported global")
            i += 2
        elif kind == _TAG:
            i = _skip_leb(b, i + 1)
        else:
            raise _Malformed(f"import kind {kind}")
        return b[start:i], i

    def table_entry(self, i: int) -> tuple[bytes, int]:
        if self.b[i] not in _REFTYPES:
            raise _fail(f"table form {self.b[i]:#04x}")
        flags, lo, hi, j = _limits(self.b, i + 1)
        capped = _capped(
            flags,
            lo,
            hi,
            MAX_TABLE_ELEMENTS,
            what="table size (elements)",
            advice="no plugin needs that",
        )
        return self.b[i : i + 1] + capped, j

    def memory_entry(self, i: int) -> tuple[bytes, int]:
        flags, lo, hi, j = _limits(self.b, i)
        advice = "raise the memory limit (memory_bytes) or build it with less initial memory"
        return _capped(flags, lo, hi, self.cap, what="memory size (64 KiB pages)", advice=advice), j

    def global_entry(self, i: int) -> tuple[bytes, int]:
        _valtype(self.b[i], "a global")
        expr, j = _const_expr(self.b, i + 2, self.ctx)
        return self.b[i : i + 2] + expr, j

    def export_entry(self, i: int) -> tuple[bytes, int]:
        b = self.b
        n, j = _u32(b, i)
        j += n
        kind = b[j]
        index, k = _u32(b, j + 1)
        if kind == _FUNC:
            return b[i : j + 1] + _enc_u32(self.ctx.remap(index)), k
        return b[i:k], k

    def element_entry(self, i: int) -> tuple[bytes, int]:
        """All eight forms: bit 0 passive/declarative, bit 1 table index or declarative,
        bit 2 expressions instead of function indices."""
        b = self.b
        flags, i = _u32(b, i)
        if flags > 7:
            raise _Malformed(f"element segment form {flags}")
        out = [_enc_u32(flags)]
        if flags & 0b011 == 0b010:  # active with an explicit table index (forms 2 and 6)
            start, i = i, _skip_leb(b, i)
            out.append(b[start:i])
        if not flags & 0b001:  # active: an offset expression
            expr, i = _const_expr(b, i, self.ctx)
            out.append(expr)
        if flags & 0b011:  # an element kind (0x00) or a reference type
            if flags & 0b100 and b[i] not in _REFTYPES:
                raise _fail(f"element reference type {b[i]:#04x}")
            out.append(b[i : i + 1])
            i += 1
        count, i = _u32(b, i)
        out.append(_enc_u32(count))
        for _ in range(count):
            if flags & 0b100:
                expr, i = _const_expr(b, i, self.ctx)
            else:
                index, i = _u32(b, i)
                expr = _enc_u32(self.ctx.remap(index))
            out.append(expr)
        return b"".join(out), i

    def code(self) -> list[bytes]:
        """Rewrite every body, then resolve call sites once every function's metering is known."""
        b = self.b
        s = self.by_id[10]
        count, i = _u32(b, s.start)
        if count != len(self.func_types):
            raise _Malformed("the function and code sections disagree")
        bodies = []
        for n in range(count):
            size, i = _u32(b, i)
            end = i + size
            groups, j = _u32(b, i)
            decl_start = j
            locals_count = self.param_counts[self.func_types[n]]
            for _ in range(groups):
                c, j = _u32(b, j)
                _valtype(b[j], "function locals")
                locals_count += c
                j += 1
            body = _Body(locals_count, b[decl_start:j], groups)
            body.parts, j = _rewrite_code(b, j, self.ctx, body)
            if j != end:
                raise _Malformed(f"the function body at offset {i:#x} has a wrong size")
            bodies.append(body)
            i = end
        if i != s.end:
            raise _Malformed("the code section is not as long as its contents")
        metered = [body.metered for body in bodies]
        return [_finish_body(body, self.ctx, metered) for body in bodies]

    # -- output ----------------------------------------------------------------------------

    def assemble(self, replaced: dict[int, bytes]) -> bytes:
        """Sections in their original order, replaced ones in place, added ones where due."""
        added = sorted((sid for sid in replaced if sid not in self.by_id), key=_ORDER.__getitem__)
        out = [_MAGIC]
        for s in self.sections:
            if s.id == 0:
                _, i = _u32(s.raw, 1)
                name_len, j = _u32(s.raw, i)
                if s.raw[j : j + name_len] != b"name":  # its function indices would be stale
                    out.append(s.raw)
                continue
            while added and _ORDER[added[0]] < _ORDER[s.id]:
                out.append(replaced[added.pop(0)])
            out.append(replaced.get(s.id, s.raw))
        out.extend(replaced[sid] for sid in added)
        return b"".join(out)
