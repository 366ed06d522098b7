"""How a thread-affine engine (wasmer) shares a plugin's instances between calling threads.

wasmer-python's objects only work on the thread that made them, and the per-plugin cap of
:data:`MAX_INSTANCES` must hold anyway. The contract (docs/engines.md):

* a thread that owns an instance runs its calls inline, on that instance (no thread hop: a
  hop to a worker on every call more than doubled a warm call);
* at most ``MAX_INSTANCES - 1`` calling threads own an instance; every other thread's calls
  run on one worker thread that owns the last instance, so the cap holds;
* an instance is created, called and closed on one thread: an owner thread that ends closes
  its instance on its way out and frees its owner place for another thread;
* closing the module from another thread, threads that end and garbage collection never crash
  the process.

These run on the real wasmer engine (``just test-wasmer``) and skip where it is not installed.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("wasmer")

from tests import guests  # after the importorskip
from vultrino.errors import EngineError, PluginTrapError
from vultrino.runtime import Limits, WasmRuntime, load_engine
from vultrino.runtime.engine import HostFunc
from vultrino.runtime.module import MAX_INSTANCES

LIMITS = Limits(deadline_s=10, memory_bytes=8 * 1024 * 1024)
ROOT = Path(__file__).resolve().parents[2]


class _ThreadRecordingEngine:
    """The real wasmer engine, recording on which thread each instance is made and closed."""

    def __init__(self) -> None:
        self._engine = load_engine("wasmer")
        self.name = self._engine.name
        self.version = self._engine.version
        self.capabilities = self._engine.capabilities
        self.lock = threading.Lock()
        self.alive = 0
        self.peak = 0
        self.made: list[int] = []  # thread idents, one per instantiation
        self.closed_elsewhere: list[tuple[int, int]] = []  # (made on, closed on)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._engine, attr)

    def instantiate(self, native: object, host: Sequence[HostFunc], limits: Limits) -> Any:
        instance = self._engine.instantiate(native, host, limits)
        home = threading.get_ident()
        with self.lock:
            self.made.append(home)
            self.alive += 1
            self.peak = max(self.peak, self.alive)
        close = instance.close
        done = [False]

        def recording_close() -> None:
            with self.lock:
                if not done[0]:
                    done[0] = True
                    self.alive -= 1
                    if threading.get_ident() != home:
                        self.closed_elsewhere.append((home, threading.get_ident()))
            close()

        instance.close = recording_close
        return instance


def _join_workers(plugin: str) -> None:
    """Wait for a closed module's worker thread to end (``close`` does not wait for it)."""
    for t in threading.enumerate():
        if t.name.startswith(f"vultrino-{plugin}_"):
            t.join(30)


def _request(data: str, action: str = "echo") -> dict[str, Any]:
    return {"action": action, "params": {"data": data}, "credential": None}


def test_an_owner_thread_calls_its_own_instance_inline() -> None:
    """The loading thread keeps the instance that proved the module starts and calls it on
    this thread: one instantiation in all, on this thread (the worker hop made one on a
    worker thread and ran every call there)."""
    engine = _ThreadRecordingEngine()
    with WasmRuntime(engine, limits=LIMITS) as rt:  # type: ignore[arg-type]
        module = rt.load(guests.echo(), plugin="inline")
        for i in range(50):
            assert module.execute(_request(f"call {i}")) == {"ok": _request(f"call {i}")}
        assert engine.made == [threading.get_ident()]
        # a thread that did not load the module becomes an owner too, on its own thread
        seen: dict[str, Any] = {}

        def other() -> None:
            seen["answer"] = module.execute(_request("other"))
            seen["ident"] = threading.get_ident()

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert seen["answer"] == {"ok": _request("other")}
        assert engine.made == [threading.get_ident(), seen["ident"]]
        module.close()
    assert engine.closed_elsewhere == []
    assert engine.alive == 0


def test_more_threads_than_instances_keep_the_cap_and_their_own_answers() -> None:
    """Twelve threads calling at once, each with its own data, many times: every answer is
    its own request, never more than MAX_INSTANCES instances exist, and every instance is
    closed on the thread that made it."""
    engine = _ThreadRecordingEngine()
    threads_n, calls = 12, 40
    barrier = threading.Barrier(threads_n)
    finished = threading.Barrier(
        threads_n
    )  # no thread ends (freeing its place) before all are done
    errors: list[BaseException] = []
    mixed: list[tuple[str, Any]] = []

    with WasmRuntime(engine, limits=LIMITS) as rt:  # type: ignore[arg-type]
        module = rt.load(guests.echo(), plugin="busy")

        def call(n: int) -> None:
            try:
                barrier.wait(30)
                for i in range(calls):
                    data = f"thread {n} call {i} " + "x" * (n * 7)
                    answer = module.execute(_request(data))
                    if answer != {"ok": _request(data)}:
                        mixed.append((data, answer))
                finished.wait(60)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(n,)) for n in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        module.close()
        _join_workers("busy")
    assert errors == []
    assert mixed == []
    assert engine.peak <= MAX_INSTANCES, f"{engine.peak} instances alive at once"
    # owners (the loading thread and MAX_INSTANCES - 2 callers) and the worker made them
    assert len(set(engine.made)) <= MAX_INSTANCES
    assert engine.closed_elsewhere == []
    assert engine.alive == 0


def test_owner_threads_that_end_close_their_instance_and_free_their_place() -> None:
    """Waves of short-lived threads: each wave's owners close their instance as their thread
    ends (on that thread), so the next wave's threads become owners in their turn and the
    number of live instances never passes the cap."""
    engine = _ThreadRecordingEngine()
    with WasmRuntime(engine, limits=LIMITS) as rt:  # type: ignore[arg-type]
        module = rt.load(guests.echo(), plugin="waves")
        for wave in range(4):
            idents: list[int] = []
            answers: list[Any] = []
            barrier = threading.Barrier(MAX_INSTANCES + 2)

            def call(
                n: int,
                wave: int = wave,
                barrier: threading.Barrier = barrier,
                idents: list[int] = idents,
                answers: list[Any] = answers,
            ) -> None:
                barrier.wait(30)
                idents.append(threading.get_ident())
                answers.append(module.execute(_request(f"wave {wave} thread {n}")))

            threads = [threading.Thread(target=call, args=(n,)) for n in range(MAX_INSTANCES + 2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert sorted(a["ok"]["params"]["data"] for a in answers) == sorted(
                f"wave {wave} thread {n}" for n in range(MAX_INSTANCES + 2)
            )
            # this wave's threads made instances of their own (the places were freed)
            assert set(idents) & set(engine.made), f"wave {wave} ran no call inline"
            gc.collect()
            with engine.lock:
                # the loading thread's instance and at most the worker's outlive the wave
                assert engine.alive <= 2, engine.alive
            assert engine.peak <= MAX_INSTANCES
        module.close()
    assert engine.closed_elsewhere == []


def test_a_module_closed_from_another_thread_refuses_owner_calls_cleanly() -> None:
    """After ``close`` on another thread, an owner's next call is a clear EngineError and its
    instance is closed there, on its own thread; so is an overflow caller's."""
    engine = _ThreadRecordingEngine()
    ready = threading.Event()
    go = threading.Event()
    seen: dict[str, Any] = {}
    with WasmRuntime(engine, limits=LIMITS) as rt:  # type: ignore[arg-type]
        module = rt.load(guests.echo(), plugin="closing")

        def owner() -> None:
            seen["first"] = module.execute(_request("before"))
            ready.set()
            go.wait(30)
            try:
                module.execute(_request("after"))
            except EngineError as exc:
                seen["error"] = exc

        t = threading.Thread(target=owner)
        t.start()
        assert ready.wait(30)
        module.close()  # from this thread, while the owner thread still holds its instance
        go.set()
        t.join(30)
    assert seen["first"] == {"ok": _request("before")}
    assert "closed" in str(seen["error"]) and seen["error"].plugin == "closing"
    assert engine.closed_elsewhere == []
    assert engine.alive == 0


def test_an_error_on_an_overflow_call_reaches_its_caller_and_the_worker_recovers() -> None:
    """With every owner place taken, a trap on the worker thread reaches the calling thread
    as PluginTrapError, and the worker's next call gets a fresh instance; the calling thread
    makes no instance of its own."""
    engine = _ThreadRecordingEngine()
    hold = threading.Event()
    holders_n = MAX_INSTANCES - 2  # the loading thread is the first of MAX_INSTANCES - 1 owners
    holders_in = threading.Barrier(holders_n + 1)
    result: dict[str, Any] = {}
    with WasmRuntime(engine, limits=LIMITS) as rt:  # type: ignore[arg-type]
        module = rt.load(guests.hostile(), plugin="hostile")

        def hold_an_owner_place() -> None:
            module.execute(_request("hello"))
            holders_in.wait(30)
            hold.wait(30)

        holders = [threading.Thread(target=hold_an_owner_place) for _ in range(holders_n)]
        for t in holders:
            t.start()
        holders_in.wait(30)
        made_before = len(engine.made)

        def overflow() -> None:
            result["ident"] = threading.get_ident()
            try:
                module.execute(_request("x", action="trap"))
            except PluginTrapError as exc:
                result["trap"] = exc
            result["next"] = module.execute(_request("again"))

        t = threading.Thread(target=overflow)
        t.start()
        t.join(60)
        hold.set()
        for h in holders:
            h.join(30)
        module.close()
        _join_workers("hostile")
    assert "plugin 'hostile'" in str(result["trap"])
    assert result["next"] == {"ok": _request("again")}
    new = engine.made[made_before:]
    assert len(new) == 2  # the worker's first (which trapped) and its fresh one
    assert result["ident"] not in new
    assert len(set(new)) == 1  # both on the worker thread
    assert engine.closed_elsewhere == []
    assert engine.peak <= MAX_INSTANCES


_CHURN = textwrap.dedent(
    """
    import gc, sys, threading
    sys.path.insert(0, {root!r})
    from tests import guests
    from vultrino.errors import PluginTrapError
    from vultrino.runtime import Limits, WasmRuntime

    rt = WasmRuntime("wasmer", limits=Limits(deadline_s=10, memory_bytes=8 * 1024 * 1024))
    module = rt.load(guests.hostile(), plugin="churn")

    def req(action, data="x"):
        return {{"action": action, "params": {{"data": data}}, "credential": None}}

    def call(n):
        assert module.execute(req("echo", str(n)))["ok"]["params"]["data"] == str(n)
        try:
            module.execute(req("trap"))  # an error with a traceback, on an owner or the worker
        except PluginTrapError:
            pass

    for wave in range(3):
        threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        gc.collect()

    # an owner thread still alive while the module is closed and dropped from other threads
    parked = threading.Event()
    release = threading.Event()
    def park():
        module.execute(req("echo"))
        parked.set()
        release.wait()
    keeper = threading.Thread(target=park)
    keeper.start()
    parked.wait()
    closer = threading.Thread(target=module.close)
    closer.start()
    closer.join()
    del module
    gc.collect()
    release.set()
    keeper.join()
    gc.collect()
    rt.close()
    print("done")
    """
)


def test_threads_ending_close_and_gc_do_not_crash_the_process(tmp_path: Path) -> None:
    """In a fresh process: waves of threads that call (including traps) and end, then the
    module closed from a third thread and garbage-collected while an owner thread is alive.
    The process exits 0 with no panic from wasmer-python's thread checks."""
    script = tmp_path / "churn.py"
    script.write_text(_CHURN.format(root=str(ROOT)), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    r = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.strip() == "done"
    assert "panicked" not in r.stderr and "unsendable" not in r.stderr, r.stderr[-4000:]
    assert "Exception ignored" not in r.stderr, r.stderr[-4000:]


def test_a_host_function_calling_back_into_the_module_is_served_by_the_worker() -> None:
    """A log sink that calls the same plugin while its call is inside the guest: the owner's
    instance is busy, so the inner call runs on the worker thread (no second instance on the
    owner's thread, no deadlock), and both answers are right."""
    engine = _ThreadRecordingEngine()
    inner: list[Any] = []
    with WasmRuntime(engine, limits=LIMITS) as rt:  # type: ignore[arg-type]

        def log(level: str, text: str) -> None:
            if not inner:
                inner.append(None)
                inner.append(module.execute(_request("inner")))

        module = rt.load(guests.logger(), plugin="reenter", log=log)
        outer = module.execute(_request("outer"))
        module.close()
        _join_workers("reenter")
    assert outer == {"ok": _request("outer")}
    assert inner[1] == {"ok": _request("inner")}
    assert engine.made[0] == threading.get_ident()
    assert len(engine.made) == 2 and engine.made[1] != threading.get_ident()
    assert engine.closed_elsewhere == []
    assert engine.alive == 0
