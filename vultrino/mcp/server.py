"""The MCP server core: the facade's tools as an MCP server, whatever the transport.

:class:`VultrinoMCP` wraps one :class:`Vultrino` in the SDK's low-level ``Server`` (tool names
and schemas are data from plugin manifests, not Python functions): its ``tools/list`` and
``tools/call`` handlers, the approval channel, and the watcher that announces a changed tool
list. :func:`tool_entry`, :func:`tool_result` and :func:`error_result` turn the facade's tools,
results and errors into MCP's. The transports run it: ``vultrino.mcp.stdio`` and
``vultrino.mcp.http``.

Contract (docs/mcp.md):

- ``tools/list`` is the facade's tool list, re-read on every call; an unknown tool name in
  ``tools/call`` is a JSON-RPC error (-32602). Every other failure of a call is a tool result with
  ``isError: true``, its message followed by the error's ``hint`` (``vultrino.errors``), so the
  model can fix its call.
- Results: a string is text content; a map becomes ``structuredContent`` plus its JSON as text;
  a list likewise (wrapped as ``{"result": [...]}`` on handshake-era protocol versions, whose
  ``structuredContent`` must be an object); any other value is its JSON as text.
- A background task (:meth:`VultrinoMCP.watch`, started by the transport) polls
  ``Vultrino.refresh`` and, when the tool list changed (a plugin installed, removed or reloaded,
  a credential added), sends ``notifications/tools/list_changed`` to every handshake-era session
  and publishes it to ``subscriptions/listen`` streams (2026-07-28 era).
- Facade calls run in worker threads, so calls are concurrent; the facade and the runtime
  serialise what must be serialised.
- Agent profiles (docs/agents.md): with ``agent=`` (``vultrino mcp --agent NAME``) every request
  runs under that profile; over HTTP an agent's own bearer token selects its profile per
  request (the transport names it in the request's ASGI state under :data:`AGENT_STATE`). The
  profile is enforced by the facade (:meth:`Vultrino.as_agent`); this module only picks the
  agent and supplies the approval channel: ``elicitation/create`` when the client declared the
  ``elicitation`` capability, else the call is refused with a clear message.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from mcp import types
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError

from vultrino._version import __version__
from vultrino.core import ToolInfo, Vultrino
from vultrino.errors import VultrinoError
from vultrino.mcp import _logs, _prompts, _resources, _shapes
from vultrino.mcp._identity import INSTRUCTIONS, SERVER_NAME, SERVER_TITLE
from vultrino.mcp._tools import (
    ACTION_THREADS,
    APPROVAL_SCHEMA,
    APPROVAL_TIMEOUT_S,
    POLL_INTERVAL_S,
    RpcError,
    ToolDesk,
    unknown_tool,
)
from vultrino.policy.approval import Approval, ApprovalRequest

__all__ = [
    "AGENT_STATE",
    "MODERN_VERSIONS",
    "POLL_INTERVAL_S",
    "VultrinoMCP",
    "error_result",
    "output_schema",
    "tool_entry",
    "tool_result",
]

logger = logging.getLogger("vultrino.mcp")


AGENT_STATE = "vultrino_agent"
"""The ASGI ``scope["state"]`` key naming the agent an HTTP request runs under."""

MODERN_VERSIONS = frozenset(types.version.MODERN_PROTOCOL_VERSIONS)
"""The 2026-07-28-era protocol versions (no handshake, no server-initiated requests); the same
as ``vultrino.mcp._identity.MODERN_VERSIONS`` (tested)."""


# --- results ---------------------------------------------------------------------------------
# The shapes live in vultrino.mcp._shapes (plain JSON data, which the stdio server writes as it
# is); here they become the SDK's models.


def tool_result(value: Any, protocol_version: str) -> types.CallToolResult:
    """The ``CallToolResult`` for a facade result (see ``vultrino.mcp._shapes``)."""
    return types.CallToolResult.model_validate(
        _shapes.tool_result(value, protocol_version), by_name=False
    )


output_schema = _shapes.output_schema


def tool_entry(tool: ToolInfo, protocol_version: str) -> types.Tool:
    """One ``tools/list`` entry: schemas, and the behaviour hints when the tool declares any."""
    return types.Tool.model_validate(_shapes.tool_entry(tool, protocol_version), by_name=False)


def error_result(exc: VultrinoError) -> types.CallToolResult:
    """An ``isError`` result carrying the error's message (never a secret) and its hint."""
    return types.CallToolResult.model_validate(_shapes.error_result(exc), by_name=False)


def _mcp_error(exc: RpcError) -> MCPError:
    return MCPError(code=exc.code, message=exc.message, data=exc.data)


# --- the server --------------------------------------------------------------------------------


class _Notifier(Protocol):
    async def send_tool_list_changed(self) -> None: ...

    async def send_prompt_list_changed(self) -> None: ...

    async def send_resource_list_changed(self) -> None: ...


class _VultrinoServer(Server[Any]):
    """The low-level server, declaring ``listChanged`` for every list on every transport.

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
            notification_options
            or NotificationOptions(
                tools_changed=True, prompts_changed=True, resources_changed=True
            ),
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
        # Over HTTP, who approves gated calls: `vultrino serve` sets its approvals inbox (a
        # person decides there, not the client), as the approver of the caller that the
        # request's Authorization header names (so the inbox knows whose call it holds, and a
        # key cannot approve its own); None: such calls are refused.
        self.http_approver: Callable[[str | None], Callable[[ApprovalRequest], Approval]] | None = (
            None
        )
        self.poll_interval = poll_interval
        self.desk = ToolDesk(v)
        self._bus = InMemorySubscriptionBus()
        self._sessions: dict[int, _Notifier] = {}
        self._action_threads: anyio.CapacityLimiter | None = None  # made on the event loop
        self.server = _VultrinoServer(
            SERVER_NAME,
            version=__version__,
            title=SERVER_TITLE,
            instructions=INSTRUCTIONS,
            on_list_tools=self._on_list_tools,
            on_call_tool=self._on_call_tool,
            on_list_prompts=self._on_list_prompts,
            on_get_prompt=self._on_get_prompt,
            on_completion=self._on_completion,
            on_list_resources=self._on_list_resources,
            on_read_resource=self._on_read_resource,
            on_subscriptions_listen=ListenHandler(self._bus),
        )
        # Registered directly: the constructor's on_set_logging_level warns that 2026-07-28
        # dropped logging/setLevel; handshake-era clients still use it.
        self.server.add_request_handler(
            "logging/setLevel", types.SetLevelRequestParams, self._on_set_level
        )
        self._log_sinks: dict[int, _logs.LogSink] = {}  # per connection (see _track)
        _logs.install()
        self.server.add_notification_handler(
            "notifications/initialized", types.NotificationParams, self._on_initialized
        )

    # -- tool list ------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Re-read plugins and credentials; announce a changed tool list to every client.

        A failure is logged once and the last good tool list stays in force
        (:meth:`ToolDesk.refresh`); the next poll tries again.
        """
        if await anyio.to_thread.run_sync(self.desk.refresh):
            logger.info("tool list changed; notifying clients")
            await self.broadcast_tools_changed()

    async def _on_list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        self._track(ctx)
        await self.refresh()
        agent = self._agent_for(ctx)
        try:
            tools = await anyio.to_thread.run_sync(
                self.desk.list_tools, agent, ctx.protocol_version
            )
        except RpcError as exc:
            raise MCPError(code=exc.code, message=exc.message) from None
        return types.ListToolsResult.model_validate({"tools": tools}, by_name=False)

    def _agent_for(self, ctx: ServerRequestContext[Any, Any]) -> str | None:
        """The agent profile this request runs under: the server's, else the one the HTTP
        bearer token named (see ``vultrino.mcp.http``), else None (full access)."""
        if self.agent is not None:
            return self.agent
        if not self.http:
            return None
        scope = getattr(ctx.request, "scope", None)
        state = scope.get("state") if isinstance(scope, dict) else None
        if not isinstance(state, dict) or AGENT_STATE not in state:
            # Fail closed: a request whose identity did not come through cannot be trusted
            # with the full facade.
            raise MCPError(
                code=types.INVALID_REQUEST,
                message="Vultrino cannot tell which token authorised this request; refused",
            )
        name = state[AGENT_STATE]
        return name if isinstance(name, str) else None

    # -- tool calls -----------------------------------------------------------------------------

    async def _on_call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        self._track(ctx)
        name = params.name
        agent = self._agent_for(ctx)
        if not self.desk.known(name):
            # Perhaps installed a moment ago by another process: look again before refusing.
            await self.refresh()
            if not self.desk.known(name) and agent is None:
                raise _mcp_error(unknown_tool(name))  # an agent's call goes on: the pipeline
                # refuses and records it
        approver = self._approver(ctx) if agent is not None else None
        limiter = None  # anyio's default pool
        if self.desk.runs_an_action(name):
            if self._action_threads is None:
                self._action_threads = anyio.CapacityLimiter(ACTION_THREADS)
            limiter = self._action_threads

        sink = self._sink_for(ctx)

        def call() -> dict[str, Any]:
            with _logs.routed(sink):
                return self.desk.call(
                    name,
                    dict(params.arguments or {}),
                    agent=agent,
                    approver=approver,
                    protocol_version=ctx.protocol_version,
                )

        try:
            result = await anyio.to_thread.run_sync(call, limiter=limiter)
        except RpcError as exc:
            raise _mcp_error(exc) from None
        return types.CallToolResult.model_validate(result, by_name=False)

    # -- prompts and completion -----------------------------------------------------------------

    async def _on_list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        self._track(ctx)
        agent = self._agent_for(ctx)
        prompts = await self._off_loop(_prompts.list_prompts, self.desk, agent)
        return types.ListPromptsResult.model_validate({"prompts": prompts}, by_name=False)

    async def _on_get_prompt(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        self._track(ctx)
        agent = self._agent_for(ctx)
        result = await self._off_loop(
            _prompts.get_prompt, self.desk, params.name, dict(params.arguments or {}), agent
        )
        return types.GetPromptResult.model_validate(result, by_name=False)

    async def _on_completion(
        self, ctx: ServerRequestContext[Any, Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        self._track(ctx)
        agent = self._agent_for(ctx)
        ref = params.ref.model_dump(by_alias=True, exclude_none=True)
        argument = params.argument.model_dump(by_alias=True)
        context = dict(params.context.arguments or {}) if params.context is not None else {}
        result = await self._off_loop(_prompts.complete, self.desk, ref, argument, context, agent)
        return types.CompleteResult.model_validate(result, by_name=False)

    async def _off_loop(
        self, fn: Callable[..., dict[str, Any]] | Callable[..., Any], *args: Any
    ) -> Any:
        """``fn(*args)`` in a worker thread; an :class:`RpcError` becomes the JSON-RPC error."""
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except RpcError as exc:
            raise _mcp_error(exc) from None

    # -- logging --------------------------------------------------------------------------------

    async def _on_set_level(
        self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        self._track(ctx)
        sink = self._sink_for(ctx)
        if sink is None:
            raise MCPError(
                code=types.INVALID_REQUEST,
                message="logging/setLevel is a handshake-era method; 2026-07-28 requests ask "
                "for log messages in their _meta instead",
            )
        sink.set_level(params.level)
        return types.EmptyResult()

    def _sink_for(self, ctx: ServerRequestContext[Any, Any]) -> _logs.LogSink | None:
        """This request's log channel (handshake era only): the connection's level, entries
        sent on this request's own stream. The connection's level lives as long as it."""
        if ctx.protocol_version in MODERN_VERSIONS:
            return None
        connection = getattr(ctx.session, "_connection", None)
        target: Any = connection if isinstance(connection, Connection) else ctx.session
        key = id(target)
        shared = self._log_sinks.get(key)
        if shared is None:
            shared = self._log_sinks[key] = _logs.LogSink(lambda params: None)
            if isinstance(target, Connection):
                target.exit_stack.callback(self._log_sinks.pop, key, None)
        token = anyio.lowlevel.current_token()
        session = ctx.session
        request_id = ctx.request_id

        async def deliver(params: dict[str, Any]) -> None:
            with warnings.catch_warnings():
                # deprecated for 2026-07-28 only, and this is a handshake-era connection
                warnings.simplefilter("ignore")
                sent = session.send_log_message(
                    params["level"],
                    params["data"],
                    logger=params["logger"],
                    related_request_id=request_id,
                )
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await sent

        def send(params: dict[str, Any]) -> None:
            # RuntimeError: logged on the event loop itself, no thread to hop from
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run(deliver, params, token=token)

        return shared.via(send)

    # -- resources (the credentials; vultrino.mcp._resources) ----------------------------------

    async def _on_list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        self._track(ctx)
        agent = self._agent_for(ctx)
        try:
            rows = await anyio.to_thread.run_sync(_resources.list_resources, self.v, agent)
        except RpcError as exc:
            raise _mcp_error(exc) from None
        return types.ListResourcesResult.model_validate({"resources": rows}, by_name=False)

    async def _on_read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        self._track(ctx)
        agent = self._agent_for(ctx)
        try:
            result = await anyio.to_thread.run_sync(
                _resources.read_resource, self.v, agent, str(params.uri)
            )
        except RpcError as exc:
            raise _mcp_error(exc) from None
        return types.ReadResourceResult.model_validate(result, by_name=False)

    # -- approvals ------------------------------------------------------------------------------

    def _approver(
        self, ctx: ServerRequestContext[Any, Any]
    ) -> Callable[[ApprovalRequest], Approval]:
        """The approval channel of one call: MCP elicitation when the client declared it, over
        stdio only.

        Over HTTP the client holding the token is a program, usually the agent itself: an
        elicitation it answers is the agent approving its own call, so gated calls are refused
        there (until an approver the agent does not drive is configured). Called from the
        worker thread running the facade, so it hops back to the event loop for the round trip
        to the client.
        """
        # 2026-07-28 sessions have no channel for server-initiated requests (their elicitation
        # is the multi-round-trip `input_required` flow, not supported here yet).
        supported = (
            not self.http
            and ctx.protocol_version not in MODERN_VERSIONS
            and (
                ctx.session.check_client_capability(
                    types.ClientCapabilities(elicitation=types.ElicitationCapability())
                )
            )
        )

        if self.http and self.http_approver is not None:
            scope = getattr(ctx.request, "scope", None)
            headers = scope.get("headers", ()) if isinstance(scope, dict) else ()
            authorization = next(
                (bytes(v).decode("latin-1") for k, v in headers if k == b"authorization"), None
            )
            return self.http_approver(authorization)

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
        if ctx.protocol_version in MODERN_VERSIONS:
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
        """Tools changed, and with them the prompts (one per tool) and the resources (the
        credentials: the home changed)."""
        for target in list(self._sessions.values()):
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await target.send_tool_list_changed()
                await target.send_prompt_list_changed()
                await target.send_resource_list_changed()
        await self._bus.publish(ToolsListChanged())
        await self._bus.publish(PromptsListChanged())
        await self._bus.publish(ResourcesListChanged())

    async def watch(self) -> None:
        """Poll the facade for changes made by other processes and announce them."""
        while True:
            await self.refresh()
            await anyio.sleep(self.poll_interval)
