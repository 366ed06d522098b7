"""``WasmRuntime`` loads plugin modules; ``PluginModule`` runs their calls.

The runtime owns one engine and the compiled-module cache. ``load`` validates the module's
ABI and instantiates it once, so a bad module fails at load, not at first call.

A ``PluginModule`` keeps a small pool of instances. A call takes an idle instance (or makes one,
up to :data:`MAX_INSTANCES`; past that it waits, at most its deadline and behind at most
:data:`MAX_WAITING` other calls, else ``PluginBusyError``), runs, and puts it back. On a
thread-affine engine (wasmer), whose instances only work on the thread that made them, up to
``MAX_INSTANCES - 1`` calling threads own an instance and run their calls inline; calls from
any other thread run on one worker thread that owns the last instance, so the cap holds there
too. An instance that saw
any error — trap, timeout, memory cap, ABI violation — is closed and never reused: the next call
gets a fresh instance, so one bad call cannot poison the next. A discarded instance is freed
at once: the frames that raise a call's error drop their references to it and to the session,
because an error kept in a local of a frame on its own traceback makes a reference cycle that
only Python's cyclic collector frees (on wasmer it held each failed instance's memory until
then: 32 failing calls at once peaked at 3.6 GiB). The pool makes ``execute`` safe
to call from several threads; wasmtime releases the GIL while guest code runs, so calls on
different instances run in parallel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, MutableSequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from vultrino.errors import (
    EngineError,
    ModuleError,
    ParameterError,
    PluginBusyError,
    PluginMemoryError,
    PluginTrapError,
)
from vultrino.runtime import _signatures, abi
from vultrino.runtime._engines import DEFAULT_ENGINE, load_engine
from vultrino.runtime._keys import KeyRing
from vultrino.runtime._logtext import escape_control
from vultrino.runtime.cache import ModuleCache
from vultrino.runtime.engine import (
    MIB,
    WASM_PAGE,
    ComponentEngine,
    EngineCapabilities,
    GuestExit,
    Limits,
    ModuleShape,
)
from vultrino.runtime.engine import Engine as EngineAdapter
from vultrino.runtime.wit import HTTP, KEYS_MODULES, REALLOC, WIT_FILE

__all__ = ["MAX_INSTANCES", "MAX_WAITING", "PluginModule", "WasmRuntime"]

#: Instances one module keeps at most (each may use up to ``Limits.memory_bytes``).
MAX_INSTANCES: Final = 4
#: Calls that may wait at once for an instance of one module; the next is refused at once
#: (``PluginBusyError``), so a plugin whose calls are slow holds at most
#: ``MAX_INSTANCES + MAX_WAITING`` of its callers' threads.
MAX_WAITING: Final = 4 * MAX_INSTANCES
#: One log message is cut to this many bytes.
MAX_LOG_MESSAGE: Final = 4096
#: At most this many log lines per call reach the log; the rest are counted and dropped.
MAX_LOG_LINES_PER_CALL: Final = 1000

LogFunc = Callable[[str, str], None]
#: Where one call's log lines are kept for its caller (``execute(..., capture=...)``): a list
#: or a bounded deque of ``(level, text)``, appended to as the guest logs.
Capture = MutableSequence[tuple[str, str]]
#: Whether a log line of a level would be written anywhere (``level -> bool``).
LogEnabled = Callable[[str], bool]

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


_TRAPPED: Final = "the guest trapped: "


def _size(n: int) -> str:
    if n % MIB == 0:
        return f"{n // MIB} MiB"
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n} bytes"


class _PluginLog:
    """Where a plugin's log lines go: sanitised, capped per call, then ``log(level, text)``.

    Control characters are escaped so a plugin cannot forge log lines or drive a terminal.
    Without a ``log`` callable, lines go to the ``vultrino.plugin.<name>`` logger — never to
    stdout, which is the MCP channel in stdio mode. ``enabled(level)`` says whether a line of
    that level would be written anywhere (for a ``log`` callable, its owner's answer; without
    one, the logger's): a line nobody would see is counted against the cap and not decoded,
    escaped or scrubbed (:meth:`wants`).
    """

    def __init__(self, plugin: str, log: LogFunc | None, enabled: LogEnabled | None = None) -> None:
        self.plugin = plugin
        self._log = log
        self._logger = logging.getLogger(f"vultrino.plugin.{plugin}")
        if enabled is None:
            if log is None:
                logger = self._logger
                enabled = lambda level: logger.isEnabledFor(_LEVELS.get(level, logging.INFO))  # noqa: E731
            else:
                enabled = _always
        self.enabled = enabled
        self.remaining = MAX_LOG_LINES_PER_CALL
        self.dropped = 0
        #: The running call's capture (set before each call, cleared when it ends).
        self.capture: Capture | None = None

    def wants(self, level: str) -> bool:
        """Whether to build a line of ``level`` and pass it to this log (which counts it). A
        line that would be written nowhere, or past the call's cap, is counted here instead
        and False returned."""
        if self.remaining <= 0:
            self.dropped += 1
            return False
        if self.capture is not None or self.enabled(level):  # a captured call keeps every line
            return True
        self.remaining -= 1
        return False

    def __call__(self, level: str, text: str) -> None:
        if self.remaining <= 0:
            self.dropped += 1
            return
        self.remaining -= 1
        if len(text) > MAX_LOG_MESSAGE:
            text = text[:MAX_LOG_MESSAGE] + " [...]"
        text = escape_control(text)
        if self.capture is not None:
            self.capture.append((level, text))
        if self._log is not None:
            self._log(level, text)
        else:
            self._logger.log(_LEVELS.get(level, logging.INFO), "%s", text)

    def end_call(self) -> None:
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            self.remaining = 1
            self("warn", f"{dropped} more log lines from this call were dropped")
        self.remaining = MAX_LOG_LINES_PER_CALL
        self.capture = None


def _always(level: str) -> bool:
    return True


class _Owned:
    """A thread's own instance of a thread-affine module, in the module's ``threading.local``.

    When the thread ends, CPython clears its thread-local storage on that same thread, so
    ``__del__`` closes the instance on the thread that made it (wasmer-python objects must not
    be released elsewhere) and gives the owner place back through ``gone``.
    """

    __slots__ = ("busy", "gone", "session")

    def __init__(self, gone: Callable[[], None] | None) -> None:
        self.session: abi.Session | None = None
        self.busy = False
        self.gone = gone

    def __del__(self) -> None:
        session, self.session = self.session, None
        try:
            if session is not None:
                session.close()
        finally:
            if self.gone is not None:
                self.gone()


def _call(session: abi.Session, request: dict[str, Any], keys: KeyRing | None) -> dict[str, Any]:
    """``session.call(request)`` with its ``keys`` functions bound to ``keys`` for the call
    only (a session whose guest imports none has no slot: nothing to bind)."""
    slot = session.keys
    if slot is None:
        return session.call(request)
    slot.ring = keys
    try:
        return session.call(request)
    finally:
        slot.ring = None


class PluginModule:
    """A loaded plugin module: ``execute(request) -> {"ok": ...} | {"error": {...}}``."""

    def __init__(
        self,
        runtime: WasmRuntime,
        native: object,
        shape: ModuleShape,
        *,
        abi_version: int,
        sha256: str,
        plugin: str,
        log: LogFunc | None,
        log_enabled: LogEnabled | None = None,
    ) -> None:
        self.abi = abi_version
        self.sha256 = sha256
        self.plugin = plugin
        self._runtime = runtime
        self._native = native
        self._shape = shape
        self._limits = runtime.limits
        self._log_func = log
        self._log_enabled = log_enabled
        self._idle: list[abi.Session] = []
        self._count = 0
        self._waiting = 0
        #: Calls blocked in _acquire until an instance comes free (at most MAX_WAITING).
        self._queued = 0
        self._cond = threading.Condition()
        self._closed = False
        # Engines whose objects are bound to the thread that made them (wasmer) get one
        # instance per calling thread instead of the shared pool.
        self._affine = runtime.thread_affine
        self._artifact = runtime._artifact(sha256) if self._affine else None
        self._local = threading.local()
        #: Threads that own an instance of a thread-affine module (at most MAX_INSTANCES - 1).
        self._owners = 0
        #: The thread that serves every other thread's calls, with the last instance (lazy).
        self._worker: ThreadPoolExecutor | None = None
        try:
            session = self._new_session()
        except GuestExit as exc:  # proc_exit in the start function
            raise ModuleError(
                f"plugin {plugin!r}: the module cannot start: its start function called "
                f"proc_exit({exc.code})",
                plugin=plugin,
            ) from None
        except EngineError as exc:
            what = "" if isinstance(exc, ModuleError) else "the module cannot start: "
            raise ModuleError(f"plugin {plugin!r}: {what}{exc}", plugin=plugin) from exc
        if isinstance(session, abi.Abi1Session):
            try:
                version = session.version()
            except (EngineError, GuestExit) as exc:
                session.close()
                raise ModuleError(
                    f"plugin {plugin!r}: vultrino_plugin_version() failed: {exc}", plugin=plugin
                ) from exc
            if version != 1:
                session.close()
                raise ModuleError(
                    f"plugin {plugin!r}: vultrino_plugin_version() returned {version}; this "
                    f"host runs ABI 1 modules (version 1) and ABI 2 modules (see {WIT_FILE})",
                    plugin=plugin,
                )
        if self._affine:
            # Its objects may only be touched on the thread that made them, so the loading
            # thread keeps this session as the first owner (see _execute_affine).
            owned = _Owned(self._owner_gone_callback())
            owned.session = session
            self._owners = 1
            self._local.owned = owned
        else:
            self._idle.append(session)
        self._count = 1

    # -- calls --

    def execute(
        self,
        request: dict[str, Any],
        keys: KeyRing | None = None,
        *,
        capture: Capture | None = None,
    ) -> dict[str, Any]:
        """Run one call; ``EngineError`` (with ``.plugin``) when the guest misbehaves.

        ``keys`` is what the guest's ``keys`` imports may use during this call (the declared
        fields of the call's credential); None when the call has no credential. ``capture``,
        when given, receives this call's log lines as ``(level, text)`` (after the runtime's
        sanitising, also when the call fails), whatever thread runs the call."""
        if self._affine:
            return self._execute_affine(request, keys, capture)
        try:
            session = self._idle.pop()
        except IndexError:
            session = self._start(self._acquire)
        session.log.capture = capture
        try:
            response = _call(session, request, keys)
        except ParameterError as exc:
            self._release(session)
            raise self._parameter_error(exc) from exc
        except BaseException as exc:
            err = self._error(exc, session)
            self._discard(session)
            try:
                if err is exc:
                    raise
                raise err from exc
            finally:
                del err, session  # see the module docstring: no cycle through this frame
        plog = session.log
        if plog.remaining != MAX_LOG_LINES_PER_CALL:
            plog.end_call()
        if self._closed:
            self._release(session)
        else:
            self._idle.append(session)
            if self._waiting:
                with self._cond:
                    self._cond.notify()
        return response

    def _execute_affine(
        self, request: dict[str, Any], keys: KeyRing | None, capture: Capture | None
    ) -> dict[str, Any]:
        """``execute`` for thread-affine engines, at most MAX_INSTANCES instances in all.

        A thread that owns an instance runs the call inline, on that instance (no thread hop).
        The first ``MAX_INSTANCES - 1`` threads to call become owners; an owner keeps its
        instance until its thread ends, when CPython clears the thread's ``threading.local``
        storage on that thread, so the instance is closed where it was made (``_Owned``).
        Calls from every other thread run on the module's worker thread, which owns the last
        instance; they wait their turn there.
        """
        local = self._local
        owned: _Owned | None = getattr(local, "owned", None)
        if owned is None:
            owned = self._claim()
        if owned is not None:
            if not owned.busy:
                return self._run_owned(owned, request, keys, capture)
            if getattr(local, "worker", False):
                # re-entered from a host function on the worker: nobody else can serve it
                return self._run_once(request, keys, capture)
        return self._on_worker(request, keys, capture)

    def _claim(self) -> _Owned | None:
        """Make this thread an owner when fewer than MAX_INSTANCES - 1 threads are."""
        with self._cond:
            if self._closed:
                raise EngineError(
                    f"plugin {self.plugin!r}: the module is closed", plugin=self.plugin
                )
            if self._owners >= MAX_INSTANCES - 1:
                return None
            self._owners += 1
        owned = _Owned(self._owner_gone_callback())
        self._local.owned = owned
        return owned

    def _owner_gone_callback(self) -> Callable[[], None]:
        """What an ``_Owned`` calls when it dies: give the owner place back (weakly bound, so
        the thread-local storage does not keep the module alive)."""
        ref = weakref.ref(self)

        def gone() -> None:
            module = ref()
            if module is not None:
                with module._cond:
                    module._owners -= 1

        return gone

    def _run_owned(
        self, owned: _Owned, request: dict[str, Any], keys: KeyRing | None, capture: Capture | None
    ) -> dict[str, Any]:
        """The call on this thread's own instance (made here when it has none yet)."""
        session = owned.session
        if self._closed:
            owned.session = None
            if session is not None:
                session.close()
            raise EngineError(f"plugin {self.plugin!r}: the module is closed", plugin=self.plugin)
        if session is None:
            session = owned.session = self._start(self._new_session)
        owned.busy = True
        session.log.capture = capture
        try:
            response = _call(session, request, keys)
        except ParameterError as exc:
            raise self._parameter_error(exc) from exc
        except BaseException as exc:
            owned.session = None
            err = self._error(exc, session)
            self._discard(session, count=False)
            try:
                if err is exc:
                    raise
                raise err from exc
            finally:
                del err, session  # no cycle through this frame (module docstring)
        finally:
            owned.busy = False
        plog = session.log
        if plog.remaining != MAX_LOG_LINES_PER_CALL:
            plog.end_call()
        if self._closed:
            owned.session = None
            session.close()
        return response

    def _run_once(
        self, request: dict[str, Any], keys: KeyRing | None, capture: Capture | None
    ) -> dict[str, Any]:
        """A call on a session of its own, closed afterwards: a host function on the worker
        thread calling back into this module while the worker's instance is busy."""
        session = self._start(self._new_session)
        session.log.capture = capture
        try:
            response = _call(session, request, keys)
        except ParameterError as exc:
            session.close()
            raise self._parameter_error(exc) from exc
        except BaseException as exc:
            err = self._error(exc, session)
            self._discard(session, count=False)
            try:
                if err is exc:
                    raise
                raise err from exc
            finally:
                del err, session  # no cycle through this frame (module docstring)
        session.log.end_call()
        session.close()
        return response

    def _on_worker(
        self, request: dict[str, Any], keys: KeyRing | None, capture: Capture | None
    ) -> dict[str, Any]:
        """The call on the worker thread (started on first use), waiting for its turn."""
        with self._cond:
            if self._closed:
                raise EngineError(
                    f"plugin {self.plugin!r}: the module is closed", plugin=self.plugin
                )
            if self._worker is None:
                self._worker = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=f"vultrino-{self.plugin}"
                )
            worker = self._worker
        try:
            future = worker.submit(self._work, request, keys, capture)
        except RuntimeError:  # shut down by close() meanwhile
            raise EngineError(
                f"plugin {self.plugin!r}: the module is closed", plugin=self.plugin
            ) from None
        return future.result()

    def _work(
        self, request: dict[str, Any], keys: KeyRing | None, capture: Capture | None
    ) -> dict[str, Any]:
        """On the worker thread: the call on the worker's instance (not counted as an owner)."""
        local = self._local
        owned: _Owned | None = getattr(local, "owned", None)
        if owned is None:
            local.worker = True
            owned = local.owned = _Owned(None)
        try:
            if owned.busy:  # cannot happen with one worker; kept for safety
                return self._run_once(request, keys, capture)
            return self._run_owned(owned, request, keys, capture)
        except BaseException as exc:
            # The tracebacks' frames may hold views of guest memory, which must be dropped on
            # this thread: the exception itself travels to the caller's.
            stack: list[BaseException] = [exc]
            seen: set[int] = set()
            while stack:
                e = stack.pop()
                if id(e) in seen:
                    continue
                seen.add(id(e))
                e.__traceback__ = None
                stack.extend(x for x in (e.__cause__, e.__context__) if x is not None)
            del e  # this frame joins exc's traceback: no exception may stay in its locals
            raise

    def _start(self, make: Callable[[], abi.Session]) -> abi.Session:
        """A session from ``make``; a failure to start one names the plugin too."""
        try:
            return make()
        except (EngineError, GuestExit) as exc:  # GuestExit: proc_exit in the start function
            raise self._error(exc, None) from exc

    def _acquire(self) -> abi.Session:
        """An idle session, a new one (up to MAX_INSTANCES), or wait for one to come back.

        The hot path pops and appends ``_idle`` without the lock (list operations are atomic);
        ``_waiting`` is raised *before* looking at ``_idle`` so a lock-free append either is
        seen here or sees a waiter to notify.

        The wait is bounded twice: at most :data:`MAX_WAITING` calls wait at once (the next is
        refused at once), and a call waits at most its deadline (``limits.deadline_s``, the
        longest a running call may take), then is refused. Either way ``PluginBusyError``.
        """
        with self._cond:
            give_up: float | None = None
            try:
                while True:
                    if self._closed:
                        raise EngineError(
                            f"plugin {self.plugin!r}: the module is closed", plugin=self.plugin
                        )
                    self._waiting += 1
                    try:
                        try:
                            return self._idle.pop()
                        except IndexError:
                            pass
                        if self._count < MAX_INSTANCES:
                            self._count += 1
                            break
                        if give_up is None:
                            if self._queued >= MAX_WAITING:
                                raise self._busy(f"{self._queued} more calls are waiting")
                            self._queued += 1
                            give_up = time.monotonic() + self._limits.deadline_s
                        left = give_up - time.monotonic()
                        if left <= 0:
                            raise self._busy(f"none came free within {self._limits.deadline_s:g} s")
                        self._cond.wait(left)
                    finally:
                        self._waiting -= 1
            finally:
                if give_up is not None:
                    self._queued -= 1
        try:
            return self._new_session()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _busy(self, why: str) -> PluginBusyError:
        return PluginBusyError(
            f"plugin {self.plugin!r}: busy: its {MAX_INSTANCES} instances are running calls and "
            f"{why}; nothing ran, try again in a few seconds",
            plugin=self.plugin,
        )

    def _new_session(self) -> abi.Session:
        plog = _PluginLog(self.plugin, self._log_func, self._log_enabled)
        runtime = self._runtime
        buffer = (
            abi.LogBuffer(plog, plog.wants, cap=MAX_LOG_MESSAGE)
            if runtime.capabilities.fused_call and self.abi == 2
            else None
        )
        slot = (
            abi.KeySlot()
            if any(i.module in KEYS_MODULES or i.module == HTTP for i in self._shape.imports)
            else None
        )
        host, output = abi.host_functions(
            self._shape,
            plog,
            max_message_bytes=MAX_LOG_MESSAGE,
            wants=plog.wants,
            buffer=buffer,
            keys=slot,
        )
        if self._affine:
            native = self._runtime._native_here(self.sha256, self._artifact)
        else:
            native = self._native
        instance = runtime.engine.instantiate(native, host, self._limits)
        try:
            session = abi.new_session(
                self.abi,
                instance,
                self._limits,
                output,
                fused=runtime.capabilities.fused_call,
                log_buffer=buffer,
            )
        except BaseException:
            instance.close()
            raise
        session.log = plog
        if slot is not None:
            slot.realloc = instance.export(REALLOC)
            session.keys = slot
        return session

    def _release(self, session: abi.Session) -> None:
        """Return a healthy session (or close it when the module closed meanwhile)."""
        with self._cond:
            if self._closed:
                session.close()
                self._count -= 1
            else:
                self._idle.append(session)
            self._cond.notify()

    def _discard(self, session: abi.Session, *, count: bool = True) -> None:
        try:
            session.flush_log()
            session.output.flush()
        except Exception:  # a failing log sink must not hide the call's error
            logging.getLogger("vultrino.runtime").exception("plugin log failed")
        session.log.end_call()
        session.close()
        if count:
            with self._cond:
                self._count -= 1
                self._cond.notify()

    def _parameter_error(self, exc: ParameterError) -> ParameterError:
        return ParameterError(f"plugin {self.plugin!r}: {exc}", plugin=self.plugin)

    def _error(self, exc: BaseException, session: abi.Session | None) -> BaseException:
        """The error the caller sees: an ``EngineError`` naming the plugin, or ``exc`` as is."""
        if isinstance(exc, GuestExit):
            return PluginTrapError(
                f"plugin {self.plugin!r}: the guest called proc_exit({exc.code}), which ends the "
                "call without an answer",
                plugin=self.plugin,
            )
        if not isinstance(exc, EngineError):
            return exc
        cls: type[EngineError] = type(exc)
        message = str(exc)
        if cls is PluginTrapError and session is not None and "stack overflow" not in message:
            used = self._memory_used(session)
            if used is not None:
                cls = PluginMemoryError
                message = (
                    f"the guest ran out of memory: it trapped ({message.removeprefix(_TRAPPED)}) "
                    f"with {_size(used)} of its {_size(self._limits.memory_bytes)} cap in use "
                    "(limits.memory_bytes)"
                )
        prefix = f"plugin {self.plugin!r}: "
        return cls(message if message.startswith(prefix) else prefix + message, plugin=self.plugin)

    def _memory_used(self, session: abi.Session) -> int | None:
        """The guest's memory size when a trap most likely came from a failed allocation.

        Not every engine reports a failed ``memory.grow``: a guest whose allocator finds no
        room aborts (a Rust OOM is an ``unreachable`` trap). A trap with the memory within an
        eighth of the cap (at least 1 MiB) is reported as running out of memory.
        """
        try:
            size = session.instance.memory.size()
        except Exception:  # a closed instance has no memory to look at
            return None
        cap = self._limits.memory_bytes
        return size if size + max(cap // 8, MIB, WASM_PAGE) > cap else None

    # -- lifetime --

    def close(self) -> None:
        """Close every idle instance; busy ones close when their call ends. Idempotent.

        With a thread-affine engine only this thread's instance can be closed here; another
        owner thread's instance is closed by that thread's next call or when the thread ends,
        and the worker thread closes its instance as it ends, all on their own thread.
        """
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
            worker, self._worker = self._worker, None
        owned: _Owned | None = getattr(self._local, "owned", None)
        if owned is not None and not owned.busy and owned.session is not None:
            idle.append(owned.session)
            owned.session = None
        for session in idle:
            session.close()
        if worker is not None:
            # nothing new is accepted; the worker thread ends after its queued calls, which
            # see the module closed
            worker.shutdown(wait=False)

    def __enter__(self) -> PluginModule:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PluginModule {self.plugin!r} abi={self.abi} sha256={self.sha256[:12]}>"


class WasmRuntime:
    """Loads plugin modules on one engine, with an optional on-disk compiled-module cache.

    ``engine`` is a name from ``ENGINES`` or an adapter object (which the runtime then does not
    close). ``cache_dir`` is normally ``$VULTRINO_HOME/cache``; None keeps compiled modules in
    memory only.
    """

    def __init__(
        self,
        engine: str | EngineAdapter = DEFAULT_ENGINE,
        cache_dir: Path | None = None,
        limits: Limits = Limits(),  # noqa: B008 - Limits is frozen
    ) -> None:
        if isinstance(engine, str):
            self.engine: EngineAdapter = load_engine(engine)
            self._owns_engine = True
        else:
            self.engine = engine
            self._owns_engine = False
        self.limits = limits
        self.cache = ModuleCache(Path(cache_dir) if cache_dir is not None else None)
        self._fingerprint = self.engine.fingerprint(limits)
        self._natives: dict[str, tuple[object, ModuleShape]] = {}
        self._lock = threading.Lock()
        self._closed = False
        #: What the engine declares it offers (see ``engine.EngineCapabilities``).
        self.capabilities: EngineCapabilities = self.engine.capabilities
        #: True when the engine's objects only work on the thread that created them.
        self.thread_affine: bool = self.capabilities.thread_affinity
        self._artifacts: dict[str, bytes] = {}  # serialized code, to rebuild on other threads
        self._local = threading.local()
        self._components: ComponentEngine | None = None  # made on the first component

    @property
    def engine_name(self) -> str:
        return self.engine.name

    @property
    def engine_version(self) -> str:
        return self.engine.version

    def inspect(self, wasm: bytes) -> ModuleInfo:
        """Describe a module and check it against the plugin ABIs (``ModuleError`` if unfit)."""
        sha = hashlib.sha256(wasm).hexdigest()
        if abi.is_component(wasm):
            self._component(wasm, sha)
            return abi.ModuleInfo(2, sha, len(wasm), (), ())
        _, shape = self._compiled(wasm, sha)
        abi_version = abi.check_module(shape)
        return abi.ModuleInfo(abi_version, sha, len(wasm), shape.imports, shape.exports)

    def load(
        self,
        wasm: bytes,
        *,
        plugin: str,
        log: LogFunc | None = None,
        log_enabled: LogEnabled | None = None,
    ) -> PluginModule:
        """Compile (or load from the cache), validate and instantiate once. Log lines go to
        ``log(level, text)`` (default: the ``vultrino.plugin.<name>`` logger); ``log_enabled``
        says which levels ``log`` would write anywhere (default: all of them)."""
        sha = hashlib.sha256(wasm).hexdigest()
        if abi.is_component(wasm):
            try:
                component = self._component(wasm, sha)
            except ModuleError as exc:
                raise ModuleError(f"plugin {plugin!r}: {exc}", plugin=plugin) from exc
            return ComponentModule(
                self,
                component,
                ModuleShape((), ()),
                abi_version=2,
                sha256=sha,
                plugin=plugin,
                log=log,
            )
        try:
            native, shape = self._compiled(wasm, sha)
            abi_version = abi.check_module(shape)
        except ModuleError as exc:
            raise ModuleError(f"plugin {plugin!r}: {exc}", plugin=plugin) from exc
        return PluginModule(
            self,
            native,
            shape,
            abi_version=abi_version,
            sha256=sha,
            plugin=plugin,
            log=log,
            log_enabled=log_enabled,
        )

    def drop_cache(self, sha256: str) -> int:
        """Forget a module's compiled code, in memory and on disk; returns files removed."""
        with self._lock:
            self._natives.pop(sha256, None)
            self._artifacts.pop(sha256, None)
        self._local.__dict__.get("natives", {}).pop(sha256, None)
        return self.cache.drop(sha256)

    def _native_here(self, sha: str, artifact: bytes | None = None) -> object:
        """This thread's copy of a compiled module (thread-affine engines only).

        ``artifact`` is the serialized code a loaded module keeps, so it can still start
        instances on new threads after :meth:`drop_cache`.
        """
        natives: dict[str, object] = self._local.__dict__.setdefault("natives", {})
        native = natives.get(sha)
        if native is None:
            if artifact is None:
                with self._lock:
                    artifact = self._artifacts.get(sha)
            if artifact is None:
                raise EngineError("the module was dropped from this runtime; load it again")
            native = natives[sha] = self.engine.deserialize(artifact)
        return native

    def _artifact(self, sha: str) -> bytes | None:
        with self._lock:
            return self._artifacts.get(sha)

    def _compiled(self, wasm: bytes, sha: str) -> tuple[object, ModuleShape]:
        """The compiled module for this thread and its shape: memory, disk cache, or compile."""
        if self._closed:
            raise EngineError("the runtime is closed")
        with self._lock:
            hit = self._natives.get(sha)
        if hit is not None:
            return (self._native_here(sha), hit[1]) if self.thread_affine else hit
        if bytes(wasm[:4]) != b"\0asm":
            raise ModuleError("not a WebAssembly binary (it does not start with \\0asm)")
        abi.check_counts(wasm)
        _signatures.check_signatures(wasm)  # before any engine reads the module's types
        engine = self.engine
        key = (sha, engine.name, engine.version, self._fingerprint)
        native: object | None = None
        payload = self.cache.load(*key)
        if payload is not None:
            try:
                native = engine.deserialize(payload)
            except ModuleError as exc:
                logging.getLogger("vultrino.runtime.cache").warning(
                    "cached module %s rejected (%s); recompiling", sha[:12], exc
                )
                self.cache.invalidate(*key)
                payload = None
        if native is None:
            native = engine.compile(bytes(wasm), self.limits)
            if self.cache.directory is not None or self.thread_affine:
                payload = engine.serialize(native)
                self.cache.store(*key, payload)
        shape = dataclasses.replace(engine.shape(native), start=_signatures.has_start(wasm))
        with self._lock:
            self._natives[sha] = (native, shape)
            if self.thread_affine and payload is not None:
                self._artifacts[sha] = payload
        if self.thread_affine:
            self._local.__dict__.setdefault("natives", {})[sha] = native
        return native, shape

    def _component(self, wasm: bytes, sha: str) -> object:
        """A compiled, world-checked component (see ``wasmtime/_component.py``): memory,
        disk, compile."""
        if self._closed:
            raise EngineError("the runtime is closed")
        with self._lock:
            hit = self._natives.get(sha)
        if hit is not None:
            return hit[0]
        engine = self.engine
        if not self.capabilities.components:
            raise ModuleError(
                f"this is a WebAssembly component, and components run only on the wasmtime "
                f"engine (this runtime uses {engine.name}); run Vultrino with "
                "VULTRINO_ENGINE=wasmtime, or install a core-module build of the plugin"
            )
        components = self._component_engine()
        key = (sha, components.cache_name, engine.version, self._fingerprint)
        native: object | None = None
        payload = self.cache.load(*key)
        if payload is not None:
            try:
                native = components.deserialize(payload)
            except ModuleError as exc:
                logging.getLogger("vultrino.runtime.cache").warning(
                    "cached component %s rejected (%s); recompiling", sha[:12], exc
                )
                self.cache.invalidate(*key)
        if native is None:
            native = components.compile(bytes(wasm))
            components.check(native)
            if self.cache.directory is not None:
                self.cache.store(*key, components.serialize(native))
        else:
            components.check(native)
        with self._lock:
            self._natives[sha] = (native, ModuleShape((), ()))
        return native

    def _component_engine(self) -> ComponentEngine:
        with self._lock:
            if self._components is None:
                self._components = self.engine.components()
            return self._components

    def close(self) -> None:
        """Drop compiled modules and close the engine if this runtime created it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._natives.clear()
            self._artifacts.clear()
        self._local.__dict__.pop("natives", None)
        if self._owns_engine:
            self.engine.close()

    def __enter__(self) -> WasmRuntime:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<WasmRuntime engine={self.engine_name} {self.engine_version}>"


ModuleInfo = abi.ModuleInfo


class ComponentModule(PluginModule):
    """A loaded WASI 0.2 component (``wasmtime/_component.py``): the same pool, limits and
    errors as a core module; its sessions are component instances instead of ABI codecs on a
    module."""

    def _new_session(self) -> abi.Session:
        plog = _PluginLog(self.plugin, self._log_func)
        components = self._runtime._component_engine()
        session: abi.Session = components.session(self._native, plog, self._limits)
        session.log = plog
        return session

    def __repr__(self) -> str:
        return f"<ComponentModule {self.plugin!r} sha256={self.sha256[:12]}>"
