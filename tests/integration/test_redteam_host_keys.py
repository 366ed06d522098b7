"""Red-team checks of "the plugin never holds the key", beyond tests/integration/test_host_keys.py.

A hostile plugin (or a hostile update of a trusted one's module) asking the host's ``keys``
interface for outputs that would let it derive a host-only secret. Each test names the finding
it pins (docs/security.md).
"""

from __future__ import annotations

import hmac
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_host_keys import VARIANTS, call
from vultrino.plugins.base import CredentialView
from vultrino.plugins.manifest import load_manifest
from vultrino.plugins.wasm import WasmPlugin
from vultrino.runtime import KeyRing, Limits, WasmRuntime, available_engines
from vultrino.runtime.engine import Engine
from vultrino.runtime.wit import KEY_ERRORS, KEY_FORMATS

ROOT = Path(__file__).resolve().parents[2]
RAW, HEX = KEY_FORMATS.index("raw"), KEY_FORMATS.index("hex")
PASSPHRASE = "hunter2-reused-everywhere"


@pytest.fixture(scope="module", params=VARIANTS)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    variant: str = request.param
    name = variant.split("-", maxsplit=1)[0]
    if name not in available_engines():
        pytest.skip(f"the {name} engine is not installed under Python {sys.version_info[:2]}")
    if variant == "wasmtime-public":
        from vultrino.runtime.wasmtime import WasmtimeEngine

        eng: Engine = WasmtimeEngine(fastpath=False)
    else:
        from vultrino.runtime import load_engine

        eng = load_engine(name)
    yield eng
    eng.close()


@pytest.fixture
def runtime(engine: Engine) -> Iterator[WasmRuntime]:
    with WasmRuntime(engine, limits=Limits(deadline_s=5.0)) as rt:
        yield rt


def _pgp_ring(runtime: WasmRuntime) -> KeyRing:
    """The key ring the shipped pgp plugin's calls get for a credential with a passphrase."""
    directory = ROOT / "plugins" / "pgp"
    plugin = WasmPlugin(directory, load_manifest(directory / "plugin.toml"), runtime)
    try:
        view = CredentialView(
            "k", "pgp_key", {"private_key": "-----BEGIN PGP...", "passphrase": PASSPHRASE}
        )
        payload, ring, _secrets = plugin._payload(view)
    finally:
        plugin.close()
    assert payload["fields"]["passphrase"] is None
    return ring


@pytest.mark.parametrize(
    ("fn", "kind", "fmt"),
    [
        ("hmac-sha1", "sign", RAW),
        ("hmac-sha256", "sign", RAW),
        ("hmac-sha512", "sign", RAW),
        ("ed25519-sign", "sign", RAW),
        ("ed25519-public-key", "public", RAW),
        ("secp256k1-public-key", "public", HEX),
    ],
)
def test_a_passphrase_field_is_no_key(runtime: WasmRuntime, fn: str, kind: str, fmt: int) -> None:
    """Finding: a module could ask for ``hmac-sha256("passphrase", raw, x)`` and return the MAC,
    an offline guessing oracle for a passphrase a person chose (and may use elsewhere). A field
    that is another's ``passphrase_field`` now only unlocks that key: ``unknown-field``."""
    ring = _pgp_ring(runtime)
    tag, case, out = call(runtime, fn, kind, "passphrase", fmt, b"chosen by the plugin", ring)
    assert (tag, KEY_ERRORS[case], out) == (1, "unknown-field", b"")
    # the plugin's own key field is still a key (a plain ring, to show the guest call works)
    plain = KeyRing({"passphrase": PASSPHRASE})
    tag, _case, out = call(runtime, "hmac-sha256", "sign", "passphrase", RAW, b"m", plain)
    assert tag == 0 and out == hmac.new(PASSPHRASE.encode(), b"m", "sha256").digest()


def test_the_passphrase_still_unlocks_its_key_directly() -> None:
    """The ring keeps reading the passphrase for the ``openpgp`` format (the pgp plugin's
    tests sign with a protected key through it); only naming it as a key is refused."""
    from vultrino.runtime._keys import KeyFailure, sign_op

    ring = KeyRing({"private_key": "x", "passphrase": PASSPHRASE}, {"private_key": "passphrase"})
    with pytest.raises(KeyFailure) as refused:
        sign_op("hmac-sha256")(ring, "passphrase", RAW, b"m")
    assert refused.value.case == "unknown-field"
    assert ring.with_http(lambda b: b).passphrases == {"private_key": "passphrase"}
    with pytest.raises(KeyFailure) as again:
        sign_op("hmac-sha512")(ring.with_http(lambda b: b), "passphrase", RAW, b"m")
    assert again.value.case == "unknown-field"


# --- http.send: what the host reads -------------------------------------------------------------

FLOOD_AT = 20 * 1024 * 1024  # where the guest builds its request, past its heap


def _flood_guest(head: bytes, count: int) -> bytes:
    """A guest that sends ``head`` followed by ``count`` bytes of 0x80 (an empty map each),
    built at run time in its own memory, and answers the host's answer."""
    from tests.guests import HTTP_MODULE, abi2, data_string

    total = len(head) + count
    body = f"""
    (local $n i32) (local $out i32)
    (drop (memory.grow (i32.const {(FLOOD_AT + total) // 65536 + 1 - 3})))
    (memory.copy (i32.const {FLOOD_AT}) (i32.const 65536) (i32.const {len(head)}))
    (memory.fill (i32.const {FLOOD_AT + len(head)}) (i32.const 0x80) (i32.const {count}))
    (call $send (i32.const {FLOOD_AT}) (i32.const {total}) (i32.const 1024))
    (local.set $n (i32.load (i32.const 1028)))
    (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
                                   (i32.add (local.get $n) (i32.const 4))))
    (i32.store8 (local.get $out) (i32.const 0x81))
    (i32.store8 offset=1 (local.get $out) (i32.const 0xa2))
    (i32.store8 offset=2 (local.get $out) (i32.const 0x6f))
    (i32.store8 offset=3 (local.get $out) (i32.const 0x6b))
    (memory.copy (i32.add (local.get $out) (i32.const 4))
                 (i32.load (i32.const 1024)) (local.get $n))
    (call $respond (local.get $out) (i32.add (local.get $n) (i32.const 4)))"""
    imports = f'(import "{HTTP_MODULE}" "send" (func $send (param i32 i32 i32)))'
    return abi2(body, imports=imports, extra=f"(data (i32.const 65536) {data_string(head)})")


def test_a_request_of_millions_of_empty_maps_is_refused_before_it_is_built(
    runtime: WasmRuntime,
) -> None:
    """Finding: ``http.send`` read up to 16 MiB of MessagePack with no bound on its number of
    values, in the host (outside the guest's memory cap, where its deadline cannot fire):
    16 MiB of empty maps became 16 million dicts, 2.3 GiB and 30 s on a loaded machine. Now a
    request of more than 100 000 values (``MAX_REQUEST_VALUES``) is ``invalid-request`` at once."""
    import struct

    from vultrino import _msgpack
    from vultrino.plugins._host_http import HostHttp
    from vultrino.plugins.base import HttpSpec
    from vultrino.plugins.http import HttpPlugin

    count = 8 * 1024 * 1024
    # {"auth": "bearer", "json": [ {} x count ]} (no url: nothing could be sent either way)
    head = b"\x82" + _msgpack.packb("auth") + _msgpack.packb("bearer")
    head += _msgpack.packb("json") + b"\xdd" + struct.pack(">I", count)
    sender = HttpPlugin()
    view = CredentialView("c", "t", {"token": "t0ken-value-1234"}, secret_fields=("token",))
    host = HostHttp("flood", HttpSpec(hosts=("api.example.test",), auth=("bearer",)), sender, view)
    ring = KeyRing({"token": "t0ken-value-1234"}, http=host)
    module = runtime.load(_flood_guest(head, count), plugin="flood")
    try:
        answer = module.execute({"action": "go", "params": {}, "credential": None}, ring)
    finally:
        module.close()
        sender.close()
    error = answer["ok"]["error"]
    assert error["code"] == "invalid-request"
    assert "more than 100000 values" in error["message"]  # docs/plugins/host-keys.md
    assert "body text" in error["message"]
