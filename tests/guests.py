"""Tiny guest modules, one per behaviour, written as WAT and compiled at test time.

The WAT sources live in ``tests/fixtures/guests/``. ABI 2 guests share a prelude (memory, a
bump allocator exported as ``cabi_realloc``, a post-return that resets it) and differ in the body
of ``execute``; the body and any extra imports, functions and data are substituted into
``abi2.wat.in``. Each builder returns wasm bytes.
"""

from __future__ import annotations

import functools
from pathlib import Path

import wasmtime

GUESTS = Path(__file__).parent / "fixtures" / "guests"


def wat2wasm(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def _template(name: str) -> str:
    return (GUESTS / name).read_text()


@functools.cache
def fixture(name: str) -> bytes:
    """A whole-module WAT fixture, compiled (e.g. ``abi1_echo.wat``)."""
    return wat2wasm(_template(name))


def abi2(body: str, *, imports: str = "", extra: str = "", post: bool = True) -> bytes:
    """An ABI 2 guest whose ``execute(ptr, len) -> retptr`` body is ``body``.

    Helpers available to ``body``: ``$respond(ptr, len) -> retptr`` stores ``[ptr, len]`` and
    returns its address; ``$ok_echo(ptr, len) -> retptr`` answers ``{"ok": <request>}``;
    ``$heap`` is the bump pointer.
    """
    post_fn = (
        '(func (export "cabi_post_vultrino:plugin/handler@1.0.0#execute") (param i32)\n'
        "    (global.set $heap (i32.const 131072)))"
        if post
        else ""
    )
    text = _template("abi2.wat.in")
    for key, value in (("IMPORTS", imports), ("EXTRA", extra), ("BODY", body), ("POST", post_fn)):
        text = text.replace(f";;{key};;", value)
    return wat2wasm(text)


def data_string(data: bytes) -> str:
    """``data`` as a WAT string literal."""
    return '"' + "".join(f"\\{b:02x}" for b in data) + '"'


def abi2_fixed(response: bytes, **kw: object) -> bytes:
    """An ABI 2 guest that always answers with ``response`` (raw bytes, any content)."""
    extra = f"(data (i32.const 65536) {data_string(response)})"
    body = f"(call $respond (i32.const 65536) (i32.const {len(response)}))"
    return abi2(body, extra=extra, **kw)  # type: ignore[arg-type]


def abi1_fixed(response: bytes) -> bytes:
    """An ABI 1 guest that always answers with ``response`` (JSON bytes)."""
    text = _template("abi1_fixed.wat.in")
    text = text.replace(";;DATA;;", data_string(response)).replace(";;LEN;;", str(len(response)))
    return wat2wasm(text)


# --- ABI 2 behaviours ---------------------------------------------------------------------------

ECHO = "(call $ok_echo (local.get $ptr) (local.get $len))"


def echo(*, post: bool = True) -> bytes:
    return abi2(ECHO, post=post)


def logger() -> bytes:
    """Logs at each level (one message with invalid UTF-8), then echoes."""
    imports = '(import "vultrino:plugin/host@1.0.0" "log" (func $log (param i32 i32 i32)))'
    extra = (
        '(data (i32.const 65536) "debug line")'
        '(data (i32.const 65600) "info line")'
        '(data (i32.const 65700) "warn \\ff\\fe line")'
        '(data (i32.const 65800) "error line\\0a\\1b[31mforged")'
    )
    body = (
        "(call $log (i32.const 0) (i32.const 65536) (i32.const 10))"
        "(call $log (i32.const 1) (i32.const 65600) (i32.const 9))"
        "(call $log (i32.const 2) (i32.const 65700) (i32.const 12))"
        "(call $log (i32.const 3) (i32.const 65800) (i32.const 22))" + ECHO
    )
    return abi2(body, imports=imports, extra=extra)


def log_interleaved(*, trap: bool = False, start: bool = False) -> bytes:
    """Logs "one", prints "two" to stdout, logs "three", overwrites the bytes of the message it
    logged first, logs a message over the 4096-byte cap, logs "four" and prints "five" without a
    newline (left for the end of the call); then echoes, or traps (``trap``). With ``start``,
    its start function logs "start" first (while it is instantiated)."""
    imports = """
    (import "vultrino:plugin/host@1.0.0" "log" (func $log (param i32 i32 i32)))
    (import "wasi_snapshot_preview1" "fd_write"
      (func $fd_write (param i32 i32 i32 i32) (result i32)))"""
    extra = """
    (data (i32.const 65536) "one")
    (data (i32.const 65600) "two\\0a")
    (data (i32.const 65700) "three")
    (data (i32.const 65800) "four")
    (data (i32.const 65900) "five")
    (data (i32.const 66000) "start")
    (func $print (param $ptr i32) (param $len i32)
      (i32.store (i32.const 64) (local.get $ptr))
      (i32.store (i32.const 68) (local.get $len))
      (drop (call $fd_write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 72))))""" + (
        """
    (func $on_start (call $log (i32.const 1) (i32.const 66000) (i32.const 5)))
    (start $on_start)"""
        if start
        else ""
    )
    body = (
        "(memory.copy (i32.const 66100) (i32.const 65536) (i32.const 3))"  # "one", fresh
        "(call $log (i32.const 1) (i32.const 66100) (i32.const 3))"
        "(call $print (i32.const 65600) (i32.const 4))"
        "(call $log (i32.const 2) (i32.const 65700) (i32.const 5))"
        "(i32.store (i32.const 66100) (i32.const 0x585858))"  # "XXX": over the first line
        "(call $log (i32.const 1) (i32.const 70000) (i32.const 5000))"
        "(call $log (i32.const 3) (i32.const 65800) (i32.const 4))"
        "(call $print (i32.const 65900) (i32.const 4))" + ("unreachable" if trap else ECHO)
    )
    return abi2(body, imports=imports, extra=extra)


def log_flood(count: int) -> bytes:
    """Calls ``log`` ``count`` times in one call."""
    imports = '(import "vultrino:plugin/host@1.0.0" "log" (func $log (param i32 i32 i32)))'
    extra = '(data (i32.const 65536) "spam")'
    body = f"""
    (local.set $i (i32.const 0))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const {count})))
      (call $log (i32.const 1) (i32.const 65536) (i32.const 4))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    {ECHO}"""
    return abi2(body, imports=imports, extra=extra)


def log_bad_pointer() -> bytes:
    imports = '(import "vultrino:plugin/host@1.0.0" "log" (func $log (param i32 i32 i32)))'
    body = "(call $log (i32.const 1) (i32.const -16) (i32.const 64))" + ECHO
    return abi2(body, imports=imports)


#: What the hostile guest does, chosen by the first letter of the request's action.
HOSTILE = {
    "loop": "spins forever",
    "memory": "grows memory until growth fails, then aborts (like a Rust OOM)",
    "stack": "recurses until the stack overflows",
    "trap": "executes `unreachable`",
    "divide": "divides by zero",
    "outside": "returns a result pointer past the end of memory",
    "retptr": "returns a retptr outside memory",
    "garbage": "returns bytes that are not MessagePack",
    "number": "returns MessagePack that is not a response map",
    "code": "returns an error with an unknown code",
    "fail": 'returns {"error": {"code": "invalid_params", "message": "nope"}}',
    "huge": 'returns {"ok": <bin>}, 1 MiB in all (over a small output cap)',
    "quit": "calls proc_exit(3)",
    "write": "writes a line to stdout, one to stderr, then echoes",
    "panic": "writes a panic message to stderr, then traps",
}


def hostile() -> bytes:
    """One ABI 2 guest with every misbehaviour, picked by the action (see :data:`HOSTILE`).

    Any other action echoes, so a test can check that the same module answers the next call.
    The action is the first value of the request map: its first letter is byte 9.
    """
    imports = """
    (import "wasi_snapshot_preview1" "fd_write"
      (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))"""
    garbage = bytes([0xC1, 0xC1, 0xC1, 0xC1])
    number = bytes([0x2A])
    code = b"\x81\xa5error\x82\xa4code\xa5bogus\xa7message\xa1x"
    huge = b"\x81\xa2ok\xc6" + (0x100000 - 9).to_bytes(4, "big")
    fail = b"\x81\xa5error\x82\xa4code\xaeinvalid_params\xa7message\xa4nope"
    extra = f"""
    (data (i32.const 65536) {data_string(garbage)})
    (data (i32.const 65540) {data_string(number)})
    (data (i32.const 65600) {data_string(code)})
    (data (i32.const 65700) {data_string(fail)})
    (data (i32.const 65800) "hello stdout\\0a")
    (data (i32.const 65900) "hello stderr\\0a")
    (data (i32.const 66000) "panicked at src/lib.rs:1: boom\\0a")
    (data (i32.const 70000) {data_string(huge)})
    (func $recurse (param i32) (result i32)
      (call $recurse (i32.add (local.get 0) (i32.const 1))))
    (func $print (param $fd i32) (param $ptr i32) (param $len i32)
      (i32.store (i32.const 64) (local.get $ptr))
      (i32.store (i32.const 68) (local.get $len))
      (drop (call $fd_write (local.get $fd) (i32.const 64) (i32.const 1) (i32.const 72))))"""

    def when(letter: str, then: str) -> str:
        return f"(if (i32.eq (local.get $i) (i32.const {ord(letter)})) (then {then}))\n"

    body = (
        "(local.set $i (i32.load8_u offset=9 (local.get $ptr)))\n"
        + when("l", "(loop $l (br $l))")
        + when(
            "m",
            "(block $failed (loop $l (br_if $failed (i32.eq (memory.grow (i32.const 1)) "
            "(i32.const -1))) (br $l))) (unreachable)",
        )
        + when("s", "(drop (call $recurse (i32.const 0)))")
        + when("t", "(unreachable)")
        + when("d", "(drop (i32.div_u (i32.const 1) (i32.sub (local.get $len) (local.get $len))))")
        + when("o", "(return (call $respond (i32.const 0x7ffffff0) (i32.const 64)))")
        + when("r", "(return (i32.const -4))")
        + when("g", "(return (call $respond (i32.const 65536) (i32.const 4)))")
        + when("n", "(return (call $respond (i32.const 65540) (i32.const 1)))")
        + when("c", f"(return (call $respond (i32.const 65600) (i32.const {len(code)})))")
        + when("f", f"(return (call $respond (i32.const 65700) (i32.const {len(fail)})))")
        + when(
            "h",
            "(drop (memory.grow (i32.const 16))) "
            "(return (call $respond (i32.const 70000) (i32.const 0x100000)))",
        )
        + when("q", "(call $exit (i32.const 3))")
        + when(
            "w",
            "(call $print (i32.const 1) (i32.const 65800) (i32.const 13))"
            "(call $print (i32.const 2) (i32.const 65900) (i32.const 13))",
        )
        + when("p", "(call $print (i32.const 2) (i32.const 66000) (i32.const 31)) (unreachable)")
        + ECHO
    )
    return abi2(body, imports=imports, extra=extra)


def wasi_probe() -> bytes:
    """Tries the forbidden things and reports what WASI answered.

    Answers ``{"ok": [open_errno, environ_count, args_count, prestat_errno, read_count,
    random_errno, clock_errno, clock_nonzero, sched_errno, sock_errno]}``; also writes
    "hello stdout\\n" to fd 1 and "hello stderr" (no newline) to fd 2.
    """
    return fixture("wasi_probe.wat")


def unknown_import() -> bytes:
    return abi2(ECHO, imports='(import "env" "get_secret" (func $s (param i32) (result i32)))')


def bad_log_signature() -> bytes:
    return abi2(
        ECHO, imports='(import "vultrino:plugin/host@1.0.0" "log" (func $log (param i32 i32)))'
    )


def missing_export() -> bytes:
    """Exports ``execute`` but no ``cabi_realloc``."""
    return fixture("missing_realloc.wat")


def start_loops() -> bytes:
    """A start function that never returns."""
    return fixture("start_loops.wat")


def counter() -> bytes:
    """Answers ``{"ok": n}`` where n counts this instance's calls (instance reuse is visible).

    An action starting with ``t`` traps instead.
    """
    extra = "(global $calls (mut i32) (i32.const 0))"
    body = """
    (if (i32.eq (i32.load8_u offset=9 (local.get $ptr)) (i32.const 0x74)) (then unreachable))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store8 (i32.const 65536) (i32.const 0x81))
    (i32.store8 (i32.const 65537) (i32.const 0xa2))
    (i32.store8 (i32.const 65538) (i32.const 0x6f))
    (i32.store8 (i32.const 65539) (i32.const 0x6b))
    (i32.store8 (i32.const 65540) (i32.const 0xce))
    (i32.store8 (i32.const 65541) (i32.shr_u (global.get $calls) (i32.const 24)))
    (i32.store8 (i32.const 65542) (i32.shr_u (global.get $calls) (i32.const 16)))
    (i32.store8 (i32.const 65543) (i32.shr_u (global.get $calls) (i32.const 8)))
    (i32.store8 (i32.const 65544) (global.get $calls))
    (call $respond (i32.const 65536) (i32.const 9))"""
    return abi2(body, extra=extra)


# --- ABI 1 --------------------------------------------------------------------------------------


def abi1_echo(*, validate: int | None = None) -> bytes:
    """Answers ``{"code":0,"data":<the request JSON as a string>,"error":null}``.

    With ``validate``, also exports ``vultrino_validate_params`` returning that code.
    """
    text = _template("abi1_echo.wat.in")
    fn = (
        '(func (export "vultrino_validate_params") (param i32 i32 i32 i32) (result i32) '
        f"(i32.const {validate}))"
        if validate is not None
        else ""
    )
    return wat2wasm(text.replace(";;VALIDATE;;", fn))


def abi1_version(version: int) -> bytes:
    text = _template("abi1_fixed.wat.in").replace(";;DATA;;", '""').replace(";;LEN;;", "0")
    return wat2wasm(text.replace("(i32.const 1)) ;;VERSION", f"(i32.const {version})) ;;VERSION"))


def bad_realloc() -> bytes:
    """``cabi_realloc`` returns a pointer near the top of the address space."""
    text = (
        _template("abi2.wat.in")
        .replace("(local.set $p (global.get $heap))", "(local.set $p (i32.const -8))")
        .replace(";;IMPORTS;;", "")
        .replace(";;EXTRA;;", "")
        .replace(";;BODY;;", ECHO)
        .replace(";;POST;;", "")
    )
    return wat2wasm(text)


def huge_initial_memory(pages: int) -> bytes:
    """An echo guest that declares ``pages`` pages of memory up front."""
    text = _template("abi2.wat.in").replace(
        '(memory (export "memory") 3)', f'(memory (export "memory") {pages})'
    )
    for key, value in (("IMPORTS", ""), ("EXTRA", ""), ("BODY", ECHO), ("POST", "")):
        text = text.replace(f";;{key};;", value)
    return wat2wasm(text)


def wasi_wrong_signature() -> bytes:
    return abi2(
        ECHO,
        imports='(import "wasi_snapshot_preview1" "fd_write" (func $w (param i32) (result i32)))',
    )


def imports_memory() -> bytes:
    return fixture("imports_memory.wat")


def many_exports(count: int) -> bytes:
    """An echo guest with ``count`` extra exported functions."""
    extra = "\n".join(
        f'(func (export "extra{i}") (result i32) (i32.const {i}))' for i in range(count)
    )
    return abi2(ECHO, extra=extra)


# --- the keys interface (world 1.2.0; 1.3.0 adds OpenPGP and base32 keys, HMAC-SHA384 and
# signature checks) ---------------------------------------------------------------------------

KEYS_MODULE = "vultrino:plugin/keys@1.2.0"
KEYS_MODULE_1_3 = "vultrino:plugin/keys@1.3.0"
_KEYS_PARAMS = {"sign": 6, "public": 4, "hash": 3, "verify": 6}


def _keys_import(fn: str, kind: str, module: str = KEYS_MODULE) -> str:
    params = " ".join(["i32"] * _KEYS_PARAMS[kind])
    result = " (result i32)" if kind == "verify" else ""
    return f'(import "{module}" "{fn}" (func ${fn} (param {params}){result}))'


def _keys_call(  # noqa: PLR0917 - the call's arguments, in the ABI's order
    fn: str, kind: str, field_ptr: int, field_len: int, fmt: int, data: str
) -> str:
    """One call of ``fn`` with its record at 1024 (``data``: WAT pointer and length)."""
    if kind == "sign":
        args = f"(i32.const {field_ptr}) (i32.const {field_len}) (i32.const {fmt}) {data}"
    elif kind == "public":
        args = f"(i32.const {field_ptr}) (i32.const {field_len}) (i32.const {fmt})"
    elif kind == "verify":  # (key, message, signature) -> bool: the name as the key
        return f"(drop (call ${fn} (i32.const {field_ptr}) (i32.const {field_len}) {data} {data}))"
    else:
        args = data
    return f"(call ${fn} {args} (i32.const 1024))"


def keys_call(  # noqa: PLR0917 - the call's arguments, then the interface's version
    fn: str,
    kind: str,
    field: str = "",
    fmt: int = 0,
    data: bytes = b"",
    module: str = KEYS_MODULE,
) -> bytes:
    """A guest that calls ``keys.<fn>`` (imported from ``module``) once and answers ``{"ok":
    bin}``: the 12-byte ``result<list<u8>, key-error>`` record (8 bytes for a hash: ptr, len),
    then the output."""
    record = 8 if kind == "hash" else 12
    ptr, length = (1024, 1028) if kind == "hash" else (1028, 1032)
    ok = "(i32.const 1)" if kind == "hash" else "(i32.eqz (i32.load8_u (i32.const 1024)))"
    field_bytes = field.encode()
    call = _keys_call(
        fn, kind, 65536, len(field_bytes), fmt, f"(i32.const 65792) (i32.const {len(data)})"
    )
    body = f"""
    (local $n i32) (local $out i32) (local $total i32)
    (i32.store (i32.const 1024) (i32.const 0)) (i32.store (i32.const 1028) (i32.const 0))
    (i32.store (i32.const 1032) (i32.const 0))
    {call}
    (local.set $n (if (result i32) {ok}
                    (then (i32.load (i32.const {length}))) (else (i32.const 0))))
    (local.set $total (i32.add (i32.const {record}) (local.get $n)))
    (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
                                   (i32.add (local.get $total) (i32.const 7))))
    (i32.store8 (local.get $out) (i32.const 0x81))
    (i32.store8 offset=1 (local.get $out) (i32.const 0xa2))
    (i32.store8 offset=2 (local.get $out) (i32.const 0x6f))
    (i32.store8 offset=3 (local.get $out) (i32.const 0x6b))
    (i32.store8 offset=4 (local.get $out) (i32.const 0xc5))
    (i32.store8 offset=5 (local.get $out) (i32.shr_u (local.get $total) (i32.const 8)))
    (i32.store8 offset=6 (local.get $out) (local.get $total))
    (memory.copy (i32.add (local.get $out) (i32.const 7)) (i32.const 1024) (i32.const {record}))
    (memory.copy (i32.add (local.get $out) (i32.const {7 + record}))
                 (i32.load (i32.const {ptr})) (local.get $n))
    (call $respond (local.get $out) (i32.add (local.get $total) (i32.const 7)))"""
    extra = (
        f"(data (i32.const 65536) {data_string(field_bytes)})\n"
        f"  (data (i32.const 65792) {data_string(data)})"
    )
    return abi2(body, imports=_keys_import(fn, kind, module), extra=extra)


#: What the hostile guest asks the keys interface for: names that are not the field, or are
#: the field in another spelling, and every operation on the real field.
HOSTILE_KEY_NAMES = (
    "PRIVATE_KEY",
    "private_key ",
    "private_key\x00",
    "../private_key",
    "fields.private_key",
    "credential",
    "passphrase",
    "",
)


def keys_hostile() -> bytes:
    """A guest (world 1.3.0) that calls every ``keys`` function on its host-only field
    ``private_key`` and on :data:`HOSTILE_KEY_NAMES`, in every key format and one past them,
    keeps every output in its memory, and answers with its whole request echoed back (so the
    test sees what the request carried)."""
    from vultrino.runtime.wit import KEYS_FUNCTIONS

    names = ["private_key", *HOSTILE_KEY_NAMES]
    segments: list[str] = []
    offsets: list[tuple[int, int]] = []
    at = 65536
    for name in names:
        raw = name.encode()
        segments.append(f"(data (i32.const {at}) {data_string(raw)})")
        offsets.append((at, len(raw)))
        at += len(raw) + 1
    digest = at  # 32 bytes of data to sign: a digest for secp256k1, a message for the rest
    segments.append(f"(data (i32.const {digest}) {data_string(bytes(range(32)))})")
    imports = "\n  ".join(
        _keys_import(fn, kind, KEYS_MODULE_1_3) for fn, kind in KEYS_FUNCTIONS.items()
    )
    calls: list[str] = []
    for fn, kind in KEYS_FUNCTIONS.items():
        for ptr, length in offsets if kind != "hash" else offsets[:1]:
            for fmt in (0, 1, 2, 3, 4, 5, 7):
                calls.append(
                    _keys_call(fn, kind, ptr, length, fmt, f"(i32.const {digest}) (i32.const 32)")
                )
    body = "\n    ".join(calls) + "\n    (call $ok_echo (local.get $ptr) (local.get $len))"
    return abi2(body, imports=imports, extra="\n  ".join(segments), post=False)


# --- the http interface (world 1.3.0) ---------------------------------------------------------

HTTP_MODULE = "vultrino:plugin/http@1.3.0"


def http_send(request: bytes) -> bytes:
    """A guest that calls ``http.send`` once with ``request`` (MessagePack bytes, fixed at
    build time) and answers ``{"ok": <the host's answer>}`` (the answer is itself a
    MessagePack value, so it is appended as it is)."""
    body = """
    (local $n i32) (local $out i32)
    (call $send (i32.const 65536) (i32.const LEN) (i32.const 1024))
    (local.set $n (i32.load (i32.const 1028)))
    (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
                                   (i32.add (local.get $n) (i32.const 4))))
    (i32.store8 (local.get $out) (i32.const 0x81))
    (i32.store8 offset=1 (local.get $out) (i32.const 0xa2))
    (i32.store8 offset=2 (local.get $out) (i32.const 0x6f))
    (i32.store8 offset=3 (local.get $out) (i32.const 0x6b))
    (memory.copy (i32.add (local.get $out) (i32.const 4))
                 (i32.load (i32.const 1024)) (local.get $n))
    (call $respond (local.get $out) (i32.add (local.get $n) (i32.const 4)))""".replace(
        "LEN", str(len(request))
    )
    imports = f'(import "{HTTP_MODULE}" "send" (func $send (param i32 i32 i32)))'
    extra = f"(data (i32.const 65536) {data_string(request)})"
    return abi2(body, imports=imports, extra=extra)
