"""Running `vultrino serve`: bind, serve on uvicorn, stop cleanly on SIGTERM.

The socket is bound only after every setting was checked (:mod:`vultrino.server.settings`).
While it runs, ``$VULTRINO_HOME/server.json`` (0600) says where it listens, so `vultrino
approvals` on the same machine can reach it with the home's server token. On SIGTERM or
SIGINT, uvicorn stops accepting connections and lets the requests in flight finish (at most
``shutdown_grace_s``); calls waiting in the approvals inbox are refused at once, the keys' last
uses are written, and the facade is closed by the caller (which signs the audit log's head).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

import anyio
import uvicorn

from vultrino._fs import atomic_write
from vultrino.core import Vultrino
from vultrino.errors import ServerConfigError, ServerNotRunningError
from vultrino.mcp.http import MAX_REQUEST_HEAD, ensure_http_token, http_protocol
from vultrino.server.app import audit_decision, build_app, build_proxy
from vultrino.server.inbox import Inbox, Seal
from vultrino.server.settings import ServerSettings

if TYPE_CHECKING:
    from vultrino.store.pg_approvals import ApprovalTable

__all__ = ["SERVER_FILE", "event_loop", "http_parser", "running_server", "serve"]

SERVER_FILE = "server.json"


def http_parser() -> str:
    """uvicorn's HTTP/1.1 implementation: ``httptools`` (the C parser, a dependency) where it
    is installed, else ``h11`` (pure Python; a request costs about twice the CPU)."""
    import importlib.util

    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


def event_loop() -> str:
    """The event loop: ``uvloop`` where it is installed (not on Windows), else asyncio's."""
    import importlib.util

    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


class _Server(uvicorn.Server):
    """uvicorn's server, which also releases the approvals inbox the moment a stop signal
    arrives (a waiting call must not hold the shutdown up until the grace period ends)."""

    def __init__(
        self,
        config: uvicorn.Config,
        inbox: Inbox,
        *,
        companions: tuple[uvicorn.Server, ...] = (),
        signals: bool = True,
    ) -> None:
        super().__init__(config)
        self._inbox = inbox
        self._companions = companions  # the proxy's server: stops with this one
        self._signals = signals

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._inbox.close()
        for other in self._companions:
            other.handle_exit(sig, frame)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, without raising the signal again once the server has stopped: the
        process must go on to write the keys' last uses and close the audit log (sign its
        head), then exit 0 — a stop that was asked for is not a failure."""
        if threading.current_thread() is not threading.main_thread() or not self._signals:
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerConfigError(f"--bind {host}:{port}: cannot resolve {host!r} ({exc})") from exc
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServerConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); pick another address with --bind"
        ) from exc
    # Accepted connections inherit it: without it a keep-alive client's second request waits
    # out the peer's delayed ACK (about 40 ms) behind uvicorn's split response writes.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def serve(
    v: Vultrino,
    settings: ServerSettings,
    *,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. ``ready`` receives the URL once the socket listens."""
    v.unlock()
    # Load the plugins now, before any request: the first requests and the MCP watcher's
    # first refresh must not both build (and then reload) the registry at once.
    v.refresh()
    token, _ = ensure_http_token(v.home.root)
    shared = _shared_approvals(v)
    seal = Seal(v.sign_approval, v.approval_signed) if shared is not None else None
    inbox = Inbox(settings.approval_wait_s, on_decided=audit_decision(v), shared=shared, seal=seal)
    if shared is not None:
        shared.on_notice = inbox.notice
    v.set_approver(inbox.approver())  # the server token's own gated calls wait there too
    app = build_app(v, settings, server_token=token, inbox=inbox)
    sock = _bind(settings.host, settings.port)
    url = settings.url(sock.getsockname()[1])
    proxy_sock = None
    proxy_server = None
    proxy_url = None
    if settings.proxy is not None:
        # The forward proxy runs in this process, on its own socket: the same unlocked store,
        # plugins (one connection pool), approvals inbox and audit log as the REST API.
        try:
            proxy_sock = _bind(*settings.proxy)
        except BaseException:
            sock.close()
            raise
        proxy_url = settings.url(proxy_sock.getsockname()[1], host=settings.proxy[0])
        proxy_app = build_proxy(v, settings, server_token=token, inbox=inbox)
        # no Date of its own: the upstream's is the answer's
        proxy_config = _config(proxy_app, settings, lifespan="off", date_header=False)
        proxy_server = _Server(proxy_config, inbox, signals=False)
    server = _Server(
        _config(app, settings, lifespan="on"),
        inbox,
        companions=(proxy_server,) if proxy_server is not None else (),
    )
    marker = Path(v.home.root) / SERVER_FILE

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            if proxy_server is not None and proxy_sock is not None:
                tg.start_soon(proxy_server.serve, [proxy_sock])
            servers = [server] if proxy_server is None else [server, proxy_server]
            while not all(s.started for s in servers):
                if any(s.should_exit for s in servers):
                    server.handle_exit(signal.SIGTERM, None)
                    return
                await anyio.sleep(0.01)
            info = {"url": url, "pid": os.getpid(), "tls_cert": _text(settings.tls_cert)}
            if proxy_url is not None:
                info["proxy_url"] = proxy_url
            atomic_write(marker, json.dumps(info).encode(), mode=0o600)
            (ready or _announce)(url)
            if proxy_url is not None:
                print(f"Vultrino proxy listening on {proxy_url}", file=sys.stderr, flush=True)

    try:
        anyio.run(run, backend_options={"use_uvloop": event_loop() == "uvloop"})
    finally:
        sock.close()
        if proxy_sock is not None:
            proxy_sock.close()
        if shared is not None:
            shared.close()
        with contextlib.suppress(OSError, ValueError):
            if json.loads(marker.read_text(encoding="utf-8")).get("pid") == os.getpid():
                marker.unlink()


def _config(
    app: Any, settings: ServerSettings, *, lifespan: Literal["on", "off"], date_header: bool = True
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        date_header=date_header,
        log_config=None,
        access_log=False,
        log_level="warning",
        lifespan=lifespan,
        http=http_protocol(settings.header_timeout_s),
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD,
        server_header=False,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
    )


def _shared_approvals(v: Vultrino) -> ApprovalTable | None:
    """The approvals table every replica shares, when the store is in PostgreSQL (None: a
    file store, whose inbox is this process's alone)."""
    url = v.config.store_url
    if url is None:
        return None
    from vultrino.store.pg_approvals import ApprovalTable

    return ApprovalTable(url)


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _announce(url: str) -> None:
    print(f"Vultrino server listening on {url}", file=sys.stderr, flush=True)


def running_server(home: Path) -> dict[str, Any]:
    """Where the server running on ``home`` listens (``server.json``), or
    ServerNotRunningError."""
    path = Path(home) / SERVER_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServerNotRunningError(
            f"no `vultrino serve` is running on {home} (no {SERVER_FILE}); start one with "
            "`vultrino serve`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ServerNotRunningError(f"{path}: cannot read it ({exc})") from exc
    if not isinstance(info, dict) or not isinstance(info.get("url"), str):
        raise ServerNotRunningError(f"{path} is malformed; restart `vultrino serve`")
    return info
