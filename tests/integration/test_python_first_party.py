"""The first-party Python plugin ``plugins/aws-sigv4``: built with componentize-py, run as a
WASI 0.2 component, checked against the AWS Signature Version 4 test suite's vectors.

The component (about 18 MB) is not committed: it is built once per test session by the real
installer (``install(..., build=True)``) into a session directory, and compiled once into a
session cache, so every test after the first loads it in well under a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vultrino.errors import BuildRequiredError
from vultrino.plugins.install import _componentize, installer
from vultrino.runtime import Limits, PluginModule, WasmRuntime

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "plugins" / "aws-sigv4"

# The AWS Signature Version 4 test suite's example key.
KEY = {
    "access_key_id": "AKIDEXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}


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
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the installed plugin directory, the compiled-module cache) — built once per session."""
    base = tmp_path_factory.mktemp("aws-sigv4")
    with WasmRuntime("wasmtime", cache_dir=base / "cache") as rt:
        result = installer.install(
            str(SOURCE), plugins_dir=base / "plugins", runtime=rt, build=True
        )
    assert (result.name, result.abi, result.built) == ("aws-sigv4", 2, True)
    yield result.path, base / "cache"


@pytest.fixture
def plugin(built: tuple[Path, Path]) -> Iterator[PluginModule]:
    path, cache = built
    with WasmRuntime("wasmtime", cache_dir=cache, limits=Limits()) as rt:
        yield rt.load((path / "aws_sigv4.wasm").read_bytes(), plugin="aws-sigv4")


def sign(plugin: PluginModule, params: dict[str, Any], fields: Any = KEY) -> dict[str, Any]:
    credential = {"alias": "aws", "type": "aws_key", "fields": fields} if fields else None
    return plugin.execute({"action": "sign", "params": params, "credential": credential})


def test_get_vanilla(plugin: PluginModule) -> None:
    out = sign(
        plugin,
        {
            "method": "GET",
            "url": "https://example.amazonaws.com/",
            "service": "service",
            "time": "20150830T123600Z",
        },
    )
    assert out["ok"]["headers"] == {
        "X-Amz-Date": "20150830T123600Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
        "aws4_request, SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    }


def test_get_vanilla_query_order(plugin: PluginModule) -> None:
    out = sign(
        plugin,
        {
            "method": "GET",
            "url": "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            "service": "service",
            "region": "us-east-1",
            "time": "20150830T123600Z",
        },
    )
    assert out["ok"]["headers"]["Authorization"].endswith(
        "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
    )


def test_errors_use_the_abi_codes_and_never_the_secret(plugin: PluginModule) -> None:
    bad = sign(plugin, {"method": "GET", "url": "ftp://x", "service": "s3"})
    assert bad["error"]["code"] == "invalid_params"
    missing = sign(plugin, {"method": "GET", "url": "https://a.b/", "service": "s3"}, fields={})
    assert missing["error"]["code"] == "invalid_credential"
    ok = sign(
        plugin,
        {"method": "PUT", "url": "https://b.s3.amazonaws.com/k", "service": "s3",
         "body": "hello", "sign_payload_header": True},
    )  # fmt: skip
    headers = ok["ok"]["headers"]
    assert set(headers) == {"X-Amz-Date", "X-Amz-Content-Sha256", "Authorization"}
    assert KEY["secret_access_key"] not in repr(ok) + repr(bad) + repr(missing)


def test_install_without_build_is_refused(tmp_path: Path) -> None:
    with WasmRuntime("wasmtime") as rt, pytest.raises(BuildRequiredError, match="--build"):
        installer.install(str(SOURCE), plugins_dir=tmp_path / "plugins", runtime=rt)
    assert list((tmp_path / "plugins").iterdir()) == []


def test_the_source_holds_only_its_own_code() -> None:
    """The glue comes from the SDK package the build adds, not from files in the plugin."""
    assert sorted(p.name for p in SOURCE.iterdir()) == ["app.py", "plugin.toml"]
    assert "from vultrino_pdk import" in (SOURCE / "app.py").read_text()
