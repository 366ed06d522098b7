"""Tiny WASI 0.2 component guests, written in component WAT and compiled at test time.

Each guest is the same component shell (the ``vultrino:plugin/host@1.0.0`` import, a memory
module, the lifted ``vultrino:plugin/handler@1.0.0#execute``) around a few lines of core WAT:
the body of ``execute(ptr, len) -> retptr``. The memory lives in its own core module so the
``log`` import can be lowered against it. ``wasmtime.wat2wasm`` parses component text on every
Python this project supports, so these also serve the wasmer leg (which must refuse them).
"""

from __future__ import annotations

import wasmtime

#: msgpack {"ok": 1}
OK_ONE = bytes([0x81, 0xA2, 0x6F, 0x6B, 0x01])

_SHELL = """
(component
  (import "vultrino:plugin/host@1.0.0" (instance $host
    (type $level (enum "debug" "info" "warn" "error"))
    (export "log-level" (type $ll (eq $level)))
    (export "log" (func (param "level" $ll) (param "message" string)))))
  {extra_imports}
  (core module $Mem (memory (export "memory") {initial_pages}) {mem_extra})
  (core instance $mem (instantiate $Mem))
  (core func $log (canon lower (func $host "log") (memory (core memory $mem "memory"))))
  {extra_lowers}
  (core module $M
    (import "mem" "memory" (memory 1))
    (import "host" "log" (func $log (param i32 i32 i32)))
    {extra_core_imports}
    (global $bump (mut i32) (i32.const 4096))
    (data (i32.const 64) "\\81\\a2ok\\01")
    (data (i32.const 128) "hello from a component")
    (func $grow_to (param $end i32)
      (loop $more
        (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
          (then
            (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
            (br $more)))))
    (func $alloc (param $n i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $bump))
      (global.set $bump (i32.add (global.get $bump) (local.get $n)))
      (call $grow_to (global.get $bump))
      (local.get $p))
    (func $recurse (param $n i32) (result i32)
      (i32.add (call $recurse (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (call $alloc (local.get 3)))
    (func (export "execute") (param $ptr i32) (param $len i32) (result i32)
      {body})
    (func (export "post") (param i32)))
  (core instance $m (instantiate $M
    (with "mem" (instance $mem))
    (with "host" (instance (export "log" (func $log)) {extra_with}))))
  (func $execute (param "request" (list u8)) (result (list u8))
    (canon lift (core func $m "execute") (memory (core memory $mem "memory"))
      (realloc (core func $m "cabi_realloc")) (post-return (core func $m "post"))))
  (instance $handler (export "execute" (func $execute)))
  (export "vultrino:plugin/handler@1.0.0" (instance $handler)))
"""

#: execute bodies: each leaves the return area's address (0) on the stack.
BODIES = {
    # the request back, unchanged
    "echo": """
      (i32.store (i32.const 0) (local.get $ptr))
      (i32.store (i32.const 4) (local.get $len))
      (i32.const 0)""",
    # {"ok": 1}, after one log line
    "ok_logs": """
      (call $log (i32.const 1) (i32.const 128) (i32.const 22))
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (i32.const 5))
      (i32.const 0)""",
    "loop_forever": "(loop $l (br $l)) (i32.const 0)",
    "trap": "unreachable",
    # grows memory without end: memory.grow fails at the cap, then the guest traps
    "memory_bomb": "(call $grow_to (i32.const -1)) (i32.const 0)",
    # a result as long as the request says (in its last four bytes, little-endian), from 0
    "huge_output": """
      (local.set $len
        (i32.load (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 4))))
      (call $grow_to (local.get $len))
      (i32.store (i32.const 0) (i32.const 0))
      (i32.store (i32.const 4) (local.get $len))
      (i32.const 0)""",
    # 5000 log lines in one call
    "log_flood": """
      (local.set $len (i32.const 5000))
      (loop $l
        (call $log (i32.const 2) (i32.const 128) (i32.const 22))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (br_if $l (local.get $len)))
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (i32.const 5))
      (i32.const 0)""",
    # recursion until the wasm stack overflows
    "recursion": "(call $recurse (i32.const 0))",
    "garbage": """
      (i32.store (i32.const 0) (i32.const 128))
      (i32.store (i32.const 4) (i32.const 5))
      (i32.const 0)""",
    "bad_pointer": """
      (i32.store (i32.const 0) (i32.const 0x7fff0000))
      (i32.store (i32.const 4) (i32.const 16))
      (i32.const 0)""",
}


def component(body: str, **extra: str) -> bytes:
    """A component around ``body`` (a key of :data:`BODIES` or core WAT)."""
    return bytes(wasmtime.wat2wasm(component_wat(body, **extra)))


def component_wat(body: str, **extra: str) -> str:
    """The component text of :func:`component`."""
    fields = {
        "initial_pages": "1",
        "mem_extra": "",
        "extra_imports": "",
        "extra_lowers": "",
        "extra_core_imports": "",
        "extra_with": "",
    }
    fields.update(extra)
    return _SHELL.format(body=BODIES.get(body, body), **fields)


# A guest that writes "to stdout\n" through wasi:cli/stdout and wasi:io/streams.
_STDOUT_IMPORTS = """
  (import "wasi:io/error@0.2.0" (instance $ioerr (export "error" (type (sub resource)))))
  (alias export $ioerr "error" (type $error))
  (import "wasi:io/streams@0.2.0" (instance $streams
    (export "error" (type $e (eq $error)))
    (export "output-stream" (type $os (sub resource)))
    (type $err-own (own $e))
    (type $stream-error (variant (case "last-operation-failed" $err-own) (case "closed")))
    (export "stream-error" (type $se (eq $stream-error)))
    (export "[method]output-stream.blocking-write-and-flush"
      (func (param "self" (borrow $os)) (param "contents" (list u8))
        (result (result (error $se)))))))
  (alias export $streams "output-stream" (type $output-stream))
  (import "wasi:cli/stdout@0.2.0" (instance $stdout
    (export "output-stream" (type $os (eq $output-stream)))
    (export "get-stdout" (func (result (own $os))))))
"""
_STDOUT_LOWERS = """
  (core func $get_stdout (canon lower (func $stdout "get-stdout")))
  (core func $write (canon lower (func $streams "[method]output-stream.blocking-write-and-flush")
    (memory (core memory $mem "memory"))))
"""
_STDOUT_CORE = """
    (import "host" "get-stdout" (func $get_stdout (result i32)))
    (import "host" "write" (func $write (param i32 i32 i32 i32)))
    (data (i32.const 256) "to stdout\\n")
"""
_STDOUT_WITH = """(export "get-stdout" (func $get_stdout)) (export "write" (func $write))"""


def stdout_writer() -> bytes:
    """A component that writes one line to stdout, then answers {"ok": 1}."""
    return component(
        """
      (call $write (call $get_stdout) (i32.const 256) (i32.const 10) (i32.const 512))
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (i32.const 5))
      (i32.const 0)""",
        extra_imports=_STDOUT_IMPORTS,
        extra_lowers=_STDOUT_LOWERS,
        extra_core_imports=_STDOUT_CORE,
        extra_with=_STDOUT_WITH,
    )


def foreign_import(name: str = "acme:secrets/vault@1.0.0") -> bytes:
    """An otherwise fine component that also imports an interface Vultrino does not offer."""
    return component(
        "ok_logs",
        extra_imports=f'(import "{name}" (instance (export "get" (func (result string)))))',
    )


def wrong_execute() -> bytes:
    """A component whose execute takes a string instead of list<u8>."""
    wat = _SHELL.format(
        body=BODIES["echo"],
        initial_pages="1",
        mem_extra="",
        extra_imports="",
        extra_lowers="",
        extra_core_imports="",
        extra_with="",
    ).replace('(param "request" (list u8))', '(param "request" string)')
    return bytes(wasmtime.wat2wasm(wat))


# Guests that wait through wasi:clocks/monotonic-clock and wasi:io/poll. The memory module
# also exports a bump `realloc`, which `poll` needs to return its list.
_WAIT_IMPORTS = """
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type $p (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow $p))))
    (export "poll" (func (param "in" (list (borrow $p))) (result (list u32))))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (export "pollable" (type $p (eq $pollable)))
    (type $instant u64)
    (export "instant" (type $i (eq $instant)))
    (export "now" (func (result $i)))
    (export "resolution" (func (result u64)))
    (export "subscribe-instant" (func (param "when" $i) (result (own $p))))
    (export "subscribe-duration" (func (param "when" u64) (result (own $p))))))
"""
_WAIT_MEM = """
    (global $next (mut i32) (i32.const 32768))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (global.get $next)
      (global.set $next (i32.add (global.get $next) (local.get 3))))
"""
_WAIT_LOWERS = """
  (core func $now (canon lower (func $clock "now")))
  (core func $resolution (canon lower (func $clock "resolution")))
  (core func $sub_dur (canon lower (func $clock "subscribe-duration")))
  (core func $sub_inst (canon lower (func $clock "subscribe-instant")))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core func $poll (canon lower (func $poll "poll")
    (memory (core memory $mem "memory")) (realloc (core func $mem "realloc"))))
"""
_WAIT_CORE = """
    (import "host" "now" (func $now (result i64)))
    (import "host" "resolution" (func $resolution (result i64)))
    (import "host" "sub_dur" (func $sub_dur (param i64) (result i32)))
    (import "host" "sub_inst" (func $sub_inst (param i64) (result i32)))
    (import "host" "block" (func $block (param i32)))
    (import "host" "poll" (func $poll (param i32 i32 i32)))
"""
_WAIT_WITH = """
    (export "now" (func $now)) (export "resolution" (func $resolution))
    (export "sub_dur" (func $sub_dur)) (export "sub_inst" (func $sub_inst))
    (export "block" (func $block)) (export "poll" (func $poll))"""

_ANSWER_OK = """
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (i32.const 5))
      (i32.const 0)"""

#: execute bodies that wait, then answer {"ok": 1}
WAITS = {
    # a 10 ms nap: short waits work as before
    "nap": "(call $block (call $sub_dur (i64.const 10000000)))",
    # subscribe-duration(10 s), then block on it
    "block_10s": "(call $block (call $sub_dur (i64.const 10000000000)))",
    # poll a list of two clock pollables, 10 s and 20 s away
    "poll_10s": """
      (i32.store (i32.const 512) (call $sub_dur (i64.const 10000000000)))
      (i32.store (i32.const 516) (call $sub_dur (i64.const 20000000000)))
      (call $poll (i32.const 512) (i32.const 2) (i32.const 600))""",
    # subscribe-instant(now + 10 s), then block
    "instant_10s": """
      (call $block (call $sub_inst (i64.add (call $now) (i64.const 10000000000))))""",
    # subscribe-instant at the end of time (u64 max), then block
    "instant_forever": "(call $block (call $sub_inst (i64.const -1)))",
    # sleep one second at a time, forever
    "sleep_loop": """
      (loop $l (call $block (call $sub_dur (i64.const 1000000000))) (br $l))""",
    # the clock reads: now() twice (not going backwards) and resolution() > 0, else trap
    "clock_reads": """
      (local $t i64)
      (local.set $t (call $now))
      (if (i64.lt_u (call $now) (local.get $t)) (then unreachable))
      (if (i64.eqz (call $resolution)) (then unreachable))""",
}


def waiter(body: str) -> bytes:
    """A component that runs ``WAITS[body]`` (or core WAT), then answers {"ok": 1}."""
    return bytes(wasmtime.wat2wasm(waiter_wat(body)))


def waiter_wat(body: str) -> str:
    """The component text of :func:`waiter`."""
    return component_wat(
        WAITS.get(body, body) + _ANSWER_OK,
        mem_extra=_WAIT_MEM,
        extra_imports=_WAIT_IMPORTS,
        extra_lowers=_WAIT_LOWERS,
        extra_core_imports=_WAIT_CORE,
        extra_with=_WAIT_WITH,
    )


# --- 1.1.0 components: execute and execute-text ------------------------------------------------

#: execute-text bodies: the answer as text (each byte a character, in UTF-8). Each reads
#: (ptr, len) of the request and leaves the return area's address (0) on the stack.
TEXT_BODIES = {
    # the request back, unchanged (text in, the same text out)
    "echo": BODIES["echo"],
    # {"ok": 1} as text: 0x81 and 0xa2 are two bytes of UTF-8 each
    "ok": """
      (i32.store (i32.const 0) (i32.const 96))
      (i32.store (i32.const 4) (i32.const 7))
      (i32.const 0)""",
    # a string far outside the guest's memory
    "bad_pointer": BODIES["bad_pointer"],
    # a string whose length runs past the end of memory (4 GiB - 1 bytes from 0)
    "huge_len": """
      (i32.store (i32.const 0) (i32.const 0))
      (i32.store (i32.const 4) (i32.const -1))
      (i32.const 0)""",
    # a lone 0x81: not UTF-8
    "not_utf8": """
      (i32.store (i32.const 0) (i32.const 97))
      (i32.store (i32.const 4) (i32.const 1))
      (i32.const 0)""",
    # "\u20ac" (the euro sign): UTF-8, but not one byte
    "wide_char": """
      (i32.store (i32.const 0) (i32.const 104))
      (i32.store (i32.const 4) (i32.const 3))
      (i32.const 0)""",
}


def text_component(text_body: str, body: str = "echo", **extra: str) -> bytes:
    """A 1.1.0 component: ``execute`` runs ``body`` (:data:`BODIES`), ``execute-text`` runs
    ``text_body`` (:data:`TEXT_BODIES` or core WAT); both import ``host@1.1.0``."""
    return bytes(wasmtime.wat2wasm(text_component_wat(text_body, body, **extra)))


def text_component_wat(text_body: str, body: str = "echo", **extra: str) -> str:
    wat = component_wat(body, **extra)
    wat = wat.replace("vultrino:plugin/host@1.0.0", "vultrino:plugin/host@1.1.0")
    wat = wat.replace("vultrino:plugin/handler@1.0.0", "vultrino:plugin/handler@1.1.0")
    wat = wat.replace(
        '(data (i32.const 64) "\\81\\a2ok\\01")',
        '(data (i32.const 64) "\\81\\a2ok\\01")\n'
        '    (data (i32.const 96) "\\c2\\81\\c2\\a2ok\\01")\n'
        '    (data (i32.const 104) "\\e2\\82\\ac")',
    )
    wat = wat.replace(
        '(func (export "post") (param i32)))',
        '(func (export "execute_text") (param $ptr i32) (param $len i32) (result i32)\n'
        f"      {TEXT_BODIES.get(text_body, text_body)})\n"
        '    (func (export "post") (param i32)))',
    )
    return wat.replace(
        '(instance $handler (export "execute" (func $execute)))',
        """(func $execute_text (param "request" string) (result string)
    (canon lift (core func $m "execute_text") (memory (core memory $mem "memory"))
      (realloc (core func $m "cabi_realloc")) (post-return (core func $m "post"))))
  (instance $handler (export "execute" (func $execute))
    (export "execute-text" (func $execute_text)))""",
    )


# A guest that calls keys.hmac-sha256 on the field "secret" over "msg" and answers {"ok": bin}
# with the output, or {"ok": <key-error case index>}. The lowered call's realloc lives in the
# memory module (it must exist before $M is instantiated).
_KEYS_IMPORTS = """
  (import "vultrino:plugin/keys@1.2.0" (instance $keys
    (type $fmt (enum "raw" "hex" "base64" "pem"))
    (export "key-format" (type $kf (eq $fmt)))
    (type $err (enum "no-credential" "unknown-field" "bad-format" "bad-key" "bad-input"))
    (export "key-error" (type $ke (eq $err)))
    (export "hmac-sha256" (func (param "field" string) (param "format" $kf)
      (param "data" (list u8)) (result (result (list u8) (error $ke)))))
    (export "sha256" (func (param "data" (list u8)) (result (list u8))))))
"""
_KEYS_MEM = """
    (global $b (mut i32) (i32.const 32768))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $b))
      (global.set $b (i32.add (global.get $b) (local.get 3)))
      (local.get $p))
"""
_KEYS_LOWERS = """
  (core func $hmac (canon lower (func $keys "hmac-sha256") (memory (core memory $mem "memory"))
    (realloc (core func $mem "realloc"))))
  (core func $sha (canon lower (func $keys "sha256") (memory (core memory $mem "memory"))
    (realloc (core func $mem "realloc"))))
"""
_KEYS_CORE = """
    (import "host" "hmac" (func $hmac (param i32 i32 i32 i32 i32 i32)))
    (import "host" "sha" (func $sha (param i32 i32 i32)))
    (data (i32.const 200) "secret")
    (data (i32.const 220) "msg")
    (data (i32.const 2048) "\\81\\a2ok\\c4")
"""
_KEYS_BODY = """
      (call $hmac (i32.const 200) (i32.const 6) (i32.const FMT) (i32.const 220) (i32.const 3)
                  (i32.const 1024))
      (call $sha (i32.const 220) (i32.const 3) (i32.const 1040))
      (if (i32.load8_u (i32.const 1024))
        (then
          (i32.store8 (i32.const 2052) (i32.load8_u (i32.const 1028)))
          (i32.store (i32.const 0) (i32.const 2048))
          (i32.store (i32.const 4) (i32.const 5)))
        (else
          (i32.store8 (i32.const 2052) (i32.const 0xc4))
          (i32.store8 (i32.const 2053) (i32.load (i32.const 1032)))
          (memory.copy (i32.const 2054) (i32.load (i32.const 1028)) (i32.load (i32.const 1032)))
          (i32.store (i32.const 0) (i32.const 2048))
          (i32.store (i32.const 4) (i32.add (i32.load (i32.const 1032)) (i32.const 6)))))
      (i32.const 0)"""


#: The keys interface of world 1.3.0 as a component imports it, for :func:`keys_hmac`.
KEY_FORMAT_CASES_1_3 = '"raw" "hex" "base64" "pem" "openpgp" "base32"'


def keys_hmac(function: str = "hmac-sha256", fmt: int = 0, formats: str | None = None) -> bytes:
    """A component that signs "msg" with keys.``function`` over its field ``secret`` read in
    key format ``fmt``: from keys@1.2.0, or from keys@1.3.0 with the key-format cases
    ``formats`` (WAT enum cases) when they are given."""
    imports = _KEYS_IMPORTS.replace('"hmac-sha256"', f'"{function}"')
    if formats is not None:
        imports = imports.replace("keys@1.2.0", "keys@1.3.0").replace(
            '(enum "raw" "hex" "base64" "pem")', f"(enum {formats})"
        )
    return component(
        _KEYS_BODY.replace("FMT", str(fmt)),
        extra_imports=imports,
        mem_extra=_KEYS_MEM,
        extra_lowers=_KEYS_LOWERS.replace('"hmac-sha256"', f'"{function}"'),
        extra_core_imports=_KEYS_CORE,
        extra_with='(export "hmac" (func $hmac)) (export "sha" (func $sha))',
    )


# A component of world 1.3.0: keys.ed25519-verify over data it carries, and
# keys.ed25519-public-key of its field "k" in the `openpgp` key format (new in 1.3.0; the
# 1.3.0 key-format has six cases, `base32` the last).
_KEYS13_IMPORTS = """
  (import "vultrino:plugin/keys@1.3.0" (instance $keys
    (type $fmt (enum "raw" "hex" "base64" "pem" "openpgp" "base32"))
    (export "key-format" (type $kf (eq $fmt)))
    (type $err (enum "no-credential" "unknown-field" "bad-format" "bad-key" "bad-input"))
    (export "key-error" (type $ke (eq $err)))
    (export "ed25519-public-key" (func (param "field" string) (param "format" $kf)
      (result (result (list u8) (error $ke)))))
    (export "ed25519-verify" (func (param "public-key" (list u8)) (param "message" (list u8))
      (param "signature" (list u8)) (result bool)))))
"""
_KEYS13_LOWERS = """
  (core func $pub (canon lower (func $keys "ed25519-public-key")
    (memory (core memory $mem "memory")) (realloc (core func $mem "realloc"))))
  (core func $verify (canon lower (func $keys "ed25519-verify")
    (memory (core memory $mem "memory"))))
"""
_KEYS13_BODY = """
      (i32.store8 (i32.const 2054)
        (call $verify (i32.const 300) (i32.const 32) (i32.const 340) (i32.const {mlen})
                      (i32.const 400) (i32.const 64)))
      (call $pub (i32.const 200) (i32.const 1) (i32.const 4) (i32.const 1024))
      (if (i32.load8_u (i32.const 1024))
        (then
          (i32.store8 (i32.const 2055) (i32.load8_u (i32.const 1028)))
          (i32.store8 (i32.const 2053) (i32.const 2)))
        (else
          (memory.copy (i32.const 2055) (i32.load (i32.const 1028)) (i32.load (i32.const 1032)))
          (i32.store8 (i32.const 2053) (i32.add (i32.const 1) (i32.load (i32.const 1032))))))
      (i32.store (i32.const 0) (i32.const 2048))
      (i32.store (i32.const 4) (i32.add (i32.load8_u (i32.const 2053)) (i32.const 6)))
      (i32.const 0)"""


def _wat_bytes(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


def keys_openpgp(public: bytes, message: bytes, signature: bytes) -> bytes:
    """A 1.3.0 component answering ``{"ok": bin}``: one byte, whether ``signature`` verifies
    (keys.ed25519-verify), then the Ed25519 public key of its field ``k`` read in the
    ``openpgp`` format (or, when refused, the key-error case's index)."""
    core = f"""
    (import "host" "pub" (func $pub (param i32 i32 i32 i32)))
    (import "host" "verify" (func $verify (param i32 i32 i32 i32 i32 i32) (result i32)))
    (data (i32.const 200) "k")
    (data (i32.const 300) "{_wat_bytes(public)}")
    (data (i32.const 340) "{_wat_bytes(message)}")
    (data (i32.const 400) "{_wat_bytes(signature)}")
    (data (i32.const 2048) "\\81\\a2ok\\c4")
"""
    assert len(public) == 32 and len(message) <= 60 and len(signature) == 64
    return component(
        _KEYS13_BODY.format(mlen=len(message)),
        extra_imports=_KEYS13_IMPORTS,
        mem_extra=_KEYS_MEM,
        extra_lowers=_KEYS13_LOWERS,
        extra_core_imports=core,
        extra_with='(export "pub" (func $pub)) (export "verify" (func $verify))',
    )


# A guest that calls http.send once with a fixed request and answers {"ok": <the answer>} (the
# answer is MessagePack, appended as it is).
_HTTP_IMPORTS = """
  (import "vultrino:plugin/http@1.3.0" (instance $http
    (export "send" (func (param "request" (list u8)) (result (list u8))))))
"""
_HTTP_LOWERS = """
  (core func $send (canon lower (func $http "send") (memory (core memory $mem "memory"))
    (realloc (core func $mem "realloc"))))
"""
_HTTP_BODY = """
      (call $send (i32.const 20000) (i32.const LEN) (i32.const 1024))
      (memory.copy (i32.const 2052) (i32.load (i32.const 1024)) (i32.load (i32.const 1028)))
      (i32.store (i32.const 0) (i32.const 2048))
      (i32.store (i32.const 4) (i32.add (i32.load (i32.const 1028)) (i32.const 4)))
      (i32.const 0)"""


def http_send(request: bytes) -> bytes:
    """A component that sends ``request`` (MessagePack) through http.send and answers
    ``{"ok": <the host's answer>}``."""
    from tests.guests import data_string

    core = f"""
    (import "host" "send" (func $send (param i32 i32 i32)))
    (data (i32.const 2048) "\\81\\a2ok")
    (data (i32.const 20000) {data_string(request)})
"""
    return component(
        _HTTP_BODY.replace("LEN", str(len(request))),
        extra_imports=_HTTP_IMPORTS,
        mem_extra=_KEYS_MEM,
        extra_lowers=_HTTP_LOWERS,
        extra_core_imports=core,
        extra_with='(export "send" (func $send))',
    )
