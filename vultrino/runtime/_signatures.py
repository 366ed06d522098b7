"""Refusing modules whose import or export types an engine cannot describe without crashing.

wasmtime's C API aborts the whole process (a Rust panic, ``SIGABRT``) when asked for the type of
a function whose signature holds a ``v128`` or a GC reference (``(ref $struct)``, ``anyref``,
...): ``Module.imports``/``exports`` — which the host reads at install and at every load — never
return. A plugin cannot need them: the ABIs use only ``i32`` and ``i64``. So, before an engine
sees a module, this pure-Python reader (the LEB128 decoder of :mod:`._instrument`) walks its
type, import, function and export sections and refuses:

* a type section entry that is not a plain function type (the GC proposal's ``rec``, ``sub``,
  ``struct``, ``array``);
* an imported or exported function whose parameters or results are anything but ``i32``,
  ``i64``, ``f32`` or ``f64`` (``v128``, ``funcref``, ``externref``, GC references) — WASI
  imports included;
* an imported global of such a type.

Functions the module keeps to itself may use SIMD and reference types freely (Rust and clang
emit them); their types are never asked for. A binary this reader cannot follow is left to the
engine, which validates it before anything else.
"""

from __future__ import annotations

from typing import Final

from vultrino.errors import ModuleError
from vultrino.runtime._instrument import _Malformed, _u32
from vultrino.runtime.engine import MAX_GLOBALS

__all__ = ["check_signatures"]

_NUMERIC: Final = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64"}
_NAMES: Final = {
    0x7B: "v128",
    0x70: "funcref",
    0x6F: "externref",
    0x6E: "anyref",
    0x6D: "eqref",
    0x6C: "i31ref",
    0x6B: "structref",
    0x6A: "arrayref",
    0x69: "exnref",
    0x71: "nullref",
    0x72: "nullexternref",
    0x73: "nullfuncref",
    0x74: "nullexnref",
}
_REF_PREFIXES: Final = {0x63: "(ref null ...)", 0x64: "(ref ...)"}
_FUNC_FORM: Final = 0x60
_GC_FORMS: Final = {0x4E: "rec", 0x50: "sub", 0x4F: "sub final", 0x5F: "struct", 0x5E: "array"}


def check_signatures(wasm: bytes) -> None:
    """``ModuleError`` naming the first import or export whose type is not plain numbers."""
    try:
        problem = _first_problem(bytes(wasm))
    except (_Malformed, IndexError, ValueError):
        return  # malformed: the engine's validation reports it
    if problem:
        raise ModuleError(
            f"{problem}; a plugin's imports and exports may use only i32, i64, f32 and f64 "
            "(SIMD and reference types are fine inside the module, not in its interface)"
        )
    try:
        globals_ = _global_count(bytes(wasm))
    except (_Malformed, IndexError, ValueError):
        return
    if globals_ > MAX_GLOBALS:
        raise ModuleError(
            f"the module declares {globals_} globals; a plugin may have at most {MAX_GLOBALS} "
            "(each instance keeps them outside the memory cap)"
        )


def _global_count(b: bytes) -> int:
    """How many globals a core module defines (its global section's count)."""
    if b[:8] != b"\x00asm\x01\x00\x00\x00":
        return 0
    i = 8
    while i < len(b):
        sid = b[i]
        size, start = _u32(b, i + 1)
        if sid == 6:
            return _u32(b, start)[0]
        i = start + size
    return 0


def _valtype(b: bytes, i: int) -> tuple[str | None, int]:
    """(None for a numeric type else its name, next position)."""
    byte = b[i]
    if byte in _NUMERIC:
        return None, i + 1
    if byte in _REF_PREFIXES:
        _, j = _s33(b, i + 1)
        return _REF_PREFIXES[byte], j
    if byte in _NAMES:
        return _NAMES[byte], i + 1
    raise _Malformed(f"value type {byte:#x}")


def _s33(b: bytes, i: int) -> tuple[int, int]:
    end = i + 5
    while b[i] & 0x80:
        i += 1
        if i >= end:
            raise _Malformed("integer too long")
    return 0, i + 1


def _limits_end(b: bytes, i: int) -> int:
    flags = b[i]
    _, i = _u32(b, i + 1)
    if flags & 0x01:
        _, i = _u32(b, i)
    return i


def _first_problem(b: bytes) -> str | None:
    if b[:8] != b"\x00asm\x01\x00\x00\x00":
        return None
    sections: dict[int, tuple[int, int]] = {}
    i = 8
    while i < len(b):
        sid = b[i]
        size, start = _u32(b, i + 1)
        sections.setdefault(sid, (start, start + size))
        i = start + size
    types: list[str | None] = []  # per type index: None when plain numbers, else the problem
    if 1 in sections:
        i, _ = sections[1]
        count, i = _u32(b, i)
        for index in range(count):
            form = b[i]
            if form in _GC_FORMS:
                return (
                    f"type {index} is a GC `{_GC_FORMS[form]}` type (the garbage-collection "
                    "proposal), which no plugin interface uses"
                )
            if form != _FUNC_FORM:
                raise _Malformed(f"type form {form:#x}")
            i += 1
            exotic: str | None = None
            for _ in range(2):  # params, then results
                n, i = _u32(b, i)
                for _ in range(n):
                    name, i = _valtype(b, i)
                    exotic = exotic or name
            types.append(exotic)
    funcs: list[int] = []  # type index of every function, imports first
    if 2 in sections:
        i, _ = sections[2]
        count, i = _u32(b, i)
        for _ in range(count):
            module, i = _string(b, i)
            name, i = _string(b, i)
            kind = b[i]
            i += 1
            where = f"import `{module}`.`{name}`"
            if kind == 0:  # function
                t, i = _u32(b, i)
                if t < len(types) and types[t]:
                    return f"{where} has a `{types[t]}` in its signature"
                funcs.append(t)
            elif kind == 1:  # table
                _, i = _valtype(b, i)
                i = _limits_end(b, i)
            elif kind == 2:  # memory
                i = _limits_end(b, i)
            elif kind == 3:  # global
                vt, i = _valtype(b, i)
                i += 1  # mutability
                if vt:
                    return f"{where} is a global of type `{vt}`"
            elif kind == 4:  # tag
                i += 1
                _, i = _u32(b, i)
            else:
                raise _Malformed(f"import kind {kind}")
    if 3 in sections:
        i, _ = sections[3]
        count, i = _u32(b, i)
        for _ in range(count):
            t, i = _u32(b, i)
            funcs.append(t)
    if 7 in sections:
        i, _ = sections[7]
        count, i = _u32(b, i)
        for _ in range(count):
            name, i = _string(b, i)
            kind = b[i]
            index, i = _u32(b, i + 1)
            if kind == 0 and index < len(funcs):
                t = funcs[index]
                if t < len(types) and types[t]:
                    return f"export `{name}` has a `{types[t]}` in its signature"
    return None


def has_start(wasm: bytes) -> bool:
    """Whether a core module has a start section (a function run while it is instantiated).
    False for bytes that are not a well-formed module (the engine says what is wrong)."""
    b = bytes(wasm)
    if b[:8] != b"\x00asm\x01\x00\x00\x00":
        return False
    i = 8
    try:
        while i < len(b):
            sid = b[i]
            if sid == 8:
                return True
            size, start = _u32(b, i + 1)
            i = start + size
    except (_Malformed, IndexError):
        return False
    return False


def _string(b: bytes, i: int) -> tuple[str, int]:
    n, i = _u32(b, i)
    if i + n > len(b):
        raise _Malformed("name past the end")
    return b[i : i + n].decode("utf-8", "replace")[:200], i + n
