"""A loopback HTTP proxy that adds ``Authorization: Bearer <token>`` to every request.

The MCP conformance suite (``@modelcontextprotocol/conformance``) has no option for a bearer
token, and Vultrino's HTTP servers refuse requests without one; this proxy sits between them.
It is deliberately transparent: the request line, every header (Host and Origin included, so
the suite's DNS-rebinding scenario still reaches the server's own checks) and the body pass
unchanged, and the response bytes (SSE streams included) are relayed as they arrive. Each
client connection carries one request (``Connection: close`` upstream), which keeps the relay
a plain byte pipe.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

_HEAD_MAX = 64 * 1024


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            chunk = src.recv(65536)
            if not chunk:
                break
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _rewrite(head: bytes, token: str) -> bytes:
    lines = head.split(b"\r\n")
    kept = [
        line
        for line in lines[1:]
        if line and not line.lower().startswith((b"authorization:", b"connection:"))
    ]
    extra = [f"Authorization: Bearer {token}".encode(), b"Connection: close"]
    return b"\r\n".join([lines[0], *kept, *extra]) + b"\r\n\r\n"


def _serve_one(client: socket.socket, upstream: tuple[str, int], token: str) -> None:
    with client:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk or len(data) > _HEAD_MAX:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        try:
            up = socket.create_connection(upstream)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with up:
            up.sendall(_rewrite(head, token) + rest)
            back = threading.Thread(target=_pipe, args=(up, client), daemon=True)
            back.start()
            _pipe(client, up)
            back.join()


@contextlib.contextmanager
def auth_proxy(upstream_url: str, token: str) -> Iterator[str]:
    """Run the proxy in front of ``upstream_url`` (``http://127.0.0.1:PORT/mcp``); yield the
    URL to give the client instead (same path, the proxy's port)."""
    rest = upstream_url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    upstream = (host.strip("[]"), int(port))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_serve_one, args=(client, upstream, token), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/{path}"
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(timeout=5)
