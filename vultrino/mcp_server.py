"""Vultrino's MCP server: the tools of the facade, spoken over stdio or streamable HTTP.

This is the only module that imports the ``mcp`` SDK (and the Starlette/uvicorn pieces it brings
for HTTP). It is built on the SDK's low-level ``Server`` because tool names and schemas are data
from plugin manifests, not Python functions.

::

    serve_stdio(v)                                  # `vultrino mcp`
    serve_http(v, port=8765, token=token)           # `vultrino mcp --http`
    token, created = ensure_http_token(home)        # $VULTRINO_HOME/mcp-token, mode 0600
    client_config(home, form="claude")              # `vultrino mcp config`

Contract (docs/mcp.md):

- ``tools/list`` is the facade's tool list, re-read on every call; an unknown tool name in
  ``tools/call`` is a JSON-RPC error (-32602). Every other failure of a call is a tool result with
  ``isError: true`` and a message that says what to change, so the model can fix its call.
- Results: a string is text content; a map becomes ``structuredContent`` plus its JSON as text;
  a list likewise (wrapped as ``{"result": [...]}`` on handshake-era protocol versions, whose
  ``structuredContent`` must be an object); any other value is its JSON as text.
- A background task polls ``Vultrino.refresh`` and, when the tool list changed (a plugin
  installed, removed or reloaded, a credential added), sends ``notifications/tools/list_changed``
  to every handshake-era session and publishes it to ``subscriptions/listen`` streams
  (2026-07-28 era).
- Facade calls run in worker threads, so calls are concurrent; the facade and the runtime
  serialise what must be serialised.
- Agent profiles (docs/agents.md): with ``agent=`` (``vultrino mcp --agent NAME``) every request
  runs under that profile; over HTTP an agent's own bearer token selects its profile per
  request. The profile is enforced by the facade (:meth:`Vultrino.as_agent`); this module only
  picks the agent and supplies the approval channel: ``elicitation/create`` when the client
  declared the ``elicitation`` capability, else the call is refused with a clear message.
- In stdio mode nothing but the protocol reaches the real stdout: fd 1 is pointed at stderr while
  serving and the protocol is written to a private duplicate, so a stray ``print`` or a plugin
  writing to fd 1 cannot corrupt the stream. fd 0 is pointed at the null device.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import shutil
import socket
import sys
import traceback
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import types
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vultrino._json import jsonable
from vultrino._mcp_front import (
    INSTRUCTIONS,
    SERVER_NAME,
    SERVER_TITLE,
    StdioFront,
    Wire,
)
from vultrino._version import __version__
from vultrino.agents import AgentScope, Approval, ApprovalRequest
from vultrino.core import ToolInfo, Vultrino
from vultrino.errors import ConfigError, VultrinoError
from vultrino.paths import Home

__all__ = [
    "HTTP_PATH",
    "POLL_INTERVAL_S",
    "TOKEN_FILE",
    "client_config",
    "client_config_note",
    "ensure_http_token",
    "serve_http",
    "serve_stdio",
]

logger = logging.getLogger("vultrino.mcp")

POLL_INTERVAL_S = 0.5
"""How often the server asks the facade whether plugins or credentials changed."""

APPROVAL_TIMEOUT_S = 600.0
"""How long an approval prompt waits for the person before counting as declined."""

APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approve": {
            "type": "boolean",
            "title": "Approve",
            "description": "Allow this one call",
            "default": False,
        }
    },
    "required": ["approve"],
}

_AGENT_STATE = "vultrino_agent"  # the ASGI scope["state"] key naming a request's agent

HTTP_PATH = "/mcp"
TOKEN_FILE = "mcp-token"  # noqa: S105 - a file name, not a secret
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")

_MODERN_VERSIONS = frozenset(types.version.MODERN_PROTOCOL_VERSIONS)


# --- results ---------------------------------------------------------------------------------


def tool_result(value: Any, protocol_version: str) -> types.CallToolResult:
    """The ``CallToolResult`` for a facade result (see the module docstring for the shapes)."""
    if isinstance(value, str):
        return types.CallToolResult(content=[types.TextContent(text=value)])
    data = jsonable(value)
    text = json.dumps(data, ensure_ascii=False)
    structured: Any = None
    if isinstance(data, dict):
        structured = data
    elif isinstance(data, list):
        structured = data if protocol_version in _MODERN_VERSIONS else {"result": data}
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured
    )


def output_schema(schema: dict[str, Any] | None, protocol_version: str) -> dict[str, Any] | None:
    """The ``outputSchema`` a tool advertises on this protocol version.

    Handshake-era versions require an object at the root, and :func:`tool_result` wraps a list
    result as ``{"result": [...]}`` there, so a non-object schema is wrapped the same way.
    """
    if schema is None or protocol_version in _MODERN_VERSIONS or schema.get("type") == "object":
        return schema
    return {
        "type": "object",
        "properties": {"result": schema},
        "required": ["result"],
        "additionalProperties": False,
    }


def tool_entry(tool: ToolInfo, protocol_version: str) -> types.Tool:
    """One ``tools/list`` entry: schemas, and the behaviour hints when the tool declares any."""
    annotations = (
        types.ToolAnnotations(
            read_only_hint=tool.annotations.get("readOnlyHint"),
            destructive_hint=tool.annotations.get("destructiveHint"),
            idempotent_hint=tool.annotations.get("idempotentHint"),
            open_world_hint=tool.annotations.get("openWorldHint"),
        )
        if tool.annotations
        else None
    )
    return types.Tool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.input_schema,
        output_schema=output_schema(tool.output_schema, protocol_version),
        annotations=annotations,
    )


def error_result(exc: VultrinoError) -> types.CallToolResult:
    """An ``isError`` result carrying the error's message (never a secret) and its hint."""
    hint = exc.hint
    message = str(exc).strip() or type(exc).__name__
    if hint and not message.endswith((".", "!", "?")):
        message += "."
    text = f"{message} {hint}" if hint else message
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


# --- the server --------------------------------------------------------------------------------


class _Sender(Protocol):
    async def send(self, item: SessionMessage, /) -> None: ...


class _WireOut(_Sender, Protocol):
    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> bool | None: ...


class _Notifier(Protocol):
    async def send_tool_list_changed(self) -> None: ...


class _VultrinoServer(Server[Any]):
    """The low-level server, declaring ``tools.listChanged`` on every transport.

    The streamable-HTTP session manager builds its ``initialize`` answer from
    ``create_initialization_options()`` with no arguments, so the default lives here.
    """

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


class VultrinoMCP:
    """The MCP surface of one :class:`Vultrino`: handlers, the change watcher, the sessions."""

    def __init__(
        self, v: Vultrino, *, poll_interval: float = POLL_INTERVAL_S, agent: str | None = None
    ) -> None:
        self.v = v
        self.agent = agent  # every request runs under this profile (None: chosen per request)
        self.http = False  # set by build_http_app: each request then names its agent
        self.poll_interval = poll_interval
        self._tools: dict[str, ToolInfo] = {}
        self._bus = InMemorySubscriptionBus()
        self._sessions: dict[int, _Notifier] = {}
        self._last_refresh_error = ""
        self.server = _VultrinoServer(
            SERVER_NAME,
            version=__version__,
            title=SERVER_TITLE,
            instructions=INSTRUCTIONS,
            on_list_tools=self._on_list_tools,
            on_call_tool=self._on_call_tool,
            on_subscriptions_listen=ListenHandler(self._bus),
        )
        self.server.add_notification_handler(
            "notifications/initialized", types.NotificationParams, self._on_initialized
        )

    # -- tool list ------------------------------------------------------------------------------

    def _sync(self) -> bool:
        """Refresh the facade (in a worker thread); True when the tool list changed."""
        changed = self.v.refresh()
        self._tools = {t.name: t for t in self.v.tools()}
        return changed

    async def refresh(self) -> None:
        """Re-read plugins and credentials; announce a changed tool list to every client.

        A failure (a store being rewritten, a broken plugin directory) is logged once and the
        last good tool list stays in force; the next poll tries again.
        """
        try:
            changed = await anyio.to_thread.run_sync(self._sync)
        except VultrinoError as exc:
            self._refresh_failed(str(exc))
            return
        except Exception as exc:
            self._refresh_failed(f"internal error ({type(exc).__name__})")
            logger.debug("refresh failed", exc_info=True)
            return
        self._last_refresh_error = ""
        if changed:
            logger.info("tool list changed; notifying clients")
            await self.broadcast_tools_changed()

    def _refresh_failed(self, message: str) -> None:
        if message != self._last_refresh_error:
            logger.warning("cannot refresh the tool list: %s", message)
            self._last_refresh_error = message

    async def _on_list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        self._track(ctx)
        await self.refresh()
        if not self._tools and self._last_refresh_error:
            raise MCPError(
                code=types.INTERNAL_ERROR,
                message=f"Vultrino cannot list its tools: {self._last_refresh_error}",
            )
        agent = self._agent_for(ctx)
        tools = list(self._tools.values())
        if agent is not None:
            tools = await anyio.to_thread.run_sync(self._agent_tools, agent)
        return types.ListToolsResult(tools=[tool_entry(t, ctx.protocol_version) for t in tools])

    def _agent_tools(self, agent: str) -> list[ToolInfo]:
        try:
            return self.v.as_agent(agent).tools()
        except VultrinoError as exc:
            raise MCPError(code=types.INVALID_REQUEST, message=str(exc)) from None

    def _agent_for(self, ctx: ServerRequestContext[Any, Any]) -> str | None:
        """The agent profile this request runs under: the server's, else the one the HTTP
        bearer token named (see :class:`_BearerAuth`), else None (full access)."""
        if self.agent is not None:
            return self.agent
        if not self.http:
            return None
        scope = getattr(ctx.request, "scope", None)
        state = scope.get("state") if isinstance(scope, dict) else None
        if not isinstance(state, dict) or _AGENT_STATE not in state:
            # Fail closed: a request whose identity did not come through cannot be trusted
            # with the full facade.
            raise MCPError(
                code=types.INVALID_REQUEST,
                message="Vultrino cannot tell which token authorised this request; refused",
            )
        name = state[_AGENT_STATE]
        return name if isinstance(name, str) else None

    # -- tool calls -----------------------------------------------------------------------------

    async def _on_call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        self._track(ctx)
        name = params.name
        agent = self._agent_for(ctx)
        unknown = MCPError(
            code=types.INVALID_PARAMS,
            message=f"Unknown tool: {name!r}. Call tools/list to see the available tools.",
        )
        if name not in self._tools:
            # Perhaps installed a moment ago by another process: look again before refusing.
            await self.refresh()
            if name not in self._tools:
                raise unknown
        scope: AgentScope | None = None
        if agent is not None:
            try:
                scope = await anyio.to_thread.run_sync(
                    lambda: self.v.as_agent(agent, approver=self._approver(ctx))
                )
                visible = await anyio.to_thread.run_sync(scope.profile)
            except VultrinoError as exc:
                return error_result(exc)
            if not visible.sees_tool(name):
                raise unknown  # exactly as for a tool that does not exist
        arguments = dict(params.arguments or {})
        try:
            value = await anyio.to_thread.run_sync(self._call, name, arguments, scope)
        except VultrinoError as exc:
            return error_result(exc)
        except Exception as exc:
            # A bug, not the model's fault. Log where it happened but not the message, which
            # could quote a value; the model gets a generic error.
            logger.error(
                "internal error in tool %s: %s\n%s",
                name,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            return types.CallToolResult(
                content=[
                    types.TextContent(
                        text=f"Vultrino hit an internal error ({type(exc).__name__}) running "
                        f"{name}; tell the user to check the server log."
                    )
                ],
                is_error=True,
            )
        return tool_result(value, ctx.protocol_version)

    def _call(self, name: str, arguments: dict[str, Any], scope: AgentScope | None = None) -> Any:
        if scope is not None:
            return scope.call_tool(name, arguments, source="mcp")
        return self.v.call_tool(name, arguments, source="mcp")

    # -- approvals ------------------------------------------------------------------------------

    def _approver(
        self, ctx: ServerRequestContext[Any, Any]
    ) -> Callable[[ApprovalRequest], Approval]:
        """The approval channel of one call: MCP elicitation when the client declared it.

        Called from the worker thread running the facade, so it hops back to the event loop
        for the round trip to the client.
        """
        # 2026-07-28 sessions have no channel for server-initiated requests (their elicitation
        # is the multi-round-trip `input_required` flow, not supported here yet).
        supported = ctx.protocol_version not in _MODERN_VERSIONS and (
            ctx.session.check_client_capability(
                types.ClientCapabilities(elicitation=types.ElicitationCapability())
            )
        )

        def ask(request: ApprovalRequest) -> Approval:
            if not supported:
                return "unavailable"
            return anyio.from_thread.run(self._elicit, ctx, request)

        return ask

    async def _elicit(
        self, ctx: ServerRequestContext[Any, Any], request: ApprovalRequest
    ) -> Approval:
        try:
            with anyio.fail_after(APPROVAL_TIMEOUT_S):
                result = await ctx.session.elicit_form(
                    request.message(), APPROVAL_SCHEMA, related_request_id=ctx.request_id
                )
        except TimeoutError:
            logger.warning("no answer to an approval request within %s s", APPROVAL_TIMEOUT_S)
            return "declined"
        except (MCPError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            logger.warning("cannot ask the client for approval (%s)", type(exc).__name__)
            return "unavailable"
        content = result.content or {}
        if result.action == "accept" and content.get("approve") is True:
            return "granted"
        return "declined"

    # -- change notifications -------------------------------------------------------------------

    async def _on_initialized(
        self, ctx: ServerRequestContext[Any, Any], params: types.NotificationParams
    ) -> None:
        self._track(ctx)

    def _track(self, ctx: ServerRequestContext[Any, Any]) -> None:
        """Remember a handshake-era connection so tool-list changes reach it.

        Change notifications go on the connection's standalone channel. The SDK hands handlers
        a per-request session; its connection is what lives as long as the client, and its exit
        stack tells us when the client is gone (HTTP sessions come and go).
        """
        if ctx.protocol_version in _MODERN_VERSIONS:
            return  # 2026-07-28: changes travel on subscriptions/listen streams instead
        connection = getattr(ctx.session, "_connection", None)
        target: _Notifier = connection if isinstance(connection, Connection) else ctx.session
        key = id(target)
        if key in self._sessions:
            return
        self._sessions[key] = target
        if isinstance(target, Connection):
            target.exit_stack.callback(self._sessions.pop, key, None)

    async def broadcast_tools_changed(self) -> None:
        for target in list(self._sessions.values()):
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await target.send_tool_list_changed()
        await self._bus.publish(ToolsListChanged())

    async def watch(self) -> None:
        """Poll the facade for changes made by other processes and announce them."""
        while True:
            await self.refresh()
            await anyio.sleep(self.poll_interval)


# --- stdio -------------------------------------------------------------------------------------


DRAIN_S = 30.0
"""How long the stdio server keeps answering in-flight requests after stdin closes."""


class _StdioRelay:
    """Sits between the stdio transport and the server, for two things the SDK does not do.

    - A line that is not a JSON-RPC message is answered with a JSON-RPC error and
      ``"id": null`` (the SDK drops it silently). The line is never echoed or logged.
    - When stdin closes, requests already read are still answered before the server stops
      (the SDK cancels them), so ``printf '...' | vultrino mcp`` loses nothing. The wait is
      bounded by :data:`DRAIN_S`; ``subscriptions/listen`` streams are not waited for.
    """

    def __init__(
        self, drain_s: float = DRAIN_S, *, answered: Sequence[types.RequestId] = ()
    ) -> None:
        self._drain_s = drain_s
        self._answered = list(answered)  # by the front: the server's own answers are dropped
        self._pending: set[types.RequestId] = set()
        self._idle = anyio.Event()
        self._idle.set()

    def _start(self, request_id: types.RequestId) -> None:
        self._pending.add(request_id)
        self._idle = anyio.Event()

    def _finish(self, request_id: types.RequestId | None) -> None:
        if request_id is None:
            return
        self._pending.discard(request_id)
        if not self._pending:
            self._idle.set()

    async def inbound(
        self,
        source: AsyncIterable[SessionMessage | Exception],
        sink: MemoryObjectSendStream[SessionMessage | Exception],
        wire: _Sender,
    ) -> None:
        async with sink:
            async for item in source:
                if isinstance(item, Exception):
                    await self._answer_bad_line(item, wire)
                    continue
                msg = item.message
                if isinstance(msg, types.JSONRPCRequest) and msg.method != "subscriptions/listen":
                    self._start(msg.id)
                elif (
                    isinstance(msg, types.JSONRPCNotification)
                    and msg.method == "notifications/cancelled"
                    and isinstance(msg.params, dict)
                ):
                    self._finish(msg.params.get("requestId"))  # cancelled: never answered
                await sink.send(item)
            with anyio.move_on_after(self._drain_s):
                while self._pending:
                    await self._idle.wait()

    async def outbound(
        self, source: MemoryObjectReceiveStream[SessionMessage], wire: _WireOut
    ) -> None:
        async with wire, source:
            async for item in source:
                msg = item.message
                if isinstance(msg, (types.JSONRPCResponse, types.JSONRPCError)):
                    self._finish(msg.id)
                    if self._answered_by_front(msg):
                        continue
                await wire.send(item)

    def _answered_by_front(self, msg: types.JSONRPCResponse | types.JSONRPCError) -> bool:
        """Whether the front already answered this request (each id is dropped once)."""
        if msg.id is None:
            return False
        for i, rid in enumerate(self._answered):
            if rid == msg.id and type(rid) is type(msg.id):
                del self._answered[i]
                if isinstance(msg, types.JSONRPCError):
                    # The front's answer was a result: it and the SDK disagree. Say so.
                    logger.warning(
                        "the SDK refused request %r that the start-up front answered (%s)",
                        msg.id,
                        msg.error.message,
                    )
                return True
        return False

    @staticmethod
    async def _answer_bad_line(exc: Exception, wire: _Sender) -> None:
        not_json = isinstance(exc, ValidationError) and any(
            e.get("type") == "json_invalid" for e in exc.errors()
        )
        code, what = (
            (types.PARSE_ERROR, "Parse error: the line is not JSON")
            if not_json
            else (types.INVALID_REQUEST, "Invalid request: the line is not a JSON-RPC message")
        )
        logger.warning("answered a stdin line that is not a JSON-RPC message (%s)", code)
        error = types.JSONRPCError(
            jsonrpc="2.0",
            id=None,
            error=types.ErrorData(
                code=code, message=f"{what}; send one JSON-RPC 2.0 message per line"
            ),
        )
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await wire.send(SessionMessage(error))


class _FrontLines:
    """The SDK transport's stdin: the lines the front read, in order, from the first one."""

    def __init__(self, front: StdioFront) -> None:
        self._front = front

    def __aiter__(self) -> _FrontLines:
        return self

    async def __anext__(self) -> str:
        line = await anyio.to_thread.run_sync(self._front.get, abandon_on_cancel=True)
        if line is None:
            raise StopAsyncIteration
        return line


async def _serve_stdio(app: VultrinoMCP, front: StdioFront, wire: Wire) -> None:
    # From here on only the SDK writes; it still reads every line from the first, and its own
    # answers to what the front already answered are dropped.
    relay = _StdioRelay(answered=front.hand_over())
    stdin: Any = _FrontLines(front)
    async with (
        stdio_server(stdin=stdin, stdout=anyio.wrap_file(wire.stdout)) as (
            read_stream,
            write_stream,
        ),
        anyio.create_task_group() as tg,
    ):
        to_server, from_wire = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        to_wire, from_server = anyio.create_memory_object_stream[SessionMessage](0)
        tg.start_soon(relay.inbound, read_stream, to_server, write_stream)
        tg.start_soon(relay.outbound, from_server, write_stream)
        watching = anyio.CancelScope()

        async def watch() -> None:
            with watching:
                await app.watch()

        tg.start_soon(watch)
        await app.server.run(from_wire, to_wire, app.server.create_initialization_options())
        # The relays end on their own once the server closed its streams; cutting them
        # short could drop the last answers.
        watching.cancel()


def serve_stdio(v: Vultrino, *, agent: str | None = None) -> None:
    """Serve MCP on stdin/stdout until the client closes stdin.

    The store is unlocked first (the password comes from ``VULTRINO_PASSWORD`` or
    ``VULTRINO_PASSWORD_FILE``; stdin is the protocol, so there is no prompt), so a missing or
    wrong password fails here with a clear error before any protocol traffic. The opening
    messages are answered by the stdlib-only front (``vultrino._mcp_front``), as in
    ``vultrino mcp``.
    """
    from vultrino import _mcp_front

    _mcp_front.serve_stdio(v, agent=agent)


def serve_stdio_after_front(
    v: Vultrino, front: StdioFront, wire: Wire, *, agent: str | None = None
) -> None:
    """Serve the rest of the stream ``front`` has been reading, on the SDK server.

    ``v`` is unlocked and ``front`` is ready (see :func:`vultrino._mcp_front.serve_stdio`).
    """
    app = VultrinoMCP(v, agent=agent)
    anyio.run(_serve_stdio, app, front, wire)


# --- streamable HTTP ---------------------------------------------------------------------------


def ensure_http_token(home: Path) -> tuple[str, bool]:
    """The bearer token of ``vultrino mcp --http``: read ``home/mcp-token``, or create it.

    Returns ``(token, created)``. A new token is written with mode 0600 (never replaced if
    another process won the race); the caller prints it once, to stderr. A token file that
    others can read is refused rather than trusted.
    """
    path = Path(home) / TOKEN_FILE
    try:
        return _read_token(path), False
    except FileNotFoundError:
        pass
    Home(Path(home)).ensure()
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path), False
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create the MCP token file ({exc.strerror})") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    return token, True


def _read_token(path: Path) -> str:
    st = path.stat()  # FileNotFoundError propagates: the caller creates the file
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{path}: the MCP token file is readable by other users "
            f"(mode {st.st_mode & 0o777:o}); run `chmod 600 {path}`"
        )
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the MCP token file ({exc})") from exc
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError(
            f"{path}: the MCP token must be at least 16 characters without spaces; "
            "delete the file to have a new one generated"
        )
    return token


class _BearerAuth:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>``.

    The server's token (``mcp-token``) grants full access, unless the server was started for
    one agent; an agent's token (``vultrino agent add``) runs the request under that agent's
    profile, named in ``scope["state"]``. Tokens are compared in constant time.
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str,
        *,
        agent_for_token: Callable[[str], str | None] | None = None,
        only_agent: str | None = None,
    ) -> None:
        self.app = app
        self._token = token.encode()
        self._agent_for_token = agent_for_token
        self._only_agent = only_agent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        who = await self._identify(scope)
        if who is not False:
            # A fresh dict: the server may hand every request a copy of one shared state.
            scope["state"] = {**scope.get("state", {}), _AGENT_STATE: who}
        if who is False:
            body = json.dumps(
                {
                    "error": "unauthorized",
                    "message": "send `Authorization: Bearer <token>`; the token is in "
                    f"$VULTRINO_HOME/{TOKEN_FILE}",
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="vultrino"'),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    async def _identify(self, scope: Scope) -> str | bool | None:
        """False when refused; None for the server's token; an agent's name for its token."""
        presented = [v for k, v in scope.get("headers", ()) if k == b"authorization"]
        if len(presented) != 1:
            return False
        scheme, _, credentials = bytes(presented[0]).partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        credentials = credentials.strip()
        if self._only_agent is None and hmac.compare_digest(credentials, self._token):
            return None
        if self._agent_for_token is None or not credentials:
            return False
        try:
            text = credentials.decode("ascii")
        except UnicodeDecodeError:
            return False
        lookup = self._agent_for_token
        try:
            name = await anyio.to_thread.run_sync(lambda: lookup(text))
        except VultrinoError as exc:
            logger.warning("cannot check an agent token: %s", exc)
            return False
        if name is None or (self._only_agent is not None and name != self._only_agent):
            return False
        return name


def build_http_app(app: VultrinoMCP, token: str) -> ASGIApp:
    """The ASGI application of ``serve_http``: bearer auth around the SDK's session manager.

    Agents' tokens are accepted too (each request then runs under its agent's profile); when
    ``app`` serves one agent, only that agent's token is."""
    if not token:
        raise ConfigError("the MCP HTTP server needs a non-empty bearer token")
    app.http = True
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
    manager = StreamableHTTPSessionManager(app=app.server, security_settings=security)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with manager.run(), anyio.create_task_group() as tg:
            tg.start_soon(app.watch)
            yield
            tg.cancel_scope.cancel()

    # An ASGI-app instance (not a function) as the endpoint, so every HTTP method reaches it.
    endpoint = StreamableHTTPASGIApp(manager)
    starlette = Starlette(routes=[Route(HTTP_PATH, endpoint=endpoint)], lifespan=lifespan)
    return _BearerAuth(
        starlette, token, agent_for_token=app.v.agent_for_token, only_agent=app.agent
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1" if host == "localhost" else host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); pick another port with --port"
        ) from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


def serve_http(
    v: Vultrino,
    *,
    host: str = "127.0.0.1",
    port: int,
    token: str,
    ready: Callable[[str], None] | None = None,
    agent: str | None = None,
) -> None:
    """Serve MCP over streamable HTTP at ``http://host:port/mcp`` until interrupted.

    Only loopback addresses are accepted. Every request must carry ``Authorization: Bearer
    <token>`` (compared in constant time), or an agent's token; others get 401. With
    ``agent``, only that agent's token is accepted. ``port=0`` picks a free port.
    ``ready`` receives the URL once the socket listens (default: one line on stderr).
    """
    import uvicorn

    if host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"the MCP HTTP server only listens on the loopback interface; got host {host!r} "
            f"(use one of {', '.join(LOOPBACK_HOSTS)})"
        )
    v.unlock()
    if agent is not None:
        v.agent_profile(agent)  # an unknown agent fails now
    app = VultrinoMCP(v, agent=agent)
    asgi = build_http_app(app, token)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    url = f"http://{'[::1]' if host == '::1' else host}:{bound}{HTTP_PATH}"
    config = uvicorn.Config(
        asgi, log_config=None, access_log=False, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            while not server.started:
                if server.should_exit:
                    break
                await anyio.sleep(0.01)
            if server.started:
                (ready or _announce)(url)

    try:
        anyio.run(run)
    finally:
        sock.close()


def _announce(url: str) -> None:
    print(f"Vultrino MCP server listening on {url}", file=sys.stderr, flush=True)


# --- client configuration ----------------------------------------------------------------------


def _server_command() -> list[str]:
    """How a host should start this Vultrino: the ``vultrino`` executable next to this Python
    (hosts such as Claude Desktop do not inherit the shell's PATH), else ``python -m vultrino``."""
    scripts = Path(sys.executable).parent
    for candidate in (scripts / "vultrino", scripts / "vultrino.exe"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    found = shutil.which("vultrino")
    if found:
        return [str(Path(found).absolute())]
    return [sys.executable, "-m", "vultrino"]


CLIENT_FORMS = ("claude", "vscode", "generic")


def client_config(
    home: Path,
    *,
    form: str = "claude",
    http_port: int | None = None,
    command: Sequence[str] | None = None,
    name: str = "vultrino",
    token: str | None = None,
    agent: str | None = None,
) -> dict[str, Any]:
    """The ready-to-paste client configuration for ``vultrino mcp config``.

    ``form="claude"`` is Claude Desktop's ``claude_desktop_config.json`` (``mcpServers``; also
    read by Claude Code's ``.mcp.json``, Cursor and others). ``form="vscode"`` is VS Code's
    ``.vscode/mcp.json`` (``servers``, each with a ``type``). ``form="generic"`` is a plain
    description any host's settings can be filled from. With ``http_port`` the entry points at
    ``vultrino mcp --http`` instead of spawning a process, and carries ``token`` (the HTTP
    bearer token; a placeholder naming the token file when None). Never contains the store
    password: it is read from the file named by ``VULTRINO_PASSWORD_FILE`` (see
    :func:`client_config_note`). With ``agent`` the server is started with ``--agent``
    (stdio), or the placeholder names the agent's token (HTTP), which is never stored.
    """
    if form not in CLIENT_FORMS:
        raise ConfigError(
            f"unknown client configuration form {form!r}; use one of {', '.join(CLIENT_FORMS)}"
        )
    home = Path(home).expanduser().absolute()
    argv = list(command) if command is not None else _server_command()
    env = {
        "VULTRINO_HOME": str(home),
        "VULTRINO_PASSWORD_FILE": str(home / "password"),
    }
    if http_port is not None:
        url = f"http://127.0.0.1:{http_port}{HTTP_PATH}"
        if agent is not None:
            bearer = f"<the token `vultrino agent add {agent}` printed>"
        elif token is not None:
            bearer = token
        else:
            bearer = f"<contents of {home / TOKEN_FILE}>"
        headers = {"Authorization": f"Bearer {bearer}"}
        if form == "claude":
            return {"mcpServers": {name: {"type": "http", "url": url, "headers": headers}}}
        if form == "vscode":
            return {"servers": {name: {"type": "http", "url": url, "headers": headers}}}
        return {"name": name, "transport": "streamable-http", "url": url, "headers": headers}
    args = [*argv[1:], "mcp", *(["--agent", agent] if agent is not None else [])]
    if form == "claude":
        return {"mcpServers": {name: {"command": argv[0], "args": args, "env": env}}}
    if form == "vscode":
        return {"servers": {name: {"type": "stdio", "command": argv[0], "args": args, "env": env}}}
    return {
        "name": name,
        "transport": "stdio",
        "command": argv[0],
        "args": args,
        "env": env,
    }


def client_config_note(home: Path) -> str:
    """How the store password reaches the server, for ``vultrino mcp config`` to print."""
    home = Path(home).expanduser().absolute()
    pw = home / "password"
    return (
        "The MCP server unlocks the credential store once at start. Its stdin is the protocol, so "
        "it cannot prompt: it reads the password from the file named by VULTRINO_PASSWORD_FILE "
        f"(above: {pw}), or from VULTRINO_PASSWORD. Create the file so only you can read it, "
        f"e.g.:\n  (umask 077; read -rs PW && printf '%s' \"$PW\" > '{pw}'; unset PW)\n"
        "Never put the password itself in a client configuration file."
    )
