"""An exchange-signed request (``hmac_api_key``) through the real CLI: ``vultrino add`` from
files, ``vultrino request`` to a local server that verifies the signature as Binance documents
it (``tests/integration/test_http_hmac.py``), and ``types`` listing the new type."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli_paste import HANG_GUARD_S, PASSWORD
from tests.integration.test_http_hmac import API_KEY, API_SECRET, Exchange


def vultrino(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        env={**os.environ, "VULTRINO_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


@pytest.fixture
def exchange() -> Iterator[Exchange]:
    server = Exchange()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_add_and_request_a_signed_call(
    isolated_home: Path, tmp_path: Path, exchange: Exchange
) -> None:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    (tmp_path / "key").write_text(API_KEY)
    (tmp_path / "secret").write_text(API_SECRET)
    assert vultrino("init").returncode == 0
    r = vultrino(
        "add", "--alias", "binance", "--type", "hmac_api_key",
        "--field", f"api_key=@{tmp_path / 'key'}",
        "--field", f"api_secret=@{tmp_path / 'secret'}",
        "--field", "recv_window=10000",
        "--allow", f"{exchange.base}/api/*",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = vultrino("request", "binance", f"{exchange.base}/api/v3/account?symbol=ETHBTC", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == 200, out
    answer = json.loads(out["body"])
    assert answer["verified"] is True
    assert dict(answer["params"])["recvWindow"] == "10000"
    assert API_KEY not in r.stdout + r.stderr and API_SECRET not in r.stdout + r.stderr
    # outside the allowlist: refused, nothing sent
    r = vultrino("request", "binance", f"{exchange.base}/sapi/v1/withdraw")
    assert r.returncode != 0 and "allowlist" in r.stderr
    assert len(exchange.seen) == 1
    types = json.loads(vultrino("types", "--json").stdout)
    (mine,) = [t for t in types if t["type"] == "hmac_api_key"]
    assert {f["name"] for f in mine["fields"]} >= {"api_key", "api_secret", "header_name"}
