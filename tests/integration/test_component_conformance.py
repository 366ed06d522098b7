"""The conformance suite for WASI 0.2 components (``vultrino/runtime/wasmtime/_component.py``).

Component guests are tiny WAT components (``tests/component_guests.py``). They run on wasmtime's
component API with the same small limits as the core-module suite; on wasmer a component is
refused with a message that says why. Every hostile guest fails alone: the next call on the
same module succeeds.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from tests import component_guests as guests
from vultrino.errors import (
    EngineError,
    ModuleError,
    PluginABIError,
    PluginTimeoutError,
    PluginTrapError,
)
from vultrino.runtime import Limits, WasmRuntime, available_engines
from vultrino.runtime.abi import is_component
from vultrino.runtime.module import MAX_LOG_LINES_PER_CALL
from vultrino.runtime.wasmtime._component import HOSTCALL_LIST_BYTES, _fast_available

SMALL = Limits(deadline_s=0.5, memory_bytes=16 * 1024 * 1024, output_bytes=256 * 1024)

needs_wasmtime = pytest.mark.skipif(
    "wasmtime" not in available_engines(), reason="wasmtime is not installed"
)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[WasmRuntime]:
    with WasmRuntime("wasmtime", cache_dir=tmp_path / "cache", limits=SMALL) as rt:
        yield rt


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, level: str, text: str) -> None:
        self.lines.append((level, text))


def test_the_header_tells_components_from_modules() -> None:
    assert is_component(guests.component("echo"))
    assert not is_component(b"\0asm\x01\x00\x00\x00")
    assert not is_component(b"")


def test_the_fast_list_lowering_is_active() -> None:
    assert _fast_available() is True


@needs_wasmtime
def test_echo_round_trips_bytes_and_logs(runtime: WasmRuntime) -> None:
    log = Lines()
    module = runtime.load(guests.component("ok_logs"), plugin="c", log=log)
    assert module.abi == 2
    assert module.execute({"action": "x", "params": {}, "credential": None}) == {"ok": 1}
    assert log.lines == [("info", "hello from a component")]
    echo = runtime.load(guests.component("echo"), plugin="echo")
    request = {"ok": {"text": "é" * 1000, "bytes": bytes(range(256)) * 40}}
    assert echo.execute(request) == request


@needs_wasmtime
def test_inspect_reports_abi_2(runtime: WasmRuntime) -> None:
    info = runtime.inspect(guests.component("echo"))
    assert info.abi == 2


@needs_wasmtime
def test_endless_loop_hits_the_deadline_and_the_next_call_works(runtime: WasmRuntime) -> None:
    module = runtime.load(guests.component("loop_forever"), plugin="loop")
    with pytest.raises(PluginTimeoutError, match=r"plugin 'loop': .*0\.5 s deadline"):
        module.execute({"action": "x"})
    with pytest.raises(PluginTimeoutError):  # a fresh instance, and the deadline again
        module.execute({"action": "x"})


@needs_wasmtime
def test_trap_fails_the_call_only(runtime: WasmRuntime) -> None:
    module = runtime.load(guests.component("trap"), plugin="trapper")
    with pytest.raises(PluginTrapError, match="plugin 'trapper': the guest trapped"):
        module.execute({"action": "x"})
    ok = runtime.load(guests.component("ok_logs"), plugin="ok")
    assert ok.execute({"action": "x"}) == {"ok": 1}


@needs_wasmtime
def test_memory_growth_stops_at_the_cap(runtime: WasmRuntime) -> None:
    module = runtime.load(guests.component("memory_bomb"), plugin="bomb")
    for _ in range(2):
        with pytest.raises(PluginTrapError, match="plugin 'bomb'"):
            module.execute({"action": "x"})


@needs_wasmtime
def test_memory_over_the_cap_at_start_is_a_load_error(runtime: WasmRuntime) -> None:
    wasm = guests.component("ok_logs", initial_pages="300")  # 18.75 MiB > the 16 MiB cap
    with pytest.raises(ModuleError, match=r"plugin 'fat': .*limits\.memory_bytes"):
        runtime.load(wasm, plugin="fat")


@needs_wasmtime
def test_output_over_the_cap_is_an_abi_error(runtime: WasmRuntime) -> None:
    module = runtime.load(guests.component("huge_output"), plugin="big")
    size = SMALL.output_bytes + 1
    with pytest.raises(PluginABIError, match=r"over the 262144-byte output cap"):
        module.execute({"action": "x", "pad": struct.pack("<I", size)})


@needs_wasmtime
def test_output_past_what_wasmtime_copies_is_an_abi_error(tmp_path: Path) -> None:
    wide = Limits(deadline_s=5, memory_bytes=64 * 1024 * 1024, output_bytes=64 * 1024 * 1024)
    with WasmRuntime("wasmtime", limits=wide) as rt:
        module = rt.load(guests.component("huge_output"), plugin="huge")
        size = HOSTCALL_LIST_BYTES + 4096
        with pytest.raises(PluginABIError, match="larger than wasmtime copies"):
            module.execute({"action": "x", "pad": struct.pack("<I", size)})


@needs_wasmtime
def test_a_log_flood_is_capped_per_call(runtime: WasmRuntime) -> None:
    log = Lines()
    module = runtime.load(guests.component("log_flood"), plugin="flood", log=log)
    assert module.execute({"action": "x"}) == {"ok": 1}
    assert len(log.lines) == MAX_LOG_LINES_PER_CALL + 1
    assert log.lines[-1] == ("warn", "4000 more log lines from this call were dropped")
    log.lines.clear()
    assert module.execute({"action": "x"}) == {"ok": 1}  # the budget is per call
    assert len(log.lines) == MAX_LOG_LINES_PER_CALL + 1


@needs_wasmtime
def test_stack_overflow_is_a_trap(runtime: WasmRuntime) -> None:
    module = runtime.load(guests.component("recursion"), plugin="deep")
    with pytest.raises(PluginTrapError, match=r"plugin 'deep': the guest trapped: .*stack"):
        module.execute({"action": "x"})
    with pytest.raises(PluginTrapError):
        module.execute({"action": "x"})


@needs_wasmtime
def test_garbage_and_bad_pointers_are_abi_errors(runtime: WasmRuntime) -> None:
    garbage = runtime.load(guests.component("garbage"), plugin="garbage")
    with pytest.raises(PluginABIError, match="not one MessagePack value"):
        garbage.execute({"action": "x"})
    bad = runtime.load(guests.component("bad_pointer"), plugin="bad")
    with pytest.raises(PluginTrapError, match="plugin 'bad'"):
        bad.execute({"action": "x"})


@needs_wasmtime
def test_stdout_goes_to_the_plugin_log_not_fd_1(
    runtime: WasmRuntime, capfd: pytest.CaptureFixture[str]
) -> None:
    log = Lines()
    module = runtime.load(guests.stdout_writer(), plugin="talker", log=log)
    assert module.execute({"action": "x"}) == {"ok": 1}
    assert ("info", "to stdout") in log.lines
    out, _ = capfd.readouterr()
    assert "to stdout" not in out


@needs_wasmtime
def test_a_foreign_import_is_refused_by_name(runtime: WasmRuntime) -> None:
    with pytest.raises(ModuleError, match=r"import `acme:secrets/vault@1\.0\.0` is not provided"):
        runtime.inspect(guests.foreign_import())
    with pytest.raises(ModuleError, match=r"import `wasi:http/outgoing-handler@0\.2\.0`"):
        runtime.load(guests.foreign_import("wasi:http/outgoing-handler@0.2.0"), plugin="h")


@needs_wasmtime
def test_a_wrong_execute_type_is_refused(runtime: WasmRuntime) -> None:
    with pytest.raises(ModuleError, match=r"`execute` is not `func\(request: list<u8>\)"):
        runtime.inspect(guests.wrong_execute())


@needs_wasmtime
def test_compiled_components_are_cached(tmp_path: Path) -> None:
    wasm = guests.component("ok_logs")
    with WasmRuntime("wasmtime", cache_dir=tmp_path, limits=SMALL) as rt:
        rt.load(wasm, plugin="c").close()
    entries = list(tmp_path.glob("*.vmc"))
    assert len(entries) == 1 and "wasmtime-component" in entries[0].name
    entries[0].write_bytes(entries[0].read_bytes()[:-7] + b"garbage")  # corrupt: rebuilt
    with WasmRuntime("wasmtime", cache_dir=tmp_path, limits=SMALL) as rt:
        assert rt.load(wasm, plugin="c").execute({"action": "x"}) == {"ok": 1}
        assert rt.drop_cache(rt.inspect(wasm).sha256) == 1


def test_wasmer_refuses_components_clearly(tmp_path: Path) -> None:
    if "wasmer" not in available_engines():
        pytest.skip("wasmer is not installed (it runs under Python 3.10)")
    with (
        WasmRuntime("wasmer", limits=SMALL) as rt,
        pytest.raises(ModuleError, match="components run only on the wasmtime engine") as info,
    ):
        rt.load(guests.component("echo"), plugin="c")
    assert isinstance(info.value, EngineError)


@needs_wasmtime
def test_a_failing_log_sink_does_not_print(
    runtime: WasmRuntime, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(level: str, text: str) -> None:
        raise RuntimeError("sink down")

    caplog.set_level(logging.ERROR)
    module = runtime.load(guests.stdout_writer(), plugin="talker", log=broken)
    module.execute({"action": "x"})
    out, _ = capfd.readouterr()
    assert out == ""


@needs_wasmtime
def test_parallel_calls_each_get_their_own_answer(runtime: WasmRuntime) -> None:
    import threading

    module = runtime.load(guests.component("echo"), plugin="echo")
    failures: list[object] = []

    def worker(n: int) -> None:
        for i in range(25):
            request = {"ok": {"thread": n, "i": i, "pad": "x" * (n * 100 + i)}}
            try:
                if module.execute(request) != request:
                    failures.append((n, i))
            except Exception as exc:
                failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


# --- world 1.1.0: execute-text, the bulk data path -------------------------------------------

#: Component-only: skipped on the wasmer leg of the suite (components run on wasmtime only).
wasmtime_leg = pytest.mark.skipif(
    os.environ.get("VULTRINO_TEST_ENGINE", "wasmtime") != "wasmtime",
    reason="components run on wasmtime only",
)

BIG = Limits(deadline_s=5.0, memory_bytes=64 * 1024 * 1024, output_bytes=4 * 1024 * 1024)


def _session_text(module: object) -> bool:
    """Whether the module's next session calls execute-text (what the host chose)."""
    session = module._new_session()  # type: ignore[attr-defined]
    try:
        return bool(session.text)
    finally:
        session.close()


@needs_wasmtime
@wasmtime_leg
def test_a_1_1_component_is_called_through_execute_text(runtime: WasmRuntime) -> None:
    new = runtime.load(guests.text_component("ok"), plugin="new")
    assert new.execute({"action": "x"}) == {"ok": 1}
    assert _session_text(new) is True
    old = runtime.load(guests.component("echo"), plugin="old")
    assert _session_text(old) is False


@needs_wasmtime
@wasmtime_leg
def test_a_1_1_component_without_execute_text_is_refused(runtime: WasmRuntime) -> None:
    wat = guests.component_wat("echo").replace(
        "vultrino:plugin/handler@1.0.0", "vultrino:plugin/handler@1.1.0"
    )
    with pytest.raises(ModuleError, match=r"handler@1\.1\.0` does not export `execute-text`"):
        runtime.load(bytes(wasmtime.wat2wasm(wat)), plugin="half")


@needs_wasmtime
@wasmtime_leg
@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00",
        bytes(range(256)),
        (bytes(range(256)) * 16)[:4095],
        bytes(range(256)) * 256,  # 65536, every value
        b"random",
        b"mib+1",
    ],
    ids=["0", "1", "all-256", "4095", "65536", "random-300k", "1MiB+1"],
)
def test_execute_text_is_byte_exact(tmp_path: Path, payload: bytes) -> None:
    if payload == b"random":
        payload = os.urandom(300_000)
    elif payload == b"mib+1":
        payload = os.urandom((1 << 20) + 1)
    with WasmRuntime("wasmtime", cache_dir=tmp_path / "c", limits=BIG) as rt:
        echo = rt.load(guests.text_component("echo"), plugin="echo")
        request = {"ok": payload}  # the echo guest answers the request itself
        assert echo.execute(request) == request
        # old and new shapes answer alike
        old = rt.load(guests.component("echo"), plugin="old")
        if len(payload) <= 65536:
            assert old.execute(request) == request


@needs_wasmtime
@wasmtime_leg
def test_execute_text_passes_what_list_u8_cannot(tmp_path: Path) -> None:
    """wasmtime refuses a list<u8> past HOSTCALL_LIST_BYTES; a string goes through."""
    payload = os.urandom(HOSTCALL_LIST_BYTES + 1000)
    with WasmRuntime("wasmtime", cache_dir=tmp_path / "c", limits=BIG) as rt:
        echo = rt.load(guests.text_component("echo"), plugin="echo")
        assert echo.execute({"ok": payload}) == {"ok": payload}


@needs_wasmtime
@wasmtime_leg
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("bad_pointer", "execute-text returned a string the host cannot read"),
        ("huge_len", "execute-text returned a string the host cannot read"),
        ("not_utf8", "execute-text returned a string the host cannot read"),
        ("wide_char", "execute-text returned a character that is not a byte"),
    ],
)
def test_a_hostile_execute_text_fails_the_call_only(
    runtime: WasmRuntime, body: str, message: str
) -> None:
    bad = runtime.load(guests.text_component(body), plugin=body)
    with pytest.raises(PluginABIError, match=message):
        bad.execute({"action": "x"})
    with pytest.raises(PluginABIError, match=message):  # the host is fine, and so is the plugin
        bad.execute({"action": "x"})
    assert runtime.load(guests.text_component("ok"), plugin="fine").execute({}) == {"ok": 1}


@needs_wasmtime
@wasmtime_leg
def test_execute_text_output_over_the_cap_is_an_abi_error(tmp_path: Path) -> None:
    limits = Limits(deadline_s=5.0, memory_bytes=16 * 1024 * 1024, output_bytes=1024)
    with WasmRuntime("wasmtime", cache_dir=tmp_path / "c", limits=limits) as rt:
        echo = rt.load(guests.text_component("echo"), plugin="echo")
        with pytest.raises(PluginABIError, match="over the 1024-byte output cap"):
            echo.execute({"ok": b"\xff" * 2000})
        assert echo.execute({"ok": b"\xff" * 100}) == {"ok": b"\xff" * 100}
