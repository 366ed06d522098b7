"""The ``keys`` interface (world 1.2.0) on core modules, on every engine: each operation
checked with an independent library, each refusal as a typed ``key-error``, and a hostile guest
that never gets the bytes of its host-only field (its whole linear memory is scanned).

Guests are WAT (``tests/guests.py``): ``keys_call`` calls one function once and answers the
canonical-ABI record and the output; ``keys_hostile`` tries every function on every name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import guests
from vultrino.errors import ModuleError
from vultrino.runtime import KeyRing, Limits, PluginModule, WasmRuntime, available_engines
from vultrino.runtime.engine import Engine
from vultrino.runtime.wit import KEY_ERRORS, KEY_FORMATS

RAW, HEX, B64, PEM, B32 = (KEY_FORMATS.index(f) for f in ("raw", "hex", "base64", "pem", "base32"))
VARIANTS = ["wasmtime", "wasmtime-public", "wasmer"]
SECRET_HEX = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


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


REQUEST: dict[str, Any] = {"action": "go", "params": {}, "credential": None}


def call(  # noqa: PLR0917 - the arguments of one keys call, in order
    runtime: WasmRuntime,
    fn: str,
    kind: str,
    field: str,
    fmt: int,
    data: bytes,
    ring: Any,
    version: str = guests.KEYS_MODULE,
) -> tuple[int, int, bytes]:
    """(tag, error case or 0, output) of one ``keys.<fn>`` call made by a guest importing it
    from ``version`` of the interface (1.2.0 unless told)."""
    wasm = guests.keys_call(fn, kind, field, fmt, data, version)
    module = runtime.load(wasm, plugin="keys-probe")
    try:
        out = module.execute(REQUEST, ring)["ok"]
    finally:
        module.close()
    if kind == "hash":
        return 0, 0, out[8:]
    tag = out[0]
    return tag, (out[4] if tag else 0), out[12:]


def ok(  # noqa: PLR0917 - as call()
    runtime: WasmRuntime,
    fn: str,
    kind: str,
    field: str,
    fmt: int,
    data: bytes,
    ring: Any,
    version: str = guests.KEYS_MODULE,
) -> bytes:
    tag, case, out = call(runtime, fn, kind, field, fmt, data, ring, version)
    assert tag == 0, f"{fn} failed with {KEY_ERRORS[case]}"
    return out


def error(  # noqa: PLR0917 - as call()
    runtime: WasmRuntime,
    fn: str,
    kind: str,
    field: str,
    fmt: int,
    data: bytes,
    ring: Any,
    version: str = guests.KEYS_MODULE,
) -> str:
    tag, case, out = call(runtime, fn, kind, field, fmt, data, ring, version)
    assert tag == 1 and out == b"", (tag, out)
    return KEY_ERRORS[case]


# --- keys --------------------------------------------------------------------------------------


def _ed25519() -> tuple[bytes, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return seed, pem


def _pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return str(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )


@pytest.mark.parametrize(
    ("fn", "algorithm"),
    [("hmac-sha1", "sha1"), ("hmac-sha256", "sha256"), ("hmac-sha512", "sha512")],
)
def test_hmac_in_every_key_format(runtime: WasmRuntime, fn: str, algorithm: str) -> None:
    key = b"\x00key\xff bytes"
    ring = KeyRing(
        {
            "raw": "Jefe",
            "hex": "0x" + key.hex(),
            "b64": base64.urlsafe_b64encode(key).decode().rstrip("="),
        }
    )
    # RFC 2202 / RFC 4231 test case 2
    assert (
        ok(runtime, fn, "sign", "raw", RAW, b"what do ya want for nothing?", ring)
        == hmac.new(b"Jefe", b"what do ya want for nothing?", algorithm).digest()
    )
    expected = hmac.new(key, b"data", algorithm).digest()
    assert ok(runtime, fn, "sign", "hex", HEX, b"data", ring) == expected
    assert ok(runtime, fn, "sign", "b64", B64, b"data", ring) == expected


def test_base32_keys_and_hmac_sha384_in_world_1_3(runtime: WasmRuntime) -> None:
    """World 1.3.0: ``base32`` reads a secret as authenticator apps show it (either case,
    padding optional, spaces and dashes between groups), and ``hmac-sha384`` is HS384's MAC."""
    v13 = guests.KEYS_MODULE_1_3
    seed = b"12345678901234567890"  # RFC 4226's secret
    counter = (1).to_bytes(8, "big")
    ring = KeyRing(
        {
            "upper": base64.b32encode(seed).decode(),
            "shown": "gezd gnbv-gy3t qojq gezd gnbv gy3t qojq",
            "unpadded": base64.b32encode(b"12345").decode().rstrip("=") + "\n",
            "bad": "GEZ1",
            "none": "====",
            "jefe": "Jefe",
        }
    )
    expected = hmac.new(seed, counter, "sha1").digest()
    for field in ("upper", "shown"):
        assert ok(runtime, "hmac-sha1", "sign", field, B32, counter, ring, v13) == expected
    assert ok(runtime, "hmac-sha256", "sign", "unpadded", B32, b"m", ring, v13) == (
        hmac.new(b"12345", b"m", "sha256").digest()
    )
    assert error(runtime, "hmac-sha1", "sign", "bad", B32, b"m", ring, v13) == "bad-format"
    assert error(runtime, "hmac-sha1", "sign", "none", B32, b"m", ring, v13) == "bad-format"
    # RFC 4231 test case 2, HMAC-SHA-384
    assert ok(
        runtime, "hmac-sha384", "sign", "jefe", RAW, b"what do ya want for nothing?", ring, v13
    ).hex() == (
        "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
        "8e2240ca5e69e2c78b3239ecfab21649"
    )


def test_a_1_2_module_cannot_import_hmac_sha384(runtime: WasmRuntime) -> None:
    """``hmac-sha384`` is 1.3.0's: a 1.2.0 module importing it is refused at load, naming it.
    A core module passes key formats as indexes: ``5`` from a 1.2.0 module reads base32 as it
    does from a 1.3.0 one (as ``4`` reads OpenPGP; its WIT has no name for them), and an index
    past the cases is ``bad-format``."""
    ring = KeyRing({"k": "GEZDGNBV"})
    assert ok(runtime, "hmac-sha1", "sign", "k", B32, b"m", ring) == (
        hmac.new(b"12345", b"m", "sha1").digest()
    )
    assert error(runtime, "hmac-sha1", "sign", "k", B32 + 1, b"m", ring) == "bad-format"
    with pytest.raises(ModuleError, match="hmac-sha384"):
        runtime.load(guests.keys_call("hmac-sha384", "sign", "k", RAW, b"m"), plugin="old")


def test_rfc4231_vector(runtime: WasmRuntime) -> None:
    ring = KeyRing({"k": "Jefe"})
    out = ok(runtime, "hmac-sha256", "sign", "k", RAW, b"what do ya want for nothing?", ring)
    assert out.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_ed25519(runtime: WasmRuntime) -> None:
    from nacl.signing import VerifyKey

    seed, pem = _ed25519()
    ring = KeyRing({"seed": seed.hex(), "pem": pem})
    public = ok(runtime, "ed25519-public-key", "public", "seed", HEX, b"", ring)
    assert ok(runtime, "ed25519-public-key", "public", "pem", PEM, b"", ring) == public
    signature = ok(runtime, "ed25519-sign", "sign", "pem", PEM, b"hello", ring)
    assert len(signature) == 64
    VerifyKey(public).verify(b"hello", signature)  # raises when wrong


def test_p256(runtime: WasmRuntime) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    key = ec.generate_private_key(ec.SECP256R1())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    ring = KeyRing({"pem": _pem(key), "scalar": base64.b64encode(scalar).decode()})
    public = ok(runtime, "p256-public-key", "public", "scalar", B64, b"", ring)
    assert public == ok(runtime, "p256-public-key", "public", "pem", PEM, b"", ring)
    signature = ok(runtime, "p256-sign", "sign", "pem", PEM, b"payload", ring)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    verifier = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
    verifier.verify(utils.encode_dss_signature(r, s), b"payload", ec.ECDSA(hashes.SHA256()))


def test_secp256k1_is_recoverable_and_deterministic(runtime: WasmRuntime) -> None:
    from coincurve import PublicKey

    ring = KeyRing({"key": "0x" + SECRET_HEX})
    digest = hashlib.sha256(b"message").digest()
    public = ok(runtime, "secp256k1-public-key", "public", "key", HEX, b"", ring)
    signature = ok(runtime, "secp256k1-sign", "sign", "key", HEX, digest, ring)
    assert len(signature) == 65 and signature[64] in (0, 1)
    recovered = PublicKey.from_signature_and_message(signature, digest, hasher=None)
    assert recovered.format(compressed=False) == public
    # RFC 6979: the same digest gives the same signature
    assert ok(runtime, "secp256k1-sign", "sign", "key", HEX, digest, ring) == signature
    # low s (BIP 62): s <= n/2
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    assert int.from_bytes(signature[32:64], "big") <= n // 2


def test_rsa(runtime: WasmRuntime) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ring = KeyRing({"pem": _pem(key)})
    der = ok(runtime, "rsa-public-key", "public", "pem", PEM, b"", ring)
    public = serialization.load_der_public_key(der)
    assert isinstance(public, rsa.RSAPublicKey)
    pkcs1 = ok(runtime, "rsa-sign-pkcs1-sha256", "sign", "pem", PEM, b"m", ring)
    public.verify(pkcs1, b"m", padding.PKCS1v15(), hashes.SHA256())
    pss = ok(runtime, "rsa-sign-pss-sha256", "sign", "pem", PEM, b"m", ring)
    public.verify(pss, b"m", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())


def test_hashes(runtime: WasmRuntime) -> None:
    assert ok(runtime, "sha256", "hash", "", 0, b"abc", None) == hashlib.sha256(b"abc").digest()
    assert ok(runtime, "sha512", "hash", "", 0, b"abc", None) == hashlib.sha512(b"abc").digest()
    # Keccak-256 (Ethereum), not SHA3-256
    assert ok(runtime, "keccak256", "hash", "", 0, b"", None).hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )


# --- refusals ----------------------------------------------------------------------------------


def test_every_refusal_is_a_typed_error(runtime: WasmRuntime) -> None:
    ring = KeyRing(
        {"key": SECRET_HEX, "text": "not a key!", "pem": "-----BEGIN PRIVATE KEY-----\nnope"}
    )
    assert error(runtime, "hmac-sha256", "sign", "key", RAW, b"m", None) == "no-credential"
    assert error(runtime, "hmac-sha256", "sign", "other", RAW, b"m", ring) == "unknown-field"
    assert error(runtime, "hmac-sha256", "sign", "text", HEX, b"m", ring) == "bad-format"
    assert error(runtime, "hmac-sha256", "sign", "text", B64, b"m", ring) == "bad-format"
    assert error(runtime, "hmac-sha256", "sign", "key", 9, b"m", ring) == "bad-format"
    assert error(runtime, "rsa-sign-pss-sha256", "sign", "pem", PEM, b"m", ring) == "bad-format"
    assert error(runtime, "rsa-public-key", "public", "key", HEX, b"", ring) == "bad-key"
    assert error(runtime, "ed25519-sign", "sign", "text", RAW, b"m", ring) == "bad-key"
    assert error(runtime, "secp256k1-sign", "sign", "key", HEX, b"short", ring) == "bad-input"
    zero = KeyRing({"key": "00" * 32})
    assert error(runtime, "secp256k1-public-key", "public", "key", HEX, b"", zero) == "bad-key"


def test_keys_imports_need_abi2_names_and_signatures(runtime: WasmRuntime) -> None:
    bad = guests.wat2wasm(
        f'(module (import "{guests.KEYS_MODULE}" "hmac-sha256" (func (param i32)))'
        '(memory (export "memory") 1)'
        '(func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 0)'
        '(func (export "vultrino:plugin/handler@1.2.0#execute") (param i32 i32) (result i32)'
        " i32.const 0))"
    )
    with pytest.raises(ModuleError, match=r"hmac-sha256.*expected"):
        runtime.load(bad, plugin="bad-keys")
    unknown = bad.replace(b"hmac-sha256", b"hmac-sha384")
    with pytest.raises(ModuleError, match="not a function of that version's keys interface"):
        runtime.load(unknown, plugin="bad-keys")
    # a 1.2.0 module cannot import what 1.3.0 added
    newer = guests.wat2wasm(
        f'(module (import "{guests.KEYS_MODULE}" "ed25519-verify" (func (param i32 i32 i32 i32'
        " i32 i32) (result i32)))"
        '(memory (export "memory") 1)'
        '(func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 0)'
        '(func (export "vultrino:plugin/handler@1.2.0#execute") (param i32 i32) (result i32)'
        " i32.const 0))"
    )
    with pytest.raises(ModuleError, match=r"ed25519-verify.*not a function of that version"):
        runtime.load(newer, plugin="bad-keys")


# --- the proof: a hostile guest never holds the key --------------------------------------------


def _forms(secret: str) -> list[bytes]:
    """Every form of the secret a guest could hold: the text, its bytes decoded from hex, and
    the common encodings of both."""
    raw = bytes.fromhex(secret)
    out = [secret.encode(), secret.upper().encode(), raw, raw[::-1]]
    out += [base64.b64encode(raw), base64.urlsafe_b64encode(raw), base64.b64encode(secret.encode())]
    # any 8-byte window of the key would be a leak too
    out += [raw[i : i + 8] for i in range(0, 32, 8)]
    return out


def _memory(module: PluginModule) -> bytes:
    """The whole linear memory of the instance that served the last call."""
    session = module._idle[-1] if module._idle else module._local.owned.session
    memory = session.instance.memory
    return bytes(memory.read(0, memory.size()))


def test_hostile_guest_never_gets_the_secret(runtime: WasmRuntime) -> None:
    from vultrino.runtime.wit import KEYS_FUNCTIONS

    secret = SECRET_HEX
    request = {
        "action": "go",
        "params": {},
        "credential": {"alias": "k", "type": "t", "fields": {"private_key": None, "label": "x"}},
    }
    ring = KeyRing({"private_key": secret, "label": "x"})
    module = runtime.load(guests.keys_hostile(), plugin="hostile")
    try:
        answer = module.execute(request, ring)
        # the request carried the field's name and nil
        assert answer == {"ok": request}
        memory = _memory(module)
    finally:
        module.close()
    assert len(memory) >= 3 * 65536
    for form in _forms(secret):
        assert form not in memory, f"a form of the secret ({len(form)} bytes) is in guest memory"
    # it did get real outputs: the secp256k1 public key of the field is in its memory
    from coincurve import PrivateKey

    public = PrivateKey(bytes.fromhex(secret)).public_key.format(compressed=False)
    assert public in memory
    assert hmac.new(secret.encode(), bytes(range(32)), "sha512").digest() in memory
    assert len(KEYS_FUNCTIONS) == 20


def test_a_call_without_keys_cannot_use_the_last_calls(runtime: WasmRuntime) -> None:
    """The ring is bound for one call: the next call (same instance) without a credential
    gets no-credential, not the previous call's key."""
    module = runtime.load(guests.keys_call("hmac-sha256", "sign", "k", RAW, b"m"), plugin="p")
    try:
        first = module.execute(REQUEST, KeyRing({"k": "secret-one"}))["ok"]
        second = module.execute(REQUEST, None)["ok"]
    finally:
        module.close()
    assert first[0] == 0 and first[12:] == hmac.new(b"secret-one", b"m", "sha256").digest()
    assert second[0] == 1 and KEY_ERRORS[second[4]] == "no-credential"
    assert struct.unpack("<I", second[8:12]) == (0,)


# --- components (wasmtime) ---------------------------------------------------------------------


def test_a_component_signs_with_a_host_key() -> None:
    from tests import component_guests
    from vultrino.runtime import load_engine

    if "wasmtime" not in available_engines():
        pytest.skip("components run on wasmtime only")
    with WasmRuntime(load_engine("wasmtime")) as rt:
        module = rt.load(component_guests.keys_hmac(), plugin="keys-component")
        try:
            signed = module.execute(REQUEST, KeyRing({"secret": "k3y"}))
            without = module.execute(REQUEST, None)
            unknown = module.execute(REQUEST, KeyRing({"other": "k3y"}))
        finally:
            module.close()
    assert signed == {"ok": hmac.new(b"k3y", b"msg", "sha256").digest()}
    assert without == {"ok": KEY_ERRORS.index("no-credential")}
    assert unknown == {"ok": KEY_ERRORS.index("unknown-field")}


def test_a_1_3_component_reads_base32_and_signs_hs384() -> None:
    """Components get the 1.3.0 additions too: ``base32`` (the sixth case of key-format) and
    ``hmac-sha384``; a 1.3.0 component whose key-format lacks ``base32`` is refused."""
    from tests import component_guests
    from vultrino.runtime import load_engine

    if "wasmtime" not in available_engines():
        pytest.skip("components run on wasmtime only")
    cases = component_guests.KEY_FORMAT_CASES_1_3
    ring = KeyRing({"secret": "gezd gnbv gy3t qojq gezd gnbv gy3t qojq"})
    seed = b"12345678901234567890"
    with WasmRuntime(load_engine("wasmtime")) as rt:
        for function, algorithm in (("hmac-sha1", "sha1"), ("hmac-sha384", "sha384")):
            wasm = component_guests.keys_hmac(function, B32, cases)
            module = rt.load(wasm, plugin="keys-b32")
            try:
                signed = module.execute(REQUEST, ring)
                bad = module.execute(REQUEST, KeyRing({"secret": "not base32!"}))
            finally:
                module.close()
            assert signed == {"ok": hmac.new(seed, b"msg", algorithm).digest()}
            assert bad == {"ok": KEY_ERRORS.index("bad-format")}
        five = cases.replace(' "base32"', "")
        with pytest.raises(ModuleError, match="hmac-sha1"):
            rt.load(component_guests.keys_hmac("hmac-sha1", 0, five), plugin="keys-five")


def test_a_component_importing_an_unknown_keys_function_is_refused() -> None:
    from tests import component_guests
    from vultrino.runtime import load_engine

    if "wasmtime" not in available_engines():
        pytest.skip("components run on wasmtime only")
    wat = component_guests.component_wat(
        "echo",
        extra_imports='(import "vultrino:plugin/keys@1.2.0" (instance '
        '(export "hmac-md5" (func (param "data" (list u8)) (result (list u8))))))',
    )
    with WasmRuntime(load_engine("wasmtime")) as rt, pytest.raises(ModuleError, match="hmac-md5"):
        rt.load(guests.wat2wasm(wat), plugin="bad-keys-component")


# --- the shipped hmac plugin, through the plugin layer ----------------------------------------


def test_the_shipped_hmac_plugin_never_holds_its_key(runtime: WasmRuntime) -> None:
    """``plugins/hmac`` declares its key ``access = "host"``: the same outputs as before (RFC
    4231 and Python's hmac), and after the calls the key is nowhere in the guest's memory."""
    from pathlib import Path

    from vultrino.plugins.base import CredentialView
    from vultrino.plugins.manifest import load_manifest
    from vultrino.plugins.wasm import WasmPlugin

    directory = Path(__file__).resolve().parents[2] / "plugins" / "hmac"
    manifest = load_manifest(directory / "plugin.toml")
    assert manifest.credential_type("hmac_key").host_fields == ("key",)  # type: ignore[union-attr]
    plugin = WasmPlugin(directory, manifest, runtime)
    key = "Jefe-webhook-key-0123456789abcdef"
    try:
        # RFC 4231 test case 2: key "Jefe"
        jefe = CredentialView("j", "hmac_key", {"key": "4a656665", "encoding": "hex"})
        out = plugin.execute("sign", {"message": "what do ya want for nothing?"}, jefe).value
        assert out["signature"] == (
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        )
        view = CredentialView("w", "hmac_key", {"key": key, "encoding": "utf8"})
        for alg in ("sha256", "sha512"):
            signed = plugin.execute("sign", {"message": "body", "algorithm": alg}, view).value
            assert signed["signature"] == hmac.new(key.encode(), b"body", alg).hexdigest()
            checked = plugin.execute(
                "verify",
                {"message": "body", "signature": signed["signature"], "algorithm": alg},
                view,
            ).value
            assert checked == {"valid": True}
        module = plugin.module
        assert isinstance(module, PluginModule)
        memory = _memory(module)
    finally:
        plugin.close()
    for form in (key.encode(), base64.b64encode(key.encode()), key.encode().hex().encode()):
        assert form not in memory


def _secret_forms(text: str, key: bytes) -> list[bytes]:
    """What a guest holding ``text`` (whose key bytes are ``key``) could keep: the text, the
    key, their common encodings, and any 8-byte window of the key."""
    out = [text.encode(), key, key.hex().encode(), base64.b64encode(key)]
    out += [base64.b64encode(text.encode()), base64.b32encode(key).rstrip(b"=")]
    out += [key[i : i + 8] for i in range(0, len(key) - 7, 8)]
    return out


def _totp_jwt_calls(directory: Path, runtime: WasmRuntime, totp: str, jwt: str) -> list[bytes]:
    """A totp ``code`` and jwt ``mint``/``verify`` through ``WasmPlugin`` from the plugins in
    ``directory``/{totp,jwt}; each instance's whole memory after its calls."""
    import jwt as pyjwt

    from vultrino.plugins.base import CredentialView
    from vultrino.plugins.manifest import load_manifest
    from vultrino.plugins.wasm import WasmPlugin

    memories = []
    for name, ctype, fields, action, params in (
        ("totp", "totp", {"secret": totp, "algorithm": "SHA256"}, "code", {"time": 59}),
        ("jwt", "jwt_key", {"secret": jwt, "algorithm": "HS384"}, "mint", {"ttl": 60}),
    ):
        plugin = WasmPlugin(
            directory / name, load_manifest(directory / name / "plugin.toml"), runtime
        )
        try:
            view = CredentialView("k", ctype, fields)
            out = plugin.execute(action, params, view).value
            if name == "totp":
                key = base64.b32decode(totp.replace(" ", "").upper())
                counter = (1).to_bytes(8, "big")
                mac = hmac.new(key, counter, "sha256").digest()
                offset = mac[-1] & 15
                value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFF_FFFF
                assert out["code"] == f"{value % 10**6:06d}"
            else:
                assert pyjwt.decode(out["token"], jwt, algorithms=["HS384"])["exp"]
                verdict = plugin.execute("verify", {"token": out["token"]}, view).value
                assert verdict["valid"] is True
            module = plugin.module
            assert isinstance(module, PluginModule)
            memories.append(_memory(module))
        finally:
            plugin.close()
    return memories


def test_the_shipped_totp_and_jwt_plugins_never_hold_their_secrets(
    runtime: WasmRuntime, tmp_path: Path
) -> None:
    """``plugins/totp`` and ``plugins/jwt`` (0.2.0) declare ``secret`` ``access = "host"``: after
    a totp code and a jwt mint and verify, no form of either secret is in the instance's memory.
    The same calls through the 0.1.0 modules (the secret in the request) leave it there: the
    scan sees a secret that is present."""
    import shutil

    totp = "JBSW Y3DP EHPK 3PXP GEZD GNBV GY3T QOJQ"
    jwt = "Zq7-hs384-memscan-Wv2xKp9Lr4Tn8Ye3Uj6Hb5Gd1Qm0Fc"
    forms = _secret_forms(totp, base64.b32decode(totp.replace(" ", "")))
    forms += _secret_forms(jwt, jwt.encode())
    root = Path(__file__).resolve().parents[2]
    for memory in _totp_jwt_calls(root / "plugins", runtime, totp, jwt):
        assert len(memory) >= 65536
        for form in forms:
            assert form not in memory, f"a form of a secret ({len(form)} bytes) is in guest memory"
    # the control: 0.1.0, which decodes the secret itself, has it in memory after the same calls
    guests_dir = root / "benchmarks" / "guests"
    for name in ("totp", "jwt"):
        (tmp_path / name).mkdir()
        shutil.copy(guests_dir / f"{name}_guest_key.toml", tmp_path / name / "plugin.toml")
        shutil.copy(
            guests_dir / f"vultrino_{name}_guest_key.wasm",
            tmp_path / name / f"vultrino_{name}.wasm",
        )
    old_totp, old_jwt = _totp_jwt_calls(tmp_path, runtime, totp, jwt)
    assert totp.encode() in old_totp  # the request carried it
    assert jwt.encode() in old_jwt


# --- the Python guest SDK ----------------------------------------------------------------------


@pytest.mark.slow
def test_the_python_sdk_keys_module(tmp_path: Path) -> None:
    """``from vultrino_pdk import keys`` in a componentize-py component: bytes back from the
    host, and a refusal as ``keys.KeyError`` with the WIT case. Built with componentize-py
    directly (not through the installer's build sandbox)."""
    import shutil
    import subprocess

    from vultrino.runtime import load_engine

    tool = Path(sys.executable).with_name("componentize-py")
    if not tool.exists() and shutil.which("componentize-py") is None:
        pytest.skip("componentize-py is not installed")
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "keys.wasm"
    subprocess.run(
        [
            str(tool if tool.exists() else shutil.which("componentize-py")),
            "-d",
            str(root / "wit" / "vultrino-plugin.wit"),
            "-w",
            "plugin",
            "componentize",
            "app",
            "-p",
            str(root / "tests" / "fixtures" / "python_keys"),
            "-p",
            str(root / "sdk" / "python"),
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    credential = {"alias": "a", "type": "t", "fields": {"secret": None}}
    with WasmRuntime(load_engine("wasmtime")) as rt:
        module = rt.load(out.read_bytes(), plugin="python-keys")
        try:

            def sign(ring: KeyRing | None, **params: str) -> Any:
                request = {"action": "sign", "params": params, "credential": credential}
                return module.execute(request, ring)["ok"]

            signed = sign(KeyRing({"secret": "k"}), message="msg")
            refused = sign(KeyRing({"secret": "zz!"}), message="m", fmt="hex")
            none = sign(None, message="m")
        finally:
            module.close()
    assert signed["mac"] == hmac.new(b"k", b"msg", "sha256").hexdigest()
    assert signed["keccak"] == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert signed["field_seen"] == {"secret": None}
    assert refused == {
        "error_case": "bad-format",
        "code": "invalid_credential",
        "field_seen": {"secret": None},
    }
    assert none["error_case"] == "no-credential"
