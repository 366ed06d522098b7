"""The fused ABI 2 call (``abi.fused_abi2_wat``): one transition into the store per call.

On wasmtime's fast path an ABI 2 session attaches a helper module that runs ``cabi_realloc``,
the request copy, ``execute``, the bounds checks, the result copy and post-return in one call.
It must be indistinguishable from the plain path (three calls from the host) in everything but
speed: every answer, every error type and message, every limit. The plain path here is the real
fallback a session takes when the helper cannot be attached.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import guests
from vultrino import _msgpack
from vultrino.errors import EngineError, ModuleError, PluginABIError, PluginTrapError
from vultrino.runtime import (
    Limits,
    PluginModule,
    WasmRuntime,
    available_engines,
    load_engine,
)
from vultrino.runtime.abi import FUSED_BYTES, FUSED_DATA, REALLOC, fused_abi2_wat
from vultrino.runtime.engine import Engine
from vultrino.runtime.wasmtime import _engine as wasmtime_adapter

pytestmark = pytest.mark.skipif(
    "wasmtime" not in available_engines(), reason="the fused call is wasmtime's"
)

SMALL = Limits(deadline_s=0.5, memory_bytes=16 * 1024 * 1024, output_bytes=256 * 1024)
POST = "cabi_post_vultrino:plugin/handler@1.0.0#execute"


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    eng = load_engine("wasmtime")
    assert eng.fastpath is True  # type: ignore[attr-defined]
    yield eng
    eng.close()


Open = Callable[..., PluginModule]


@pytest.fixture
def both(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """``both(wasm, limits)`` -> (fused module, plain module) of the same guest; the plain one's
    instances are refused a helper, whenever they are made."""
    opened: list[tuple[WasmRuntime, PluginModule]] = []
    plain_limits: list[Limits] = []
    attach = wasmtime_adapter._FastInstance.attach

    def refusing(self: Any, wat: str, imports: Any, reroute: Any = ()) -> Any:
        if any(self._limits is limits for limits in plain_limits):
            raise ModuleError("no helper for the plain module of this test")
        return attach(self, wat, imports, reroute)

    monkeypatch.setattr(wasmtime_adapter._FastInstance, "attach", refusing)

    def _open(wasm: bytes, limits: Limits) -> PluginModule:
        rt = WasmRuntime(engine, limits=limits)
        module = rt.load(wasm, plugin="guest")
        opened.append((rt, module))
        return module

    def _both(wasm: bytes, limits: Limits = SMALL) -> tuple[PluginModule, PluginModule]:
        plain = dataclasses.replace(limits)  # equal, but its own object
        plain_limits.append(plain)
        return _open(wasm, limits), _open(wasm, plain)

    yield _both
    for rt, module in opened:
        module.close()
        rt.close()


def _req(action: str, data: Any, credential: Any = None) -> dict[str, Any]:
    return {"action": action, "params": {"data": data}, "credential": credential}


def _sessions(module: PluginModule) -> list[Any]:
    return list(module._idle)


def _outcome(module: PluginModule, request: dict[str, Any]) -> tuple[str, Any]:
    try:
        return ("ok", module.execute(request))
    except EngineError as exc:
        return (type(exc).__name__, str(exc))


def test_an_abi2_session_is_fused_on_the_fast_path_only(engine: Engine) -> None:
    with WasmRuntime(engine, limits=SMALL) as rt:
        module = rt.load(guests.echo(), plugin="guest")
        module.execute(_req("echo", "x"))
        assert [s.fused for s in _sessions(module)] == [True]
        module.close()
    public = wasmtime_adapter.WasmtimeEngine(fastpath=False)
    try:
        with WasmRuntime(public, limits=SMALL) as rt:
            module = rt.load(guests.echo(), plugin="guest")
            module.execute(_req("echo", "x"))
            assert [s.fused for s in _sessions(module)] == [False]
            module.close()
    finally:
        public.close()


def test_a_helper_that_cannot_attach_leaves_the_plain_path(both: Callable[..., Any]) -> None:
    fused, plain = both(guests.echo())
    assert plain.execute(_req("echo", "x")) == {"ok": _req("echo", "x")}
    assert [s.fused for s in _sessions(plain)] == [False]
    assert fused.execute(_req("echo", "x")) == {"ok": _req("echo", "x")}
    assert [s.fused for s in _sessions(fused)] == [True]


@pytest.mark.parametrize("trap", [False, True], ids=["answers", "traps"])
def test_buffered_log_lines_are_those_of_the_host_calls(
    both: Callable[..., Any], caplog: pytest.LogCaptureFixture, trap: bool
) -> None:
    # The fused path keeps log lines in the helper's memory (no call into Python per line);
    # the plain path calls the host for each. The log sees the same lines in the same order.
    caplog.set_level(logging.DEBUG, logger="vultrino.plugin.guest")
    fused, plain = both(guests.log_interleaved(trap=trap))
    seen = []
    for module in (plain, fused):
        caplog.clear()
        outcome = _outcome(module, _req("echo", "x"))
        seen.append((outcome, [(r.levelname, r.getMessage()) for r in caplog.records]))
    assert seen[0] == seen[1]
    assert len(seen[0][1]) == 6
    if not trap:
        assert [s.buffered_log for s in _sessions(fused)] == [True]
        assert [s.buffered_log for s in _sessions(plain)] == [False]


def _sized(total: int) -> dict[str, Any]:
    """A request whose MessagePack encoding is exactly ``total`` bytes."""
    base = len(_msgpack.packb(_req("echo", "")))
    for pad in range(total - base, max(total - base - 8, -1), -1):
        request = _req("echo", "y" * pad)
        if len(_msgpack.packb(request)) == total:
            return request
    raise AssertionError(f"no request of {total} bytes")


STAGED = FUSED_BYTES - FUSED_DATA  # the longest request or result the staging memory holds
ANSWER_HEAD = len(_msgpack.packb({"ok": None})) - 1  # what {"ok": ...} adds to the request


@pytest.mark.parametrize("post", [True, False], ids=["post-return", "no-post-return"])
@pytest.mark.parametrize(
    "size",
    [
        60,
        1000,
        STAGED - ANSWER_HEAD - 1,
        STAGED - ANSWER_HEAD,
        STAGED - ANSWER_HEAD + 1,
        STAGED,
        STAGED + 1,
        200_000,
    ],
)
def test_answers_are_the_same_on_both_paths_at_every_size(
    both: Callable[..., Any], size: int, post: bool
) -> None:
    """Around the staging memory's edges: a result that just fits, one byte over (left to the
    plain path), a request that just fits, one byte over, and both far over."""
    fused, plain = both(guests.echo(post=post))
    request = _sized(size)
    for _ in range(2):  # and the instance is reused after each
        assert _outcome(fused, request) == _outcome(plain, request) == ("ok", {"ok": request})


HOSTILE = [
    "loop",
    "memory",
    "stack",
    "trap",
    "divide",
    "outside",
    "retptr",
    "garbage",
    "number",
    "code",
    "huge",
    "quit",
    "panic",
    "fail",
    "write",
]


@pytest.mark.parametrize("action", HOSTILE)
def test_every_failure_is_the_same_on_both_paths(both: Callable[..., Any], action: str) -> None:
    fused, plain = both(guests.hostile())
    got = _outcome(fused, _req(action, None))
    assert got == _outcome(plain, _req(action, None))
    if action not in ("fail", "write"):
        assert got[0] != "ok"
    for module in (fused, plain):  # and each answers the next call
        assert module.execute(_req("echo", 1)) == {"ok": _req("echo", 1)}


def test_a_bad_realloc_pointer_is_the_same_error_on_both_paths(both: Callable[..., Any]) -> None:
    fused, plain = both(guests.bad_realloc())
    got = _outcome(fused, _req("echo", "x"))
    assert got == _outcome(plain, _req("echo", "x"))
    assert got[0] == "PluginABIError" and "cabi_realloc returned 0xfffffff8" in got[1]


@pytest.mark.parametrize("cap", [100, 1000])
def test_an_output_cap_below_the_staging_memory_holds_on_both_paths(
    both: Callable[..., Any], cap: int
) -> None:
    fused, plain = both(guests.echo(), Limits(deadline_s=0.5, output_bytes=cap))
    for size in (cap - ANSWER_HEAD - 1, cap - ANSWER_HEAD, cap - ANSWER_HEAD + 1, cap + 50):
        request = _sized(size)
        got = _outcome(fused, request)
        assert got == _outcome(plain, request)
        if size + ANSWER_HEAD <= cap:
            assert got == ("ok", {"ok": request})
        else:
            assert got[0] == "PluginABIError" and f"over the {cap}-byte output cap" in got[1]


def test_a_trapping_post_return_is_the_same_on_both_paths(both: Callable[..., Any]) -> None:
    trapping_post = f'(func (export "{POST}") (param i32) unreachable)'
    fused, plain = both(guests.abi2(guests.ECHO, extra=trapping_post, post=False))
    got = _outcome(fused, _req("echo", "x"))
    assert got == _outcome(plain, _req("echo", "x"))
    assert got[0] == "PluginTrapError" and "unreachable" in got[1]


def test_a_realloc_that_grows_memory_is_seen_by_the_bounds_check(
    both: Callable[..., Any],
) -> None:
    """The pointer is checked against the memory as it is after cabi_realloc ran."""
    text = (
        guests._template("abi2.wat.in")
        .replace(
            "(local.set $p (global.get $heap))",
            "(local.set $p (i32.mul (memory.grow (i32.const 1)) (i32.const 65536)))",
        )
        .replace(";;IMPORTS;;", "")
        .replace(";;EXTRA;;", "")
        .replace(";;BODY;;", guests.ECHO)
        .replace(";;POST;;", "")
    )
    fused, plain = both(guests.wat2wasm(text))
    request = _req("echo", "z" * 3000)
    assert _outcome(fused, request) == _outcome(plain, request) == ("ok", {"ok": request})


def test_the_helper_is_one_per_instance_and_goes_with_it(engine: Engine) -> None:
    with WasmRuntime(engine, limits=SMALL) as rt:
        module = rt.load(guests.echo(), plugin="guest")
        module.execute(_req("echo", "x"))
        (session,) = _sessions(module)
        instance = session.instance
        with pytest.raises(ModuleError, match="already has a helper"):
            instance.attach(fused_abi2_wat(True), [REALLOC])
        module.close()
        with pytest.raises(ModuleError, match="closed"):
            instance.attach(fused_abi2_wat(True), [REALLOC])


def test_the_guest_alone_still_may_not_bring_a_second_memory(engine: Engine) -> None:
    """The store lets a second instance and memory in only after the guest is instantiated."""
    native = engine.compile(
        guests.wat2wasm('(module (memory (export "memory") 1) (memory 1))'), SMALL
    )
    with pytest.raises(ModuleError, match="cannot be instantiated"):
        engine.instantiate(native, [], SMALL)


def test_a_failed_fused_call_discards_the_instance(both: Callable[..., Any]) -> None:
    fused, _ = both(guests.counter())
    assert [fused.execute(_req("a", None))["ok"] for _ in range(3)] == [1, 2, 3]
    with pytest.raises(PluginTrapError):
        fused.execute(_req("trap", None))
    assert fused.execute(_req("a", None)) == {"ok": 1}


def test_a_missing_export_is_a_module_error(engine: Engine) -> None:
    wat = f"""(module (memory (export "memory") 1)
      (func (export "{REALLOC}") (param i32 i32 i32 i32) (result i32) (i32.const 0)))"""
    instance = engine.instantiate(engine.compile(guests.wat2wasm(wat), SMALL), [], SMALL)
    try:
        with pytest.raises(ModuleError, match=f"does not export `{POST}`"):
            instance.attach(fused_abi2_wat(True), [REALLOC, POST])  # type: ignore[attr-defined]
    finally:
        instance.close()


def test_an_abi_error_message_names_the_guest_memory_not_the_staging(
    both: Callable[..., Any],
) -> None:
    fused, _ = both(guests.hostile())
    with pytest.raises(PluginABIError, match=r"outside the guest's memory \(\d+ bytes\)"):
        fused.execute(_req("outside", None))
