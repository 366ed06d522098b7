"""The engine-neutral parts of the runtime: ABI checks, codecs, WASI functions, the plugin log.

Pure Python: module shapes are written out by hand and guest memory is a bytearray. The same
code runs against real engines in tests/integration/test_runtime_conformance.py.
"""

from __future__ import annotations

import json
import logging
import struct
from typing import Any

import pytest

from vultrino import _msgpack
from vultrino.errors import (
    EngineUnavailableError,
    ModuleError,
    ParameterError,
    PluginABIError,
)
from vultrino.runtime import ENGINES, Limits, _wasi, abi, available_engines, load_engine
from vultrino.runtime.engine import ExportDesc, FuncType, GuestExit, ImportDesc, ModuleShape
from vultrino.runtime.module import MAX_LOG_MESSAGE, _PluginLog

I32 = "i32"


def ft(params: str, results: str = "") -> FuncType:
    kinds = {"i": "i32", "I": "i64"}
    return FuncType(tuple(kinds[c] for c in params), tuple(kinds[c] for c in results))  # type: ignore[misc]


def func(name: str, t: FuncType) -> ExportDesc:
    return ExportDesc(name, "func", t)


MEMORY = ExportDesc("memory", "memory")
ABI2 = (
    MEMORY,
    func(abi.REALLOC, ft("iiii", "i")),
    func(abi.EXECUTE, ft("ii", "i")),
)
ABI1 = (
    MEMORY,
    func("vultrino_plugin_version", ft("", "i")),
    func("vultrino_alloc", ft("i", "i")),
    func("vultrino_free", ft("ii")),
    func("vultrino_execute", ft("ii", "I")),
)
LOG = ImportDesc(abi.HOST_MODULE, "log", "func", ft("iii"))
FD_WRITE = ImportDesc("wasi_snapshot_preview1", "fd_write", "func", ft("iiii", "i"))


class Mem:
    """Guest memory for the pure-Python tests (the Memory protocol over a bytearray)."""

    def __init__(self, size: int = 4096) -> None:
        self.data = bytearray(size)

    def size(self) -> int:
        return len(self.data)

    def read(self, ptr: int, length: int) -> bytes:
        if ptr < 0 or length < 0 or ptr + length > len(self.data):
            raise PluginABIError("out of bounds")
        return bytes(self.data[ptr : ptr + length])

    def write(self, ptr: int, data: bytes) -> None:
        if ptr < 0 or ptr + len(data) > len(self.data):
            raise PluginABIError("out of bounds")
        self.data[ptr : ptr + len(data)] = data


# --- detection and checks ----------------------------------------------------------------------


def test_abi2_detected_and_accepted_with_log_and_wasi() -> None:
    shape = ModuleShape((LOG, FD_WRITE), (*ABI2, func(abi.POST_EXECUTE, ft("i"))))
    assert abi.check_module(shape) == 2


def test_abi1_detected_with_optional_validate() -> None:
    shape = ModuleShape((FD_WRITE,), (*ABI1, func("vultrino_validate_params", ft("iiii", "i"))))
    assert abi.check_module(shape) == 1


def test_abi2_wins_when_both_are_exported() -> None:
    assert abi.check_module(ModuleShape((), ABI2 + ABI1[1:])) == 2


def test_not_a_plugin() -> None:
    with pytest.raises(ModuleError, match="not a Vultrino plugin"):
        abi.check_module(ModuleShape((), (MEMORY, func("_start", ft("")))))


@pytest.mark.parametrize(
    ("exports", "imports", "expected"),
    [
        (
            (*ABI2[:2], func(abi.EXECUTE, ft("i", "i"))),
            (),
            f"`{abi.EXECUTE}` has signature (i32) -> (i32)",
        ),
        (ABI2[1:], (), "missing required export `memory`"),
        ((MEMORY, ABI2[2]), (), "missing required export `cabi_realloc`"),
        (
            (*ABI2, func(abi.POST_EXECUTE, ft("ii"))),
            (),
            f"`{abi.POST_EXECUTE}` has signature",
        ),
        (ABI2, (ImportDesc("env", "abort", "func", ft("")),), "`env`.`abort` is not provided"),
        (
            ABI2,
            (ImportDesc("wasi_snapshot_preview1", "fd_write", "func", ft("i", "i")),),
            "expected (i32, i32, i32, i32) -> (i32)",
        ),
        (ABI2, (ImportDesc("wasi_snapshot_preview1", "mem", "memory"),), "only WASI functions"),
        (
            ABI2,
            (ImportDesc(abi.HOST_MODULE, "log", "func", ft("ii")),),
            "`log` has signature (i32, i32) -> ()",
        ),
        (ABI1[:4], (), "missing required export `vultrino_execute`"),
        (
            ABI1[:1] + ABI1[2:] + (func("vultrino_plugin_version", ft("", "I")),),
            (),
            "`vultrino_plugin_version` has signature () -> (i64)",
        ),
    ],
)
def test_check_names_the_offending_item(
    exports: tuple[ExportDesc, ...], imports: tuple[ImportDesc, ...], expected: str
) -> None:
    with pytest.raises(ModuleError) as info:
        abi.check_module(ModuleShape(imports, exports))
    assert expected in str(info.value)


def test_check_lists_every_problem() -> None:
    shape = ModuleShape(
        (ImportDesc("env", "a", "func", ft("")), ImportDesc("env", "b", "func", ft(""))), ABI2[1:]
    )
    with pytest.raises(ModuleError) as info:
        abi.check_module(shape)
    message = str(info.value)
    assert "`env`.`a`" in message and "`env`.`b`" in message and "`memory`" in message


def test_unknown_wasi_function_is_allowed_with_any_signature() -> None:
    imp = ImportDesc("wasi_snapshot_preview1", "future_call", "func", ft("Ii", "I"))
    assert abi.check_module(ModuleShape((imp,), ABI2)) == 2


# --- responses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"ok": None},
        {"ok": {"nested": [1, b"x"]}},
        {"error": {"code": "failed", "message": "no"}},
        {"error": {"code": "unknown_action", "message": ""}},
    ],
)
def test_good_responses(value: Any) -> None:
    assert abi.check_response(value) is value


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        [],
        {},
        {"ok": 1, "error": None},
        {"result": 1},
        {"error": "failed"},
        {"error": {"code": "failed"}},
        {"error": {"code": "failed", "message": 3}},
        {"error": {"code": "teapot", "message": "x"}},
        {"error": {"code": "failed", "message": "x", "extra": 1}},
    ],
)
def test_bad_responses_are_abi_errors(value: Any) -> None:
    with pytest.raises(PluginABIError):
        abi.check_response(value)


def test_decode_abi2() -> None:
    assert abi.decode_abi2(_msgpack.packb({"ok": 1})) == {"ok": 1}
    for raw in (b"", b"\xc1", _msgpack.packb(1) + b"\x00"):
        with pytest.raises(PluginABIError, match="not one MessagePack value"):
            abi.decode_abi2(raw)


# --- ABI 1 codec -------------------------------------------------------------------------------


def test_encode_abi1_matches_the_rust_host() -> None:
    body, action, params = abi.encode_abi1(
        {
            "action": "sign",
            "params": {"data": "ü"},
            "credential": {"alias": "a", "type": "t", "fields": {"k": "v"}},
        }
    )
    assert (
        body
        == (
            '{"action":"sign","credential":{"type":"custom","k":"v"},"parameters":{"data":"ü"}}'
        ).encode()
    )
    assert (action, params) == (b"sign", '{"data":"ü"}'.encode())


def test_encode_abi1_sends_the_rust_hosts_custom_credential_of_strings() -> None:
    fields = {"on": True, "off": False, "n": 3, "x": 2.5, "empty": "", "none": None, "s": "v"}
    body, _, _ = abi.encode_abi1(
        {"action": "a", "params": {}, "credential": {"alias": "c", "type": "t", "fields": fields}}
    )
    sent = json.loads(body)["credential"]
    assert sent == {"type": "custom", "on": "true", "off": "false", "n": "3", "x": "2.5", "s": "v"}
    no_credential, _, _ = abi.encode_abi1({"action": "a", "params": {}, "credential": None})
    assert json.loads(no_credential)["credential"] == {}


def test_encode_abi1_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(ParameterError):
        abi.encode_abi1({"action": "a", "params": {"x": b"bytes"}, "credential": None})
    with pytest.raises(ParameterError):
        abi.encode_abi1({"action": "a", "params": {"x": float("nan")}, "credential": None})
    with pytest.raises(ParameterError):
        abi.encode_abi1({"params": {}})


@pytest.mark.parametrize(("code", "name"), sorted(abi.ABI1_CODES.items()))
def test_abi1_code_table(code: int, name: str) -> None:
    raw = json.dumps({"code": code, "data": None, "error": "why"}).encode()
    assert abi.decode_abi1(raw) == {"error": {"code": name, "message": "why"}}


def test_abi1_data_stays_a_string_even_when_it_is_json() -> None:
    raw = json.dumps({"code": 0, "data": "[1, 2]", "error": None}).encode()
    assert abi.decode_abi1(raw) == {"ok": "[1, 2]"}


def test_abi1_deeply_nested_json_is_an_abi_error() -> None:
    with pytest.raises(PluginABIError):
        abi.decode_abi1(b"[" * 100_000)


# --- the log import ----------------------------------------------------------------------------


def _log_func(lines: list[tuple[str, str]], cap: int = 16) -> Any:
    shape = ModuleShape((LOG,), ABI2)
    funcs, _ = abi.host_functions(
        shape, lambda level, text: lines.append((level, text)), max_message_bytes=cap
    )
    [log] = funcs
    assert (log.module, log.name, log.type) == (abi.HOST_MODULE, "log", ft("iii"))
    return log.fn


def test_log_reads_levels_and_cuts_long_messages() -> None:
    lines: list[tuple[str, str]] = []
    log = _log_func(lines)
    mem = Mem()
    mem.write(100, b"hello" + "é".encode() + b"x" * 40)
    log(mem, 0, 100, 5)
    log(mem, 3, 100, 46)
    assert lines[0] == ("debug", "hello")
    assert (
        lines[1][0] == "error"
        and lines[1][1].startswith("helloé")
        and "30 more bytes dropped" in lines[1][1]
    )


@pytest.mark.parametrize(
    ("level", "ptr", "length"), [(4, 0, 1), (-1, 0, 1), (1, 4090, 10), (1, -8, 4), (1, 0, 5000)]
)
def test_log_refuses_bad_levels_and_pointers(level: int, ptr: int, length: int) -> None:
    with pytest.raises(PluginABIError):
        _log_func([])(Mem(), level, ptr, length)


def test_plugin_log_escapes_and_caps(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    log = _PluginLog("demo", None)
    log("warn", "line\nforged\x1b[2J\ttab")
    log("info", "y" * (MAX_LOG_MESSAGE + 10))
    [first, second] = caplog.records
    assert first.name == "vultrino.plugin.demo" and first.levelno == logging.WARNING
    assert first.getMessage() == "line\\x0aforged\\x1b[2J\ttab"
    assert second.getMessage().endswith("[...]") and len(second.getMessage()) == MAX_LOG_MESSAGE + 6


# --- WASI --------------------------------------------------------------------------------------


def wasi_table(names: list[str], sink: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    out = _wasi.GuestOutput(
        lambda lvl, text: (sink if sink is not None else []).append((lvl, text))
    )
    funcs = _wasi.host_functions(
        {n: _wasi.SIGNATURES[n] for n in names}, out, max_output_bytes=1 << 20
    )
    table = {f.name: f.fn for f in funcs}
    table["_output"] = out
    return table


def test_every_preview1_function_has_a_host_function() -> None:
    table = wasi_table(sorted(_wasi.SIGNATURES))
    assert set(table) - {"_output"} == set(_wasi.SIGNATURES)


def test_fd_write_to_stdout_and_stderr_becomes_log_lines() -> None:
    lines: list[tuple[str, str]] = []
    w = wasi_table(["fd_write"], lines)
    mem = Mem()
    mem.write(200, b"one\ntw")
    mem.write(300, b"o\nthree")
    mem.write(0, struct.pack("<IIII", 200, 6, 300, 7))
    assert w["fd_write"](mem, 1, 0, 2, 64) == 0
    assert struct.unpack_from("<I", mem.data, 64)[0] == 13
    assert lines == [("info", "one"), ("info", "two")]
    assert w["fd_write"](mem, 2, 0, 1, 64) == 0
    w["_output"].flush()
    assert lines[2:] == [("warn", "one"), ("info", "three"), ("warn", "tw")]


def test_fd_write_elsewhere_and_bad_pointers() -> None:
    w = wasi_table(["fd_write"])
    mem = Mem()
    assert w["fd_write"](mem, 3, 0, 0, 64) == _wasi.EBADF
    assert w["fd_write"](mem, 0, 0, 0, 64) == _wasi.ENOTCAPABLE
    mem.write(0, struct.pack("<II", 4000, 500))
    assert w["fd_write"](mem, 1, 0, 1, 64) == _wasi.EFAULT
    assert w["fd_write"](mem, 1, 0, 1, 5000) == _wasi.EFAULT


def test_nothing_to_open_read_or_inherit() -> None:
    t = wasi_table(
        [
            "path_open",
            "fd_prestat_get",
            "environ_sizes_get",
            "args_sizes_get",
            "fd_read",
            "environ_get",
        ]
    )
    mem = Mem()
    mem.data[:16] = b"\xff" * 16
    assert t["path_open"](mem, 3, 0, 100, 4, 0, -1, -1, 0, 8) == _wasi.EBADF
    assert t["path_open"](mem, 0, 0, 100, 4, 0, -1, -1, 0, 8) == _wasi.ENOTCAPABLE
    assert t["fd_prestat_get"](mem, 3, 8) == _wasi.EBADF
    assert t["environ_sizes_get"](mem, 0, 4) == 0 and mem.data[:8] == bytes(8)
    assert t["args_sizes_get"](mem, 8, 12) == 0 and mem.data[8:16] == bytes(8)
    assert t["environ_get"](mem, 0, 0) == 0
    mem.data[20:24] = b"\xff" * 4
    assert t["fd_read"](mem, 0, 0, 0, 20) == 0 and mem.data[20:24] == bytes(4)
    assert t["fd_read"](mem, 5, 0, 0, 20) == _wasi.EBADF


def test_clocks_random_and_exit() -> None:
    t = wasi_table(
        ["clock_time_get", "clock_res_get", "random_get", "proc_exit", "sched_yield", "poll_oneoff"]
    )
    mem = Mem()
    assert (
        t["clock_time_get"](mem, 0, 1, 8) == 0 and struct.unpack_from("<Q", mem.data, 8)[0] > 10**18
    )
    assert t["clock_time_get"](mem, 1, 1, 16) == 0
    assert t["clock_time_get"](mem, 9, 1, 16) == _wasi.EINVAL
    assert t["clock_res_get"](mem, 1, 24) == 0 and struct.unpack_from("<Q", mem.data, 24)[0] >= 1
    assert t["random_get"](mem, 100, 64) == 0 and mem.data[100:164] != bytes(64)
    assert t["random_get"](mem, 4000, 200) == _wasi.EFAULT
    assert t["sched_yield"](mem) == 0
    assert t["poll_oneoff"](mem, 0, 0, 0, 0) == _wasi.ENOSYS
    with pytest.raises(GuestExit) as info:
        t["proc_exit"](mem, 7)
    assert info.value.code == 7


def test_unknown_wasi_function_gets_an_enosys_stub() -> None:
    out = _wasi.GuestOutput(lambda *a: None)
    [stub, void] = _wasi.host_functions(
        {"made_up": ft("I", "i"), "made_up_void": ft("i")}, out, max_output_bytes=1
    )
    assert stub.type == ft("I", "i") and stub.fn(Mem(), 5) == _wasi.ENOSYS
    assert void.fn(Mem(), 1) is None


def test_guest_output_cuts_endless_lines() -> None:
    lines: list[tuple[str, str]] = []
    out = _wasi.GuestOutput(lambda lvl, text: lines.append((lvl, text)), max_line=8)
    out.write(1, b"0123456789abcdefXY\r\n")
    assert lines == [("info", "01234567"), ("info", "89abcdef"), ("info", "XY")]
    assert not out.pending


# --- engines -----------------------------------------------------------------------------------


def test_engine_registry() -> None:
    assert ENGINES[0] == "wasmtime" and set(ENGINES) == {"wasmtime", "wasmer"}
    found = available_engines()
    assert found[0] == "wasmtime" and set(found) <= set(ENGINES)


def test_unknown_engine_names_the_choices() -> None:
    with pytest.raises(EngineUnavailableError, match="wasmtime, wasmer"):
        load_engine("v8")


@pytest.mark.skipif("wasmer" in available_engines(), reason="wasmer is installed here")
def test_missing_wasmer_says_how_to_install() -> None:
    with pytest.raises(EngineUnavailableError, match=r"pip install 'vultrino\[wasmer\]'"):
        load_engine("wasmer")


def test_limits_validate() -> None:
    with pytest.raises(ValueError):
        Limits(deadline_s=0)
    with pytest.raises(ValueError):
        Limits(memory_bytes=100)
