"""The streamable-HTTP transport: ``vultrino mcp --http``, on the loopback interface only.

:func:`serve_http` runs :func:`build_http_app` (the SDK's session manager behind
:class:`_BearerAuth`) on uvicorn at ``http://127.0.0.1:PORT/mcp``. Every request carries
``Authorization: Bearer <token>``: the server's token (``$VULTRINO_HOME/mcp-token``, made by
:func:`ensure_http_token`, mode 0600) grants full access; an agent's token (``vultrino agent
add``) runs the request under that agent's profile. Others get 401.

::

    token, created = ensure_http_token(home)        # $VULTRINO_HOME/mcp-token, mode 0600
    serve_http(v, port=8765, token=token)           # `vultrino mcp --http`
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import socket
import sys
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import anyio
import anyio.to_thread
from mcp.server.streamable_http import (
    EventCallback,
    EventId,
    EventMessage,
    EventStore,
    StreamId,
)
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import JSONRPCMessage
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vultrino._fs import atomic_write
from vultrino.core import Vultrino
from vultrino.errors import ConfigError, VultrinoError
from vultrino.mcp.server import AGENT_STATE, VultrinoMCP
from vultrino.paths import Home

__all__ = [
    "HTTP_PATH",
    "LOOPBACK_HOSTS",
    "MAX_EVENTS",
    "RETRY_MS",
    "MAX_REQUEST_HEAD",
    "TOKEN_FILE",
    "build_http_app",
    "http_protocol",
    "MemoryEventStore",
    "ensure_http_token",
    "mountable_http_app",
    "serve_http",
]

logger = logging.getLogger("vultrino.mcp")

HTTP_PATH = "/mcp"
TOKEN_FILE = "mcp-token"  # noqa: S105 - a file name, not a secret
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


# --- the request head, bounded --------------------------------------------------------------
# uvicorn's httptools protocol (the C parser) keeps a request's URL and header values growing
# for as long as the client sends them: one connection, before any key is looked at, held
# 393 MiB for a 200 MiB header and a CPU core for two minutes (the parts are joined again for
# every piece). h11 bounds a head at `h11_max_incomplete_event_size`; this does the same for
# httptools, and neither bounds how long a head may take to arrive (slowloris), which the
# deadline below does.

#: The most bytes a request's line and headers may take (h11 is given the same bound).
MAX_REQUEST_HEAD = 64 * 1024
#: The default of ``[server] header_timeout_s``: seconds a request head may take to arrive.
HEADER_TIMEOUT_S = 30.0


def http_protocol(header_timeout_s: float = HEADER_TIMEOUT_S) -> type[asyncio.Protocol] | str:
    """The HTTP/1.1 protocol for ``uvicorn.Config(http=...)``: httptools (where installed)
    with a request head bounded at :data:`MAX_REQUEST_HEAD` bytes (else 431) and
    ``header_timeout_s`` seconds (else 408, for a head that trickles in); without httptools,
    ``"h11"`` (give it ``h11_max_incomplete_event_size=MAX_REQUEST_HEAD``)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is not installed
        return "h11"

    class BoundedHead(HttpToolsProtocol):
        _in_head = True  # a head is being read (from the connection's first byte)
        _began = False  # a message began during the current data_received
        _head_bytes = 0  # bytes of head received in data_received calls after the first
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            self._began = False
            super().data_received(data)
            if not self._in_head or self.transport.is_closing():
                return
            # The piece a message began in may end a previous body: it is not counted, so a
            # head is refused after at most MAX_REQUEST_HEAD bytes plus one read.
            if not self._began:
                self._head_bytes += len(data)
            if self._head_bytes > MAX_REQUEST_HEAD:
                self._refuse(431, "the request's line and headers are too large")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._began, self._head_bytes = True, True, 0
            self._arm()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._disarm()
            super().on_headers_complete()

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            if self._in_head and not self.transport.is_closing():
                self._refuse(408, "the request's head did not arrive in time")

        def _refuse(self, status: int, message: str) -> None:
            self._in_head = False
            self._disarm()
            body = message.encode()
            reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, reason, len(body), body)
            )
            self.transport.close()

    return BoundedHead


# --- resumable streams ---------------------------------------------------------------------
# With an event store the SDK's transport opens every POST SSE stream (protocol 2025-11-25 and
# later) with a priming event (an id, empty data and a `retry` field) and gives every message it
# sends on a stream an id. A client whose stream drops reconnects with a GET carrying
# `Last-Event-ID` and receives every message of that stream after the one it names. Memory stays
# bounded: the oldest events go first past MAX_EVENTS, and an id already dropped (or never
# stored) replays nothing. Ids are random, so one client cannot name another's stream.

MAX_EVENTS: Final = 4096
"""The most events kept for replay, across every session and stream."""

RETRY_MS: Final = 1000
"""How long a client waits before reconnecting a dropped stream (the SSE ``retry`` field)."""


class MemoryEventStore(EventStore):
    """The events of recent streams, oldest dropped first past ``max_events``."""

    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        if max_events <= 0:
            raise ValueError("max_events must be positive")
        self.max_events = max_events
        # event id -> (stream id, message; None for a priming event), in the order stored
        self._events: OrderedDict[EventId, tuple[StreamId, JSONRPCMessage | None]] = OrderedDict()

    def stored(self) -> int:
        """How many events are kept now (never more than ``max_events``). Not ``__len__``:
        the SDK tests the store for truth, and an empty store must still count as one."""
        return len(self._events)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        # No lock: nothing here awaits, so on the event loop this runs as one step.
        event_id = secrets.token_urlsafe(12)
        self._events[event_id] = (stream_id, message)
        while len(self._events) > self.max_events:
            self._events.popitem(last=False)
        return event_id

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        found = self._events.get(last_event_id)
        if found is None:
            return None
        stream_id = found[0]
        after = False
        missed: list[EventMessage] = []  # taken in one step, before the first await
        for event_id, (sid, message) in self._events.items():
            if event_id == last_event_id:
                after = True
            elif after and sid == stream_id and message is not None:
                missed.append(EventMessage(message, event_id))
        for event in missed:
            await send_callback(event)
        return stream_id


def ensure_http_token(home: Path) -> tuple[str, bool]:
    """The bearer token of ``vultrino mcp --http``: read ``home/mcp-token``, or create it.

    Returns ``(token, created)``. A new token is written with mode 0600 (never replaced if
    another process won the race); the caller says where it is kept, never the token. A token
    file that others can read is refused rather than trusted.
    """
    path = Path(home) / TOKEN_FILE
    try:
        return _read_token(path), False
    except FileNotFoundError:
        pass
    Home(Path(home)).ensure()
    token = secrets.token_urlsafe(32)
    try:
        atomic_write(path, (token + "\n").encode(), mode=0o600, exclusive=True)
    except FileExistsError:
        return _read_token(path), False
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create the MCP token file ({exc.strerror})") from exc
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
        # MCP session id -> who opened it (an agent's name, None for the server's token): a
        # session answers only requests made with the same identity
        self._sessions: dict[bytes, str | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        who = await self._identify(scope)
        if who is not False:
            session = next(
                (bytes(v) for k, v in scope.get("headers", ()) if k == b"mcp-session-id"), None
            )
            if session is None:
                send = self._remembering(send, who)  # an initialize opens one
            elif self._sessions.get(session, False) != who:
                # opened with another token, or not through this server's door at all (or
                # so long ago its binding was dropped): as for a session that does not exist
                await _refuse_foreign_session(send)
                return
            elif scope.get("method") == "DELETE":
                self._sessions.pop(session, None)  # ended: its id opens nothing again
            # A fresh dict: the server may hand every request a copy of one shared state.
            scope["state"] = {**scope.get("state", {}), AGENT_STATE: who}
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

    def _remembering(self, send: Send, who: str | None) -> Send:
        """``send`` that binds a session the response opens to ``who``."""

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                for key, value in message.get("headers", ()):
                    if key.lower() == b"mcp-session-id":
                        if len(self._sessions) >= _SESSIONS_MAX:
                            self._sessions.pop(next(iter(self._sessions)))
                        self._sessions.setdefault(bytes(value), who)
            await send(message)

        return wrapped

    async def _identify(self, scope: Scope) -> str | Literal[False] | None:
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


_SESSIONS_MAX = 10_000  # sessions remembered; the oldest binding is dropped past it


async def _refuse_foreign_session(send: Send) -> None:
    """404, as for a session that does not exist: the id was opened with another token."""
    body = json.dumps(
        {
            "error": "session_not_found",
            "message": "this MCP session was opened with another token; start a new session "
            "(initialize) with yours",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def build_http_app(app: VultrinoMCP, token: str) -> ASGIApp:
    """The ASGI application of ``serve_http``: bearer auth around the SDK's session manager.

    Agents' tokens are accepted too (each request then runs under its agent's profile); when
    ``app`` serves one agent, only that agent's token is."""
    endpoint, lifespan = mountable_http_app(app, token)
    starlette = Starlette(routes=[Route(HTTP_PATH, endpoint=endpoint)], lifespan=lifespan)
    return starlette


def mountable_http_app(
    app: VultrinoMCP,
    token: str,
    *,
    identify: Callable[[str], str | None] | None = None,
    allowed_hosts: Sequence[str] = ("127.0.0.1", "localhost", "[::1]"),
) -> tuple[ASGIApp, Callable[[Any], contextlib.AbstractAsyncContextManager[None]]]:
    """The MCP endpoint for ``HTTP_PATH`` (bearer auth around the SDK's session manager) and
    the lifespan that runs the manager, for an application that mounts it (``vultrino
    serve``) as well as for ``serve_http``. ``identify`` turns a bearer credential that is not
    the server's token into the profile it runs under (default: agents' tokens); the SDK's
    DNS-rebinding check accepts ``allowed_hosts`` (host names, any port)."""
    if not token:
        raise ConfigError("the MCP HTTP server needs a non-empty bearer token")
    app.http = True
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{h}:*" for h in allowed_hosts] + list(allowed_hosts),
        allowed_origins=[
            f"{scheme}://{h}{port}"
            for h in allowed_hosts
            for scheme in ("http", "https")
            for port in (":*", "")
        ],
    )
    manager = StreamableHTTPSessionManager(
        app=app.server,
        security_settings=security,
        event_store=MemoryEventStore(),
        retry_interval=RETRY_MS,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        async with manager.run(), anyio.create_task_group() as tg:
            tg.start_soon(app.watch)
            yield
            tg.cancel_scope.cancel()

    # An ASGI-app instance (not a function) as the endpoint, so every HTTP method reaches it.
    endpoint = _BearerAuth(
        StreamableHTTPASGIApp(manager),
        token,
        agent_for_token=identify or app.v.agent_for_token,
        only_agent=app.agent,
    )
    return endpoint, lifespan


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
    # Accepted connections inherit it: without it a keep-alive client's next request waits
    # out its delayed ACK (about 40 ms) behind the response's split writes (as in `serve`).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
        asgi,
        log_config=None,
        access_log=False,
        log_level="warning",
        lifespan="on",
        http=http_protocol(),
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD,
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
