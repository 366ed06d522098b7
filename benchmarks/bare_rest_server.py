"""The reference of benchmarks/bench_remote.py: one Starlette endpoint that parses the JSON body
and answers it, on the same uvicorn settings as `vultrino serve` (HTTP parser, event loop, a
TCP_NODELAY socket), so the difference is Vultrino's own work: the Host/Origin guard, the key
check, the thread hop, the pipeline and its audit record."""

import socket
import sys

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vultrino.server.run import event_loop, http_parser


async def execute(request: Request) -> JSONResponse:
    return JSONResponse({"result": await request.json()})


app = Starlette(routes=[Route("/api/v1/execute", execute, methods=["POST"])])
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
sock.listen(128)
sock.setblocking(False)
config = uvicorn.Config(
    app, log_config=None, access_log=False, log_level="warning", http=http_parser(),
    server_header=False, lifespan="off",
)  # fmt: skip
server = uvicorn.Server(config)
print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
anyio.run(server.serve, [sock], backend_options={"use_uvloop": event_loop() == "uvloop"})
