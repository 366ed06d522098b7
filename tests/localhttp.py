"""A real HTTP server on 127.0.0.1 for tests: an ephemeral port, a thread, and a clean stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar


class LocalServer(ThreadingHTTPServer):
    """A threaded server on 127.0.0.1; ``paths`` is for handlers that record requests."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.paths: list[str] = []
        self.lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


S = TypeVar("S", bound=ThreadingHTTPServer)


@contextmanager
def serving(server: S) -> Iterator[S]:
    """Serve ``server`` on a thread until the block ends, then stop and close it."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Recorder(LocalServer):
    """Answers every request with ``body`` (JSON) and records it: ``paths`` holds
    ``"METHOD /path?query"``, ``auth`` the Authorization header (empty when none). A GET of
    ``/redirect…`` is answered with a 302 to ``/other/landing``."""

    def __init__(self, body: bytes = b'{"ok": true}') -> None:
        super().__init__(_RecordingHandler)
        self.body = body
        self.auth: list[str] = []


class _RecordingHandler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.paths.append(f"{self.command} {self.path}")
            self.server.auth.append(self.headers.get("Authorization", ""))
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/other/landing")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET
    do_DELETE = do_GET
    do_PUT = do_GET
