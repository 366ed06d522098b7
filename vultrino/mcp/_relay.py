"""The SDK side of the stdio transport, for clients that do not open with ``initialize``.

:func:`serve_after_front` is what ``vultrino.mcp.stdio.serve_stdio`` calls when the front
(``vultrino.mcp._front``) found that the client's first JSON message is not a plain
``initialize`` (a 2026-07-28 client, say): the SDK's stdio transport reads every line from that
message on, and :class:`_StdioRelay` sits between it and the server for what the SDK does not
do (answering lines that are not JSON-RPC, answering in-flight requests after stdin closes).

Only ``vultrino.mcp.stdio`` imports this module, lazily: importing it imports the SDK.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterable
from typing import Any, Protocol

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import types
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from vultrino.core import Vultrino
from vultrino.mcp._front import StdioFront, Wire
from vultrino.mcp._session import DRAIN_S
from vultrino.mcp.server import VultrinoMCP

__all__ = ["DRAIN_S", "serve_after_front"]

logger = logging.getLogger("vultrino.mcp")


class _Sender(Protocol):
    async def send(self, item: SessionMessage, /) -> None: ...


class _WireOut(_Sender, Protocol):
    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> bool | None: ...


class _StdioRelay:
    """Sits between the stdio transport and the server, for two things the SDK does not do.

    - A line that is not a JSON-RPC message is answered with a JSON-RPC error and
      ``"id": null`` (the SDK drops it silently). The line is never echoed or logged.
    - When stdin closes, requests already read are still answered before the server stops
      (the SDK cancels them), so ``printf '...' | vultrino mcp`` loses nothing. The wait is
      bounded by :data:`DRAIN_S`; ``subscriptions/listen`` streams are not waited for.
    """

    def __init__(self, drain_s: float = DRAIN_S) -> None:
        self._drain_s = drain_s
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
                await wire.send(item)

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
    """The SDK transport's stdin: the lines the front read, in order, from the client's first
    JSON message on."""

    def __init__(self, front: StdioFront) -> None:
        self._front = front

    def __aiter__(self) -> _FrontLines:
        return self

    async def __anext__(self) -> str:
        line = await anyio.to_thread.run_sync(self._front.get, abandon_on_cancel=True)
        if line is None:
            raise StopAsyncIteration
        return line


async def _run(app: VultrinoMCP, front: StdioFront, wire: Wire) -> None:
    relay = _StdioRelay()
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


def serve_after_front(
    v: Vultrino, front: StdioFront, wire: Wire, *, agent: str | None = None
) -> None:
    """Serve the rest of the stream ``front`` has been reading, on the SDK server.

    ``v`` is unlocked (see :func:`vultrino.mcp.stdio.serve_stdio`).
    """
    app = VultrinoMCP(v, agent=agent)
    anyio.run(_run, app, front, wire)
