"""Every wait a component can ask for ends by its call's deadline.

wasmtime's WASI 0.2 clocks make pollables that ``wasi:io/poll`` waits on inside the host, where
the epoch deadline cannot interrupt it: before the fix, a 10 s ``subscribe-duration`` held a
1 s-deadline call for 10 s and a wait for a far-off instant never returned. Vultrino defines
the guest's ``wasi:clocks/monotonic-clock`` itself and cuts each wait at the deadline
(``vultrino/runtime/wasmtime/_component.py``, ``_Clock``). Each hostile guest here must fail with
``PluginTimeoutError`` well before its wait would end, and its instance must not be reused.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import component_guests as guests
from vultrino.errors import PluginBusyError, PluginTimeoutError
from vultrino.plugins.install import _componentize, installer
from vultrino.runtime import Limits, WasmRuntime, available_engines
from vultrino.runtime.module import MAX_INSTANCES, MAX_WAITING, PluginModule

DEADLINE = 1.0
#: Generous: the waits asked for are 10 s or more, so this still proves they were cut.
SLACK = 5.0
REQUEST: dict[str, Any] = {"action": "x", "params": {}, "credential": None}
SLEEPER = Path(__file__).resolve().parents[1] / "fixtures" / "python_sleeper"

pytestmark = pytest.mark.skipif(
    "wasmtime" not in available_engines(), reason="wasmtime is not installed"
)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[WasmRuntime]:
    limits = Limits(deadline_s=DEADLINE)
    with WasmRuntime("wasmtime", cache_dir=tmp_path / "cache", limits=limits) as rt:
        yield rt


def _within(seconds: float, fn: Callable[[], Any]) -> tuple[float, BaseException | None]:
    """Run ``fn`` on a daemon thread; fail if it has not returned after ``seconds``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    start = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call was still waiting after {seconds} s"
    return time.monotonic() - start, outcome[0]


def _times_out(module: PluginModule, request: dict[str, Any]) -> float:
    before = list(module._idle)
    elapsed, error = _within(DEADLINE + SLACK, lambda: module.execute(request))
    assert isinstance(error, PluginTimeoutError), repr(error)
    assert "1 s deadline" in str(error)
    # the instance that waited is closed, not back in the pool
    assert before and all(getattr(session, "closed", False) for session in before)
    assert not set(map(id, before)) & set(map(id, module._idle))
    return elapsed


@pytest.mark.parametrize(
    "body", ["block_10s", "poll_10s", "instant_10s", "instant_forever", "sleep_loop"]
)
def test_a_component_wait_ends_by_the_deadline(runtime: WasmRuntime, body: str) -> None:
    module = runtime.load(guests.waiter(body), plugin="waiter")
    elapsed = _times_out(module, REQUEST)
    assert DEADLINE * 0.9 <= elapsed < DEADLINE + SLACK
    # the plugin works for the next call: a fresh instance, the same deadline
    with pytest.raises(PluginTimeoutError):
        module.execute(REQUEST)


def test_short_waits_and_clock_reads_work_as_before(runtime: WasmRuntime) -> None:
    for body in ("nap", "clock_reads"):
        module = runtime.load(guests.waiter(body), plugin="waiter")
        for _ in range(3):
            start = time.monotonic()
            assert module.execute(REQUEST) == {"ok": 1}
            assert time.monotonic() - start < DEADLINE + SLACK


def _have_componentize() -> bool:
    try:
        _componentize.executable()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def sleeper_wasm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if not _have_componentize():
        pytest.skip("componentize-py is not installed: the Python sleeper cannot be built")
    base = tmp_path_factory.mktemp("sleeper")
    source = base / "python_sleeper"
    shutil.copytree(SLEEPER, source)
    with WasmRuntime("wasmtime", cache_dir=base / "cache") as rt:
        result = installer.install(
            str(source), plugins_dir=base / "plugins", runtime=rt, build=True
        )
    return (result.path / "python_sleeper.wasm").read_bytes()


@pytest.mark.slow
def test_a_python_plugin_sleeping_30_s_times_out_at_its_1_s_deadline(
    runtime: WasmRuntime, sleeper_wasm: bytes
) -> None:
    module = runtime.load(sleeper_wasm, plugin="python-sleeper")

    def sleep(seconds: float) -> dict[str, Any]:
        return {"action": "sleep", "params": {"seconds": seconds}, "credential": None}

    slept = module.execute(sleep(0.05))["ok"]
    assert 0.05 <= slept < DEADLINE + SLACK
    elapsed = _times_out(module, sleep(30))
    assert elapsed < DEADLINE + SLACK
    assert module.execute(sleep(0.01))["ok"] >= 0.01


def test_calls_queueing_for_a_busy_plugin_are_bounded(runtime: WasmRuntime) -> None:
    """More calls at once than a plugin has instances and waiting places, all of which sleep:
    MAX_INSTANCES run, at most MAX_WAITING wait (each at most its deadline), the rest are
    refused at once; no call outlives two deadlines."""
    module = runtime.load(guests.waiter("block_10s"), plugin="sleepy")
    calls = MAX_INSTANCES + MAX_WAITING + 4
    barrier = threading.Barrier(calls)
    outcomes: list[BaseException | None] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        try:
            module.execute(REQUEST)
        except BaseException as exc:
            with lock:
                outcomes.append(exc)
        else:
            with lock:
                outcomes.append(None)

    threads = [threading.Thread(target=call, daemon=True) for _ in range(calls)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * DEADLINE + SLACK)
    assert not any(thread.is_alive() for thread in threads)
    assert time.monotonic() - start < 2 * DEADLINE + SLACK
    assert all(isinstance(o, (PluginTimeoutError, PluginBusyError)) for o in outcomes), outcomes
    refused = [o for o in outcomes if isinstance(o, PluginBusyError)]
    assert len(refused) >= calls - MAX_INSTANCES - MAX_WAITING
    assert any(f"{MAX_WAITING} more calls are waiting" in str(o) for o in refused)
    assert all("plugin 'sleepy': busy:" in str(o) for o in refused)
    # the plugin serves the next call as before
    with pytest.raises(PluginTimeoutError):
        module.execute(REQUEST)
    nap = runtime.load(guests.waiter("nap"), plugin="nap")
    assert nap.execute(REQUEST) == {"ok": 1}
