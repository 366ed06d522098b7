"""What a real Python component can reach from inside the sandbox: nothing.

``tests/fixtures/python_probe`` is built with componentize-py (once per session) and asked to
read the environment, list and read files, write a file, resolve a name, connect to a TCP
server this test runs on 127.0.0.1, and print to stdout and stderr. WASI 0.2 with no
capabilities means: an empty environment, no files, no network, and both streams in the plugin
log — never on the host's stdout.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vultrino.plugins.install import _componentize, installer
from vultrino.runtime import WasmRuntime

PROBE = Path(__file__).resolve().parents[1] / "fixtures" / "python_probe"


def _have_componentize() -> bool:
    try:
        _componentize.executable()
    except Exception:
        return False
    return True


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _have_componentize(), reason="componentize-py is not installed"),
]


@pytest.fixture(scope="session")
def probe_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("probe")
    # The probe uses the SDK's MessagePack codec (vultrino_pdk.msgpack), which the build adds.
    source = base / "python_probe"
    shutil.copytree(PROBE, source)
    with WasmRuntime("wasmtime", cache_dir=base / "cache") as rt:
        result = installer.install(
            str(source), plugins_dir=base / "plugins", runtime=rt, build=True
        )
    return result.path / "python_probe.wasm"


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def test_a_python_component_reaches_nothing(
    probe_wasm: Path,
    tmp_path: Path,
    listener: tuple[int, list[object]],
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROBE_CANARY", "host-environment-value")
    port, accepted = listener
    lines: list[tuple[str, str]] = []
    with WasmRuntime("wasmtime", cache_dir=tmp_path) as rt:
        module = rt.load(
            probe_wasm.read_bytes(), plugin="python-probe", log=lambda lv, t: lines.append((lv, t))
        )
        out = module.execute({"action": "probe", "params": {"port": port}, "credential": None})
    report = out["ok"]
    assert report["environ"] == [] and report["argv"] == []
    assert "error" in report["etc_passwd"]
    assert "error" in report["write_file"]
    assert "error" in report["root_listing"] or report["root_listing"]["ok"] == "[]"
    assert "error" in report["tcp_connect"], report["tcp_connect"]
    assert "error" in report["dns"], report["dns"]
    assert accepted == []
    assert not os.path.exists("/tmp/vultrino-probe")
    assert ("info", "probe says hello on stdout") in lines
    assert ("warn", "probe says hello on stderr") in lines
    captured = capfd.readouterr()
    assert "probe says hello" not in captured.out + captured.err
