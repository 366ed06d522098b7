"""The stdio MCP server, in the standard library: one handshake-era session on stdin/stdout.

``vultrino mcp`` serves a client that opens with ``initialize`` (every desktop host today) here,
without importing the MCP SDK, whose import alone costs most of a second: the first useful
answer (``tools/list``) comes as soon as the store is unlocked. A stream that opens otherwise
(a 2026-07-28 request, a request before ``initialize``, an unusual ``initialize``) is served by
the SDK instead (``vultrino.mcp._front`` decides, ``vultrino.mcp._relay`` serves).

It is a small, strict JSON-RPC 2.0 implementation of exactly the methods Vultrino serves, with
the results, errors and version negotiation the SDK server gives (tests/unit/test_mcp_front.py
compares the two on the wire). Methods live in one table, :data:`METHODS`; notifications in
:data:`NOTIFICATIONS`. A method is added there, once.

How a message travels (docs/mcp.md, "Start-up" and "Concurrency"):

- the front's reader thread parses each line and dispatches it (:meth:`StdioSession.receive`):
  ``initialize``, ``ping`` and notifications are answered there and then; ``tools/list`` and
  ``tools/call`` go to a worker pool (plugin actions to a pool of their own, so slow plugins
  never hold up listings), whose thread writes the answer itself, under a lock;
- tools are run by :class:`vultrino.mcp._tools.ToolDesk`, which calls the facade and so
  ``Pipeline.call``: arguments are validated, decided on, scrubbed and audited there, once;
- ``notifications/cancelled`` drops the answer of a request still in flight (and skips it if it
  has not started); an approval (``elicitation/create``) is a request to the client answered on
  the same stream;
- when stdin closes, requests in flight are still answered (for up to :data:`DRAIN_S`).

Lines that are not JSON get -32700, messages that are not JSON-RPC 2.0 -32600 (``"id": null``,
the line never echoed), unknown methods -32601, bad parameters -32602 with ``data`` saying what
was wrong. JSON-RPC batches are answered on protocol version 2025-03-26, the one version whose
specification has them, and refused with -32600 on the others.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import IO, Any, Final

from vultrino.core import Vultrino
from vultrino.mcp import _logs, _prompts
from vultrino.mcp._identity import initialize_result
from vultrino.mcp._resources import list_resources, read_resource
from vultrino.mcp._tools import (
    ACTION_THREADS,
    APPROVAL_SCHEMA,
    APPROVAL_TIMEOUT_S,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    POLL_INTERVAL_S,
    RpcError,
    ToolDesk,
    unknown_tool,
)
from vultrino.policy.approval import Approval, ApprovalRequest, Approver

__all__ = ["BATCH_VERSIONS", "DRAIN_S", "METHODS", "NOTIFICATIONS", "StdioSession"]

logger = logging.getLogger("vultrino.mcp")

DRAIN_S: Final = 30.0
"""How long the stdio server keeps answering in-flight requests after stdin closes."""

LIST_THREADS: Final = 8
"""Worker threads for ``tools/list``, ``list_credentials`` and refreshes."""

BATCH_VERSIONS: Final = frozenset({"2025-03-26"})
"""The protocol versions whose specification has JSON-RPC batches."""

ENVELOPE_KEY: Final = "io.modelcontextprotocol/protocolVersion"
"""The ``_meta`` key only 2026-07-28 requests carry."""

_ONE_PER_LINE: Final = "send one JSON-RPC 2.0 message per line"


def _invalid_params(what: str) -> RpcError:
    # The SDK's code and message; ``data`` says what was wrong (the SDK leaves it empty).
    return RpcError(INVALID_PARAMS, "Invalid request parameters", what)


def _invalid_request(what: str) -> RpcError:
    return RpcError(INVALID_REQUEST, f"Invalid request: {what}; {_ONE_PER_LINE}")


@dataclass(eq=False)
class _Batch:
    """The answers of one JSON-RPC batch, written together once every request is answered."""

    waiting: int = 0
    answers: list[dict[str, Any]] = field(default_factory=list)
    sealed: bool = False  # every message of the batch has been dispatched


@dataclass(eq=False)
class Request:
    """One request from the client, from dispatch to answer."""

    id: int | str
    method: str
    params: dict[str, Any] | None
    batch: _Batch | None = None
    cancelled: bool = False

    @property
    def key(self) -> tuple[bool, int | str]:
        return (isinstance(self.id, str), self.id)  # 1 and "1" are different ids

    def param(self, name: str) -> Any:
        return None if self.params is None else self.params.get(name)


@dataclass(frozen=True)
class Method:
    """An entry of the method table.

    ``handler`` returns the result (or raises :class:`RpcError`). ``pool`` names where it runs:
    ``None`` on the reader thread (answers at once, touches neither the store nor a plugin),
    else a function of the request naming a worker pool (``"lists"`` or ``"actions"``).
    """

    handler: Callable[[StdioSession, Request], dict[str, Any]]
    pool: Callable[[Request], str] | None = None


class StdioSession:
    """One client's handshake-era session on the protocol stream ``out``.

    Fed by the front (:meth:`receive`, :meth:`receive_eof`); :meth:`serve` runs in the main
    thread until the client leaves, polling for tool-list changes meanwhile.
    """

    def __init__(
        self,
        v: Vultrino,
        out: IO[str],
        *,
        agent: str | None = None,
        poll_interval: float = POLL_INTERVAL_S,
        drain_s: float = DRAIN_S,
    ) -> None:
        self.desk = ToolDesk(v)
        self.agent = agent
        self.logs = _logs.LogSink(self._log_message)  # logging/setLevel, notifications/message
        _logs.install()
        self.poll_interval = poll_interval
        self.drain_s = drain_s
        self.protocol_version: str | None = None  # negotiated by initialize
        self.client_capabilities: dict[str, Any] = {}
        self.initialized = False  # notifications/initialized received
        self._out = out
        self._write_lock = threading.Lock()
        self._lock = threading.Condition()  # guards what follows; notified when one is answered
        self._inflight: dict[tuple[bool, int | str], Request] = {}
        self._asked: dict[int, Future[dict[str, Any]]] = {}  # our requests to the client
        self._ids = itertools.count(1)
        self._closed = threading.Event()  # stdin closed, or the SDK took the stream over
        self._handed_over = False
        self._pools: dict[str, ThreadPoolExecutor] = {
            "lists": ThreadPoolExecutor(LIST_THREADS, thread_name_prefix="vultrino-mcp-list"),
            "actions": ThreadPoolExecutor(ACTION_THREADS, thread_name_prefix="vultrino-mcp-call"),
        }

    # -- the main thread ------------------------------------------------------------------------

    def serve(self) -> None:
        """Watch for tool-list changes until stdin closes; then answer what is in flight (for
        up to ``drain_s``) and stop. Returns at once when the SDK took the stream over."""
        # This server's one client also hears the records no request claims (the watcher's).
        _logs.set_fallback(self.logs)
        try:
            # Load the tool list now, while the client reads the initialize answer: the first
            # tools/list then finds the registry warm.
            if self.desk.refresh():
                self.tools_changed()
            while not self._closed.wait(self.poll_interval):
                if self.desk.refresh():
                    self.tools_changed()
            if not self._handed_over:
                with self._lock:
                    self._lock.wait_for(lambda: not self._inflight, timeout=self.drain_s)
        finally:
            _logs.set_fallback(None)
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    def hand_over(self) -> None:
        """The SDK serves this stream (the client did not open with ``initialize``)."""
        self._handed_over = True
        self._closed.set()

    # -- the reader thread ----------------------------------------------------------------------

    def receive(self, line: str) -> None:
        """Dispatch one line of the stream."""
        try:
            message = json.loads(line)
        except ValueError:
            logger.warning("answered a stdin line that is not JSON (%s)", PARSE_ERROR)
            not_json = f"Parse error: the line is not JSON; {_ONE_PER_LINE}"
            self._send(_error(None, RpcError(PARSE_ERROR, not_json)))
            return
        if not isinstance(message, list):
            self._message(message, None)
            return
        version = self.protocol_version or ""
        if version not in BATCH_VERSIONS:
            self._send(
                _error(
                    None,
                    _invalid_request(
                        f"protocol version {version} has no JSON-RPC batches (only "
                        f"{', '.join(sorted(BATCH_VERSIONS))} has)"
                    ),
                )
            )
            return
        if not message:
            self._send(_error(None, _invalid_request("an empty batch")))
            return
        batch = _Batch()
        for item in message:
            self._message(item, batch)
        with self._lock:
            batch.sealed = True
            done = batch.waiting == 0
        if done:
            self._flush(batch)

    def receive_eof(self) -> None:
        """The client closed stdin: questions to it will not be answered."""
        with self._lock:
            asked = list(self._asked.values())
        for future in asked:
            if not future.done():
                future.set_result({"error": {"code": INTERNAL_ERROR, "message": "client gone"}})
        self._closed.set()

    def _message(self, message: Any, batch: _Batch | None) -> None:
        try:
            self._classify(message, batch)
        except RpcError as exc:
            self._answer_or_add(batch, _error(None, exc))

    def _classify(self, message: Any, batch: _Batch | None) -> None:
        if not isinstance(message, dict):
            raise _invalid_request("the message is not a JSON object")
        if message.get("jsonrpc") != "2.0":
            raise _invalid_request('"jsonrpc" must be "2.0"')
        if "method" in message:
            method = message["method"]
            params = message.get("params")
            if not isinstance(method, str):
                raise _invalid_request('"method" must be a string')
            if params is not None and not isinstance(params, dict):
                raise _invalid_request('"params" must be an object')
            if "id" not in message:
                self._notification(method, params)
                return
            rid = message["id"]
            if isinstance(rid, bool) or not isinstance(rid, (int, str)):
                raise _invalid_request('"id" must be a string or an integer')
            self._request(Request(rid, method, params, batch))
        elif "id" in message and ("result" in message or "error" in message):
            self._response(message)
        else:
            raise _invalid_request("neither a request, a notification nor a response")

    def _request(self, req: Request) -> None:
        with self._lock:
            if req.key in self._inflight:
                clash = True
            else:
                clash = False
                self._inflight[req.key] = req
                if req.batch is not None:
                    req.batch.waiting += 1
        if clash:  # answered without taking the id over from the request that holds it
            self._answer_or_add(
                req.batch,
                _error(req.id, _invalid_request(f"id {req.id!r} is in use by a request in flight")),
            )
            return
        method = METHODS.get(req.method)
        if method is None:
            self._answer(req, error=RpcError(METHOD_NOT_FOUND, "Method not found", req.method))
            return
        if method.pool is None:
            self._run(method, req)
        else:
            self._pools[method.pool(req)].submit(self._run, method, req)

    def _run(self, method: Method, req: Request) -> None:
        if req.cancelled:
            self._answer(req)  # cancelled before it started: never run, never answered
            return
        try:
            _check_common(req)
            with _logs.routed(self.logs):
                result = method.handler(self, req)
        except RpcError as exc:
            self._answer(req, error=exc)
        except Exception as exc:
            logger.error("internal error in %s: %s", req.method, type(exc).__name__)
            logger.debug("internal error", exc_info=True)
            self._answer(req, error=RpcError(INTERNAL_ERROR, "Internal error"))
        else:
            self._answer(req, result=result)

    def _notification(self, method: str, params: dict[str, Any] | None) -> None:
        handler = NOTIFICATIONS.get(method)
        if handler is not None:
            handler(self, params or {})

    def _response(self, message: dict[str, Any]) -> None:
        rid = message["id"]
        if isinstance(rid, bool) or not isinstance(rid, int):
            return  # not an id of ours
        with self._lock:
            future = self._asked.get(rid)
        if future is not None and not future.done():
            future.set_result(message)

    # -- answers --------------------------------------------------------------------------------

    def _answer(
        self, req: Request, *, result: dict[str, Any] | None = None, error: RpcError | None = None
    ) -> None:
        """Answer ``req`` (unless it was cancelled, or neither is given) and retire it."""
        answer: dict[str, Any] | None = None
        if error is not None:
            answer = _error(req.id, error)
        elif result is not None:
            answer = {"jsonrpc": "2.0", "id": req.id, "result": result}
        flush: _Batch | None = None
        with self._lock:
            if self._inflight.get(req.key) is req:
                del self._inflight[req.key]
            if req.cancelled:
                answer = None
            batch = req.batch
            if batch is not None:
                if answer is not None:
                    batch.answers.append(answer)
                batch.waiting -= 1
                if batch.sealed and batch.waiting == 0:
                    flush = batch
            self._lock.notify_all()
        if batch is None and answer is not None:
            self._send(answer)
        elif flush is not None:
            self._flush(flush)

    def _answer_or_add(self, batch: _Batch | None, answer: dict[str, Any]) -> None:
        if batch is None:
            self._send(answer)
            return
        with self._lock:
            batch.answers.append(answer)

    def _flush(self, batch: _Batch) -> None:
        if batch.answers:  # a batch of notifications only is not answered
            self._send(batch.answers)

    def _send(self, message: dict[str, Any] | list[dict[str, Any]]) -> None:
        line = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: escaped, still the same JSON value
            line = json.dumps(message, separators=(",", ":"))
        try:
            with self._write_lock:
                self._out.write(line + "\n")
                self._out.flush()
        except (OSError, ValueError):
            pass  # the client is gone; the reader sees the end of stdin

    def tools_changed(self) -> None:
        """Tell the client its tool list changed (once it is initialized), and with it the
        prompts, one per tool, and the resources (the credentials: the home changed)."""
        if self.protocol_version is not None:
            logger.info("tool list changed; notifying the client")
            self._send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
            self._send({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"})
            self._send({"jsonrpc": "2.0", "method": "notifications/resources/list_changed"})

    def _log_message(self, params: dict[str, Any]) -> None:
        if self.protocol_version is not None:
            self._send({"jsonrpc": "2.0", "method": "notifications/message", "params": params})

    # -- approvals ------------------------------------------------------------------------------

    def approver(self) -> Approver:
        """The approval channel of an agent's calls: ``elicitation/create`` when the client
        declared the ``elicitation`` capability, else every gated call is refused."""
        supported = self.client_capabilities.get("elicitation") is not None

        def ask(request: ApprovalRequest) -> Approval:
            if not supported:
                return "unavailable"
            return self._elicit(request)

        return ask

    def _elicit(self, request: ApprovalRequest) -> Approval:
        rid = next(self._ids)
        future: Future[dict[str, Any]] = Future()
        with self._lock:
            self._asked[rid] = future
        if self._closed.is_set():
            return "unavailable"
        try:
            self._send(
                {
                    "jsonrpc": "2.0",
                    "id": rid,
                    "method": "elicitation/create",
                    "params": {
                        "mode": "form",
                        "message": request.message(),
                        "requestedSchema": APPROVAL_SCHEMA,
                    },
                }
            )
            answer = future.result(timeout=APPROVAL_TIMEOUT_S)
        except FutureTimeout:
            logger.warning("no answer to an approval request within %s s", APPROVAL_TIMEOUT_S)
            return "declined"
        finally:
            with self._lock:
                self._asked.pop(rid, None)
        result = answer.get("result")
        if not isinstance(result, dict):
            error = answer.get("error")
            what = error.get("message") if isinstance(error, dict) else "no result"
            logger.warning("cannot ask the client for approval (%s)", what)
            return "unavailable"
        content = result.get("content")
        if (
            result.get("action") == "accept"
            and isinstance(content, dict)
            and content.get("approve") is True
        ):
            return "granted"
        return "declined"


# --- the methods -----------------------------------------------------------------------------


def _error(rid: int | str | None, exc: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": exc.error()}


def _check_common(req: Request) -> None:
    """What every request's parameters must satisfy, whatever the method."""
    meta = req.param("_meta")
    if meta is not None and not isinstance(meta, dict):
        raise _invalid_params("params._meta must be an object")
    if req.method != "initialize" and isinstance(meta, dict) and ENVELOPE_KEY in meta:
        raise RpcError(
            INVALID_REQUEST,
            "this connection serves the handshake protocol era; requests carrying the "
            "2026-07-28 envelope are not accepted on it",
        )


def _initialize(s: StdioSession, req: Request) -> dict[str, Any]:
    version = req.param("protocolVersion")
    capabilities = req.param("capabilities")
    info = req.param("clientInfo")
    if not isinstance(version, str):
        raise _invalid_params("initialize needs params.protocolVersion, a string")
    if not isinstance(capabilities, dict):
        raise _invalid_params("initialize needs params.capabilities, an object")
    if not isinstance(info, dict) or not all(
        isinstance(info.get(k), str) for k in ("name", "version")
    ):
        raise _invalid_params(
            "initialize needs params.clientInfo, an object with a name and a version (strings)"
        )
    result = initialize_result(version, METHODS)
    s.protocol_version = result["protocolVersion"]
    s.client_capabilities = capabilities
    return result


def _ping(s: StdioSession, req: Request) -> dict[str, Any]:
    return {}


def _tools_list(s: StdioSession, req: Request) -> dict[str, Any]:
    cursor = req.param("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise _invalid_params("params.cursor must be a string")
    if s.desk.refresh():
        s.tools_changed()
    assert s.protocol_version is not None
    return {"tools": s.desk.list_tools(s.agent, s.protocol_version)}


def _tool_name(req: Request) -> str:
    name = req.param("name")
    if not isinstance(name, str):
        raise _invalid_params("tools/call needs params.name, the tool's name (a string)")
    return name


def _tools_call(s: StdioSession, req: Request) -> dict[str, Any]:
    name = _tool_name(req)
    arguments = req.param("arguments")
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, dict):
        raise _invalid_params("tools/call params.arguments must be an object")
    if not s.desk.known(name):
        # Perhaps installed a moment ago by another process: look again before refusing.
        if s.desk.refresh():
            s.tools_changed()
        if not s.desk.known(name) and s.agent is None:
            raise unknown_tool(name)  # an agent's call goes on: the pipeline refuses, audited
    assert s.protocol_version is not None
    return s.desk.call(
        name,
        arguments,
        agent=s.agent,
        approver=s.approver() if s.agent is not None else None,
        protocol_version=s.protocol_version,
    )


def _call_pool(req: Request) -> str:
    try:
        name = _tool_name(req)
    except RpcError:
        return "lists"  # answered with the error at once
    return "actions" if ToolDesk.runs_an_action(name) else "lists"


def _set_level(s: StdioSession, req: Request) -> dict[str, Any]:
    level = req.param("level")
    if level not in _logs.LEVELS:
        raise _invalid_params(
            f"logging/setLevel needs params.level, one of {', '.join(_logs.LEVELS)}"
        )
    s.logs.set_level(level)
    return {}


def _prompts_list(s: StdioSession, req: Request) -> dict[str, Any]:
    cursor = req.param("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise _invalid_params("params.cursor must be a string")
    return {"prompts": _prompts.list_prompts(s.desk, s.agent)}


def _prompts_get(s: StdioSession, req: Request) -> dict[str, Any]:
    name = req.param("name")
    arguments = req.param("arguments")
    if not isinstance(name, str):
        raise _invalid_params("prompts/get needs params.name, the prompt's name (a string)")
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, dict) or not all(isinstance(v, str) for v in arguments.values()):
        raise _invalid_params("prompts/get params.arguments must be an object of strings")
    return _prompts.get_prompt(s.desk, name, arguments, s.agent)


def _complete(s: StdioSession, req: Request) -> dict[str, Any]:
    ref = req.param("ref")
    argument = req.param("argument")
    context = req.param("context")
    if not isinstance(ref, dict) or ref.get("type") not in ("ref/prompt", "ref/resource"):
        raise _invalid_params(
            "completion/complete needs params.ref, a ref/prompt (with a name) or a "
            "ref/resource (with a uri)"
        )
    if not isinstance(ref.get("name" if ref["type"] == "ref/prompt" else "uri"), str):
        raise _invalid_params("completion/complete params.ref needs its name (or uri), a string")
    if not (
        isinstance(argument, dict)
        and isinstance(argument.get("name"), str)
        and isinstance(argument.get("value"), str)
    ):
        raise _invalid_params(
            "completion/complete needs params.argument, an object with a name and a value (strings)"
        )
    args: Any = {}
    if context is not None:
        args = context.get("arguments") if isinstance(context, dict) else None
        if args is None:
            args = {}
        if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
            raise _invalid_params(
                "completion/complete params.context.arguments must be an object of strings"
            )
    return _prompts.complete(s.desk, ref, argument, args, s.agent)


def _lists(req: Request) -> str:
    return "lists"


def _resources_list(s: StdioSession, req: Request) -> dict[str, Any]:
    cursor = req.param("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise _invalid_params("params.cursor must be a string")
    return {"resources": list_resources(s.desk.v, s.agent)}


def _resources_read(s: StdioSession, req: Request) -> dict[str, Any]:
    return read_resource(s.desk.v, s.agent, req.param("uri"))


METHODS: Final[dict[str, Method]] = {
    "initialize": Method(_initialize),
    "ping": Method(_ping),
    "tools/list": Method(_tools_list, pool=_lists),
    "tools/call": Method(_tools_call, pool=_call_pool),
    "logging/setLevel": Method(_set_level),
    "prompts/list": Method(_prompts_list, pool=_lists),
    "prompts/get": Method(_prompts_get, pool=_lists),
    "completion/complete": Method(_complete, pool=_lists),
    "resources/list": Method(_resources_list, pool=_lists),
    "resources/read": Method(_resources_read, pool=_lists),
}
"""The requests the stdio server answers; any other method is -32601. The capabilities
``initialize`` declares follow from it (``vultrino.mcp._identity.server_capabilities``)."""


def _initialized(s: StdioSession, params: dict[str, Any]) -> None:
    s.initialized = True


def _cancelled(s: StdioSession, params: dict[str, Any]) -> None:
    rid = params.get("requestId")
    if isinstance(rid, bool) or not isinstance(rid, (int, str)):
        return
    with s._lock:
        req = s._inflight.get((isinstance(rid, str), rid))
        if req is not None and req.method != "initialize":  # initialize cannot be cancelled
            req.cancelled = True


NOTIFICATIONS: Final[dict[str, Callable[[StdioSession, dict[str, Any]], None]]] = {
    "notifications/initialized": _initialized,
    "notifications/cancelled": _cancelled,
}
"""The notifications the stdio server acts on; others are ignored, as the protocol says."""
