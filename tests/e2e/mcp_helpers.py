"""What the MCP end-to-end tests share: a prepared home, tiny WAT plugins, and three ways to
talk to a real ``python -m vultrino mcp`` subprocess — the SDK's own client over stdio, the SDK's
client over streamable HTTP, and a raw JSON-RPC client that writes exactly what a desktop host
writes and reads line-delimited JSON from the server's stdout.

Nothing here stands in for a real part: the server is the real CLI in a real process, the store
is a real sealed store (with the minimal KDF, for speed), and the plugins are real wasm modules
run by the configured engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import wasmtime

from tests.leakcheck import LeakCheck

#: How the tests start the server; exactly what a host configured by `vultrino mcp config` runs.
SERVER_COMMAND: list[str] = [sys.executable, "-m", "vultrino", "mcp"]

PASSWORD = "correct horse battery staple, mcp edition"
ECHO_SECRET = "echo-token-7f3a9c1e5b2d4086"
GITHUB_SECRET = "ghp_mcpTestSecret0123456789abcdef"
LATE_SECRET = "late-token-55aa33cc11ee99dd"

#: A guard against a hung test, never a performance assertion.
HANG_GUARD_S = 90.0


# --- WAT plugins -------------------------------------------------------------------------------

# A bump allocator and an `execute` that answers `{"ok": <the request map>}`: the msgpack bytes
# 0x81 (map of 1) "ok" (0xa2 'o' 'k') followed by the request as received. So the result shows
# exactly what the host sent the guest — action, params and credential — after scrubbing.
_ALLOC = """
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (func $realloc (export "cabi_realloc")
        (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p
      (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
               (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (block $ok
      (loop $grow
        (br_if $ok (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.lt_s (memory.grow (i32.const 1)) (i32.const 0)) (then unreachable))
        (br $grow)))
    (local.get $p))
  (func (export "cabi_post_vultrino:plugin/handler@1.0.0#execute") (param $ret i32)
    (global.set $heap (i32.const 4096)))
"""

_LOCALS = """
    (local $out i32) (local $i i32) (local $ret i32)
"""

_ECHO_BODY = """
    (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
                                   (i32.add (local.get $len) (i32.const 4))))
    (i32.store8 (local.get $out) (i32.const 0x81))
    (i32.store8 offset=1 (local.get $out) (i32.const 0xa2))
    (i32.store8 offset=2 (local.get $out) (i32.const 0x6f))
    (i32.store8 offset=3 (local.get $out) (i32.const 0x6b))
    (block $done
      (loop $copy
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (i32.store8 offset=4 (i32.add (local.get $out) (local.get $i))
                    (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $copy)))
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 8)))
    (i32.store (local.get $ret) (local.get $out))
    (i32.store offset=4 (local.get $ret) (i32.add (local.get $len) (i32.const 4)))
    (local.get $ret)
"""

ECHO_WAT = f"""
(module
{_ALLOC}
  (func (export "vultrino:plugin/handler@1.0.0#execute") (param $ptr i32) (param $len i32)
        (result i32)
{_LOCALS}{_ECHO_BODY})
)
"""

#: What the noisy plugin writes to its stdout (fd 1) on every call: a line that would pass for
#: a JSON-RPC response if it reached the protocol stream.
NOISE = '{"jsonrpc":"2.0","id":1,"result":{"forged":true}}\n'

NOISY_WAT = f"""
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
{_ALLOC}
  (data (i32.const 64) {json.dumps(NOISE)})
  (func (export "vultrino:plugin/handler@1.0.0#execute") (param $ptr i32) (param $len i32)
        (result i32)
{_LOCALS}
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const {len(NOISE.encode())}))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
    (drop (call $fd_write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 24)))
{_ECHO_BODY})
)
"""

HANG_WAT = f"""
(module
{_ALLOC}
  (func (export "vultrino:plugin/handler@1.0.0#execute") (param $ptr i32) (param $len i32)
        (result i32)
    (loop $forever (br $forever))
    (i32.const 0))
)
"""


#: Answers every call with the same msgpack document, which has what JSON has not: a map with
#: an integer key, bin (bytes) values and a NaN:
#: {"ok": {1: b"\x00\x01\x02", "nan": NaN, "list": [b"\xff"]}}
BINARY_WAT = f"""
(module
{_ALLOC}
  (data (i32.const 64)
    "\\81\\a2ok\\83\\01\\c4\\03\\00\\01\\02\\a3nan\\cb\\7f\\f8\\00\\00\\00\\00\\00\\00\\a4list\\91\\c4\\01\\ff")
  (func (export "vultrino:plugin/handler@1.0.0#execute") (param $ptr i32) (param $len i32)
        (result i32)
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const 33))
    (i32.const 16))
)
"""


def manifest(name: str, *, tool: str, type_name: str = "key", version: str = "1.0.0") -> str:
    """A plugin.toml with one secret credential type, one action `echo` and one MCP tool."""
    return f"""\
[plugin]
name = "{name}"
version = "{version}"
description = "test plugin {name}"
wasm_module = "{name.replace("-", "_")}.wasm"

[[credential_types]]
name = "{type_name}"
display_name = "{name} key"

[[credential_types.fields]]
name = "token"
label = "Token"
type = "password"
required = true
secret = true

[[actions]]
name = "echo"
description = "Echo the request"
credential_type = "{type_name}"

[[actions.parameters]]
name = "message"
type = "string"
required = true
description = "Text to echo"

[[actions.parameters]]
name = "n"
type = "integer"
required = false
description = "A number to echo"

[[mcp_tools]]
name = "{tool}"
action = "echo"
description = "Echo a message through the {name} plugin"
"""


def write_plugin(dest: Path, name: str, wat: str, *, tool: str) -> Path:
    """A plugin source directory (plugin.toml + compiled module) at ``dest/name``."""
    d = dest / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "plugin.toml").write_text(manifest(name, tool=tool), encoding="utf-8")
    (d / f"{name.replace('-', '_')}.wasm").write_bytes(wasmtime.wat2wasm(wat))
    return d


# --- the home ----------------------------------------------------------------------------------


@dataclass
class McpHome:
    """A Vultrino home with a store, credentials and plugins, and how to start a server on it."""

    root: Path
    password_file: Path
    secrets: list[str] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        """The server's environment: the host's PATH and the like, plus the Vultrino variables
        (and nothing else of the test process's VULTRINO_* settings but the engine)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
        env["VULTRINO_HOME"] = str(self.root)
        env["VULTRINO_PASSWORD_FILE"] = str(self.password_file)
        if os.environ.get("VULTRINO_ENGINE"):
            env["VULTRINO_ENGINE"] = os.environ["VULTRINO_ENGINE"]
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``python -m vultrino ARGS`` against this home (as another process would)."""
        return subprocess.run(
            [sys.executable, "-m", "vultrino", *args],
            env=self.env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
        )


def make_home(
    root: Path,
    *,
    plugins: Sequence[tuple[str, str, str]] = (("echo", ECHO_WAT, "echo_message"),),
    config: str = "",
) -> McpHome:
    """A home with the minimal-KDF store, plugins ``(name, wat, tool)`` copied into
    ``plugins/`` with one credential ``<name>-one`` each, an ``api_key`` credential ``github``,
    and a 0600 password file (outside the home, as a user would keep it)."""
    from vultrino.core import Vultrino
    from vultrino.store import KdfParams

    root.mkdir(parents=True, exist_ok=True)
    if config:
        (root / "config.toml").write_text(config, encoding="utf-8")
    pw_dir = Path(tempfile.mkdtemp(prefix="vpw-"))
    password_file = pw_dir / "password"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(PASSWORD + "\n")
    plugins_dir = root / "plugins"
    plugins_dir.mkdir(parents=True, exist_ok=True)
    for name, wat, tool in plugins:
        write_plugin(plugins_dir, name, wat, tool=tool)
    secrets = [PASSWORD, GITHUB_SECRET]
    with Vultrino.init(root, PASSWORD, kdf=KdfParams.minimal()) as v:
        for name, _, _ in plugins:
            secret = plugin_secret(name)
            v.add_credential(
                f"{name}-one", f"plugin:{name}:key", {"token": secret}, description=f"{name} key"
            )
            secrets.append(secret)
        v.add_credential(
            "github",
            "api_key",
            {"key": GITHUB_SECRET},
            description="GitHub token",
            allow=["https://api.github.com/*"],
        )
    return McpHome(root, password_file, secrets)


def plugin_secret(name: str) -> str:
    """The secret field value of the ``<name>-one`` credential."""
    return ECHO_SECRET if name == "echo" else f"{name}-token-5e1f0c77a2b94d3c"


def install_late_plugin(home: McpHome, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Install a new plugin with the real CLI while a server runs on the home."""
    src = write_plugin(workdir, "late", ECHO_WAT, tool="late_echo")
    return home.cli("plugin", "install", str(src))


# --- the SDK client over stdio -----------------------------------------------------------------


@dataclass
class SdkSession:
    session: Any  # mcp.client.session.ClientSession
    incoming: list[Any]  # notifications and transport exceptions, in arrival order
    changed: Any  # anyio.Event, set on notifications/tools/list_changed; renew with expect_change

    def expect_change(self) -> None:
        """Arm a fresh ``changed`` event for the next notifications/tools/list_changed."""
        import anyio

        self.changed = anyio.Event()


@contextlib.asynccontextmanager
async def sdk_stdio(
    home: McpHome, errlog: IO[str], *, era: str = "handshake", **env: str
) -> AsyncIterator[SdkSession]:
    """The SDK's ``stdio_client`` + ``ClientSession`` on a real ``vultrino mcp`` subprocess.

    ``era="handshake"`` negotiates with ``initialize`` (the SDK's newest handshake version);
    ``era="modern"`` with ``server/discover`` (the 2026-07-28 per-request envelope).
    """
    import anyio
    from mcp import types
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    box: list[SdkSession] = []

    async def on_message(message: Any) -> None:
        box[0].incoming.append(message)
        if isinstance(message, types.ToolListChangedNotification):
            box[0].changed.set()

    params = StdioServerParameters(
        command=SERVER_COMMAND[0], args=SERVER_COMMAND[1:], env=home.env(**env)
    )
    async with (
        stdio_client(params, errlog=errlog) as (read, write),
        ClientSession(read, write, message_handler=on_message) as session,
    ):
        box.append(SdkSession(session, [], anyio.Event()))
        try:
            if era == "modern":
                await session.discover()
            else:
                await session.initialize()
            yield box[0]
        except BaseException:
            show_server_log(errlog)
            raise


def show_server_log(errlog: IO[str]) -> None:
    """Put the end of the server's stderr into the test's output, to explain a failure."""
    errlog.flush()
    errlog.seek(0)
    sys.stderr.write("--- server stderr (end) ---\n" + errlog.read()[-6000:] + "\n")


def transport_errors(incoming: Sequence[Any]) -> list[Any]:
    """Exceptions the client's transport raised (a line on stdout that was not JSON-RPC)."""
    return [m for m in incoming if isinstance(m, Exception)]


# --- the raw client ----------------------------------------------------------------------------


class RawClient:
    """A JSON-RPC client that writes exactly what a desktop host writes, one JSON object per
    line on the server's stdin, and reads the server's stdout line by line. Every line the
    server writes is kept (``lines``) so tests can check that each one is a JSON-RPC message."""

    def __init__(self, home: McpHome, errlog: IO[str], **env: str) -> None:
        self.proc = subprocess.Popen(
            SERVER_COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errlog,
            env=home.env(**env),
        )
        self.lines: list[bytes] = []
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pending: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next_id = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            try:
                self._messages.put(json.loads(line))
            except ValueError:
                self._messages.put({"unparseable": line.decode("utf-8", "replace")})
        self._messages.put(None)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its response (notifications received meanwhile are kept
        for :meth:`notifications`)."""
        self._next_id += 1
        rid = self._next_id
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.wait_for(lambda m: m.get("id") == rid and "method" not in m)

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    def wait_for(self, match: Any, timeout: float = HANG_GUARD_S) -> dict[str, Any]:
        for i, m in enumerate(self._pending):
            if match(m):
                return self._pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching message from the server")
            try:
                m = self._messages.get(timeout=remaining)
            except queue.Empty:
                raise TimeoutError("no matching message from the server") from None
            if m is None:
                raise EOFError("the server closed its stdout")
            if match(m):
                return m
            self._pending.append(m)

    def handshake(self, version: str) -> dict[str, Any]:
        """``initialize`` + ``notifications/initialized``, as Claude Desktop sends them."""
        response = self.request(
            "initialize",
            {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "claude-ai", "version": "0.1.0"},
            },
        )
        self.notify("notifications/initialized")
        return response

    def close(self) -> int:
        """Close stdin (how hosts stop a server) and wait for the exit code."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout=HANG_GUARD_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=HANG_GUARD_S)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.close()


# --- the HTTP server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_LISTENING = re.compile(r"listening on (http://\S+)")


@contextlib.contextmanager
def http_server(home: McpHome, errlog: IO[str], *args: str) -> Iterator[str]:
    """Run ``vultrino mcp --http [ARGS]`` on a free port; yield its URL once it listens."""
    port = free_port()
    proc = subprocess.Popen(
        [*SERVER_COMMAND, "--http", "--port", str(port), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=errlog,
        env=home.env(),
    )
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        url = None
        while url is None:
            if proc.poll() is not None:
                errlog.seek(0)
                raise RuntimeError(f"the HTTP server exited early: {errlog.read()}")
            if time.monotonic() > deadline:
                raise TimeoutError("the HTTP server did not start")
            errlog.seek(0)
            found = _LISTENING.search(errlog.read())
            if found:
                url = found.group(1)
            else:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.stdout.close()
        # HTTP mode keeps stdout for data, and it has none to print.
        assert out == b"", out


def read_token(home: McpHome) -> str:
    return (home.root / "mcp-token").read_text(encoding="utf-8").strip()


# --- leak checks -------------------------------------------------------------------------------


def scan_log(check: LeakCheck, home: McpHome, errlog: IO[str], *more: tuple[str, Any]) -> None:
    """Register the home's secrets and scan the server's stderr (and ``more``) for them."""
    check.add(*home.secrets)
    errlog.flush()
    errlog.seek(0)
    check.scan(errlog.read(), "server stderr")
    for where, data in more:
        check.scan(data if isinstance(data, (str, bytes)) else json.dumps(data), where)


def copy_plugin(src: Path, plugins_dir: Path) -> Path:
    """Copy a plugin directory into ``plugins_dir`` the way an installer does: complete under a
    temporary name, then one rename."""
    tmp = plugins_dir / f".tmp-{src.name}"
    shutil.copytree(src, tmp)
    final = plugins_dir / src.name
    os.rename(tmp, final)
    return final
