"""The ``http`` interface (world 1.3.0) on core modules, on every engine: the guest's request
bytes reach the call's handler unchanged, its answer comes back into guest memory, and a call
that may send nothing gets the ``no-credential`` answer. (Requests for real, against a local
server, are in ``tests/e2e/test_cli_host_http.py``.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests import guests
from tests.integration.test_host_keys import REQUEST, engine, runtime  # noqa: F401 - fixtures
from vultrino import _msgpack
from vultrino.errors import ModuleError
from vultrino.runtime import KeyRing, WasmRuntime


def test_the_request_reaches_the_handler_and_the_answer_the_guest(
    runtime: WasmRuntime,  # noqa: F811 - the fixture
) -> None:
    sent = _msgpack.packb({"auth": "bearer", "url": "https://api.example.test/x"})
    seen: list[bytes] = []

    def handler(data: bytes) -> bytes:
        seen.append(data)
        return _msgpack.packb({"ok": {"status": 201, "body": "made"}})

    module = runtime.load(guests.http_send(sent), plugin="http-probe")
    try:
        ring = KeyRing({"token": "t0ken-value"}, http=handler)
        answer: Any = module.execute(REQUEST, ring)["ok"]
        assert seen == [sent]
        assert answer == {"ok": {"status": 201, "body": "made"}}
        # the same instance, a call without a credential: nothing is sent
        answer = module.execute(REQUEST, None)["ok"]
        assert answer["error"]["code"] == "no-credential"
        assert len(seen) == 1
        # a ring without a handler (the manifest declares no [http]) is refused the same way
        assert module.execute(REQUEST, KeyRing({}))["ok"]["error"]["code"] == "no-credential"
    finally:
        module.close()


def test_a_wrong_send_signature_is_refused_at_load(
    runtime: WasmRuntime,  # noqa: F811 - the fixture
) -> None:
    bad = guests.abi2(
        "(call $respond (i32.const 0) (i32.const 0))",
        imports=f'(import "{guests.HTTP_MODULE}" "send" (func $send (param i32 i32)))',
    )
    with pytest.raises(ModuleError, match=r"http@1\.3\.0`\.`send` has signature"):
        runtime.load(bad, plugin="bad-http")
    other = guests.abi2(
        "(call $respond (i32.const 0) (i32.const 0))",
        imports=f'(import "{guests.HTTP_MODULE}" "fetch" (func $f (param i32 i32 i32)))',
    )
    with pytest.raises(ModuleError, match="not a function of the http interface"):
        runtime.load(other, plugin="bad-http")


def test_a_component_sends_through_the_same_handler() -> None:
    from tests import component_guests
    from vultrino.runtime import available_engines

    if "wasmtime" not in available_engines():
        pytest.skip("components run on wasmtime")
    sent = _msgpack.packb({"auth": "bearer", "url": "https://api.example.test/c"})
    seen: list[bytes] = []

    def handler(data: bytes) -> bytes:
        seen.append(data)
        return _msgpack.packb({"ok": {"status": 200, "body": "from the host"}})

    with WasmRuntime("wasmtime") as rt:
        module = rt.load(component_guests.http_send(sent), plugin="http-component")
        try:
            answer = module.execute(REQUEST, KeyRing({"token": "x"}, http=handler))["ok"]
            assert seen == [sent]
            assert answer == {"ok": {"status": 200, "body": "from the host"}}
            assert module.execute(REQUEST, None)["ok"]["error"]["code"] == "no-credential"
        finally:
            module.close()
