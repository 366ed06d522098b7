"""The one ASGI application of `vultrino serve`: the REST API, MCP, and the root for the UI.

::

    /api/v1/...   the REST API (vultrino.server.api)
    /mcp          MCP streamable HTTP (vultrino.mcp.http, mounted as is)
    /             the web admin UI (vultrino.server.ui): pages, forms, /static assets

Around every request, :class:`Guard` refuses a Host header that is not this server's (DNS
rebinding: a page on another site whose name resolves to this address) and an ``Origin`` of
another site, and adds security headers to every response (a Content-Security-Policy that
allows scripts, styles and images from this server only and no inline script, no framing,
nosniff). ``X-Forwarded-For`` and
``X-Forwarded-Proto`` are honoured only from ``--trusted-proxy`` peers (by uvicorn's proxy
middleware, configured in :mod:`vultrino.server.run`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vultrino.core import Vultrino
from vultrino.errors import VultrinoError
from vultrino.mcp.http import HTTP_PATH, mountable_http_app
from vultrino.mcp.server import VultrinoMCP
from vultrino.server.api import Api
from vultrino.server.auth import Authenticator
from vultrino.server.inbox import Inbox, Waiting
from vultrino.server.settings import ServerSettings
from vultrino.server.ui import WebUI

if TYPE_CHECKING:
    from vultrino.policy.approval import Approver

__all__ = ["CSP", "FLUSH_INTERVAL_S", "Guard", "audit_decision", "build_app", "build_proxy"]

logger = logging.getLogger("vultrino.server")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The Content-Security-Policy of every response: nothing inline, nothing from elsewhere."""

FLUSH_INTERVAL_S = 5.0
"""How often the keys' last-use times are written to their side file (and at shutdown)."""


class Guard:
    """Host and Origin checks, and security headers, around the whole application."""

    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: tuple[str, ...],
        *,
        tls: bool,
        security_headers: bool = True,
    ) -> None:
        """``security_headers=False`` (the forward proxy, whose answers are the upstream's):
        the Host and Origin checks only."""
        self.app = app
        self.allowed = frozenset(allowed_hosts)
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"no-store"),
            (b"content-security-policy", CSP.encode()),
        ]
        if not security_headers:
            self.headers = []
        elif tls:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    def _host_ok(self, value: str) -> bool:
        try:
            host = urlsplit(f"//{value}").hostname
        except ValueError:
            return False
        return host is not None and host.lower() in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        host = headers.get(b"host", b"").decode("latin-1")
        origin = headers.get(b"origin")
        if not self._host_ok(host):
            await _refuse(send, 421, "invalid_host", f"Host {host[:80]!r} is not this server's")
            return
        if origin is not None and origin != b"null":
            origin_host = origin.decode("latin-1")
            parts = urlsplit(origin_host)
            if not parts.netloc or not self._host_ok(parts.netloc):
                await _refuse(
                    send, 403, "invalid_origin", f"requests from {origin_host[:80]!r} are refused"
                )
                return

        extra = self.headers
        if not extra:
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": message, "code": code}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _inbox_approver(auth: Authenticator, inbox: Inbox, authorization: str | None) -> Approver:
    """The inbox's approver for an MCP call made with ``authorization``: an API key's calls
    wait under its name and id (so that key cannot approve them), anything else (an agent
    token, the server token) as the inbox's own."""
    try:
        who = auth.identify(authorization)
    except VultrinoError:
        who = None  # the endpoint already let the request in; its checks stand
    if who is not None and who.kind == "key":
        return inbox.approver(who.name, who.key_id)
    return inbox.approver()


def build_proxy(
    v: Vultrino, settings: ServerSettings, *, server_token: str, inbox: Inbox
) -> ASGIApp:
    """The forward proxy's application (:mod:`vultrino.server.proxy`), behind the same Host
    and Origin checks as the rest, without the pages' security headers."""
    from vultrino.server.proxy import Proxy

    proxy = Proxy(v, Authenticator(v, server_token), inbox)
    return Guard(
        proxy, settings.allowed_hosts, tls=settings.tls_cert is not None, security_headers=False
    )


def build_app(v: Vultrino, settings: ServerSettings, *, server_token: str, inbox: Inbox) -> ASGIApp:
    """The application over an unlocked facade. ``server_token`` is the home's ``mcp-token``;
    ``inbox`` holds the calls that wait for approval (the facade's user calls and every
    agent's and key's)."""
    auth = Authenticator(v, server_token)
    api = Api(v, auth, inbox)
    mcp = VultrinoMCP(v)
    mcp.http_approver = functools.partial(_inbox_approver, auth, inbox)
    mcp_endpoint, mcp_lifespan = mountable_http_app(
        mcp, server_token, identify=auth.profile_for, allowed_hosts=settings.allowed_hosts
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with mcp_lifespan(app):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_flush_key_use, v)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
            inbox.close()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(v.flush_key_use)

    tls = settings.tls_cert is not None
    ui = WebUI(v, inbox, tls=tls)
    routes = [*api.routes(), Route(HTTP_PATH, endpoint=mcp_endpoint), *ui.routes()]
    starlette = Starlette(routes=routes, lifespan=lifespan)
    return Guard(starlette, settings.allowed_hosts, tls=tls)


async def _flush_key_use(v: Vultrino) -> None:
    while True:
        await anyio.sleep(FLUSH_INTERVAL_S)
        await anyio.to_thread.run_sync(v.flush_key_use)


def audit_decision(v: Vultrino) -> Callable[[Waiting], None]:
    """The inbox's ``on_decided``: one audit record per decision, naming who made it."""

    def record(item: Waiting) -> None:
        v.record_approval(item.request, item.id, item.outcome or "", item.decided_by or "")

    return record
