"""OpenPGP keys in the host (world 1.3.0): the ``openpgp`` key format, ``openpgp-public-key``
and the signature checks, on core modules (every engine) and components (wasmtime), and the
shipped ``pgp`` plugin never holding the key.

Keys are made by the real ``gpg`` in a throwaway home (skipped without it); every signature the
host makes with them is checked by an independent library (``cryptography``), and every check
the host makes is compared with what that library says.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from tests import guests
from vultrino.runtime import (
    KeyRing,
    Limits,
    PluginModule,
    WasmRuntime,
    _keys,
    _openpgp,
    available_engines,
)
from vultrino.runtime.engine import Engine
from vultrino.runtime.wit import KEY_ERRORS, KEY_FORMATS

OPENPGP = KEY_FORMATS.index("openpgp")
PASSPHRASE = "open sesame 4411"
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg")


@dataclass
class Made:
    ed_protected: str  # armored, passphrase PASSPHRASE
    rsa_plain: str
    ed_public: bytes  # gpg --export
    rsa_public: bytes


def _gpg(home: Path, *args: str) -> bytes:
    r = subprocess.run(
        ["gpg", "--batch", "--pinentry-mode", "loopback", *args],
        env={**os.environ, "GNUPGHOME": str(home)},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def made() -> Iterator[Made]:
    home = Path(tempfile.mkdtemp(prefix="vgpk"))
    home.chmod(0o700)
    try:
        _gpg(home, "--passphrase", PASSPHRASE, "--quick-gen-key", "E <e@x>", "ed25519", "sign", "0")
        _gpg(home, "--passphrase", "", "--quick-gen-key", "R <r@x>", "rsa2048", "sign", "0")
        ed_protected = _gpg(home, "--passphrase", PASSPHRASE, "-a", "--export-secret-keys", "e@x")
        yield Made(
            ed_protected=ed_protected.decode(),
            rsa_plain=_gpg(home, "--passphrase", "", "-a", "--export-secret-keys", "r@x").decode(),
            ed_public=_gpg(home, "--export", "e@x"),
            rsa_public=_gpg(home, "--export", "r@x"),
        )
    finally:
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"],
            env={**os.environ, "GNUPGHOME": str(home)},
            capture_output=True,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


def _sign(ring: KeyRing, name: str, data: bytes, fmt: int = OPENPGP) -> bytes:
    return _keys.sign_op(name)(ring, "k", fmt, data)


def _public(ring: KeyRing, name: str, fmt: int = OPENPGP) -> bytes:
    return _keys.public_op(name)(ring, "k", fmt)


def _case(fn: object, *args: object) -> str:
    with pytest.raises(_keys.KeyFailure) as caught:
        fn(*args)  # type: ignore[operator]
    return caught.value.case


# --- the host side --------------------------------------------------------------------------------


def test_a_protected_ed25519_key_signs_and_exports_gpgs_public_key(made: Made) -> None:
    ring = KeyRing({"k": made.ed_protected, "p": PASSPHRASE}, {"k": "p"})
    assert _public(ring, "openpgp-public-key") == made.ed_public
    public = _public(ring, "ed25519-public-key")
    signature = _sign(ring, "ed25519-sign", b"digest bytes")
    ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, b"digest bytes")
    # the public key needs no passphrase; signing does
    no_pass = KeyRing({"k": made.ed_protected})
    assert _public(no_pass, "openpgp-public-key") == made.ed_public
    assert _case(_sign, no_pass, "ed25519-sign", b"x") == "bad-key"
    wrong = KeyRing({"k": made.ed_protected, "p": "wrong"}, {"k": "p"})
    assert _case(_sign, wrong, "ed25519-sign", b"x") == "bad-key"
    # an Ed25519 key is not an RSA key
    assert _case(_sign, ring, "rsa-sign-pkcs1-sha256", b"x") == "bad-key"


def test_an_rsa_key_signs_pkcs1_that_cryptography_verifies(made: Made) -> None:
    ring = KeyRing({"k": made.rsa_plain})
    assert _public(ring, "openpgp-public-key") == made.rsa_public
    spki = _public(ring, "rsa-public-key")
    key = serialization.load_der_public_key(spki)
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    signature = _sign(ring, "rsa-sign-pkcs1-sha256", b"message")
    key.verify(signature, b"message", padding.PKCS1v15(), hashes.SHA256())
    # the host's check agrees with cryptography's, both ways
    check = _keys.verify_op("rsa-verify-pkcs1-sha256")
    assert check(spki, b"message", signature) is True
    assert check(spki, b"messagE", signature) is False
    assert _keys.verify_op("rsa-verify-pkcs1-sha512")(spki, b"message", signature) is False
    assert check(b"not der", b"message", signature) is False


def test_ed25519_verify_agrees_with_cryptography() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    signature = key.sign(b"m")
    check = _keys.verify_op("ed25519-verify")
    assert check(public, b"m", signature) is True
    bad = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(InvalidSignature):
        key.public_key().verify(bad, b"m")
    assert check(public, b"m", bad) is False
    assert check(public[:31], b"m", signature) is False
    assert check(public, b"m", signature[:63]) is False
    assert check(b"\xff" * 32, b"m", signature) is False  # not a point


@pytest.mark.parametrize(
    ("text", "case"),
    [
        ("not armored", "bad-format"),
        (
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n!!!\n-----END PGP PRIVATE KEY BLOCK-----",
            "bad-format",
        ),
        (
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n-----END PGP PRIVATE KEY BLOCK-----",
            "bad-format",
        ),
    ],
)
def test_what_is_not_a_key_is_bad_format(text: str, case: str) -> None:
    ring = KeyRing({"k": text})
    assert _case(_public, ring, "openpgp-public-key") == case
    assert _case(_sign, ring, "ed25519-sign", b"x") == case


def test_a_damaged_or_cut_key_is_refused(made: Made) -> None:
    lines = made.rsa_plain.splitlines()
    body = [i for i, line in enumerate(lines) if line and ":" not in line and "-----" not in line]
    # a changed character: the armor checksum no longer matches
    damaged = list(lines)
    row = damaged[body[3]]
    damaged[body[3]] = ("B" if row[0] != "B" else "C") + row[1:]
    with pytest.raises(_openpgp.OpenPGPError, match="checksum"):
        _openpgp.read_secret_key("\n".join(damaged), None, None)
    # cut short (no checksum line left to catch it): a packet longer than the data
    cut = "\n".join([*lines[: body[5]], "-----END PGP PRIVATE KEY BLOCK-----"])
    with pytest.raises(_openpgp.OpenPGPError):
        _openpgp.read_secret_key(cut, None, None)
    assert _case(_public, KeyRing({"k": cut}), "openpgp-public-key") == "bad-format"


def test_openpgp_is_only_for_keys_that_can_be_openpgp(made: Made) -> None:
    ring = KeyRing({"k": made.rsa_plain})
    assert _case(_sign, ring, "hmac-sha256", b"x") == "bad-key"
    assert _case(_sign, ring, "secp256k1-sign", bytes(32)) == "bad-key"
    # openpgp-public-key needs the openpgp format
    assert _case(_public, ring, "openpgp-public-key", KEY_FORMATS.index("pem")) == "bad-format"


def test_the_refusals_never_quote_the_key(made: Made) -> None:
    ring = KeyRing({"k": made.ed_protected, "p": "wrong"}, {"k": "p"})
    with pytest.raises(_keys.KeyFailure) as caught:
        _sign(ring, "ed25519-sign", b"x")
    assert str(caught.value) == "bad-key"
    # the reader's own exception is not chained on (`from None`)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "k" in repr(ring) and made.ed_protected[40:60] not in repr(ring)


# --- through the ABI ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["wasmtime", "wasmer"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    if request.param not in available_engines():
        pytest.skip(
            f"the {request.param} engine is not installed under Python {sys.version_info[:2]}"
        )
    from vultrino.runtime import load_engine

    eng = load_engine(request.param)
    yield eng
    eng.close()


@pytest.fixture
def runtime(engine: Engine) -> Iterator[WasmRuntime]:
    with WasmRuntime(engine, limits=Limits(deadline_s=10.0)) as rt:
        yield rt


REQUEST = {"action": "go", "params": {}, "credential": None}


def test_a_1_3_module_reads_an_openpgp_key(runtime: WasmRuntime, made: Made) -> None:
    """A core module of world 1.3.0 imports keys@1.3.0 and passes format 4 (openpgp)."""
    wasm = guests.keys_call("openpgp-public-key", "public", "k", OPENPGP).replace(
        guests.KEYS_MODULE.encode(), guests.KEYS_MODULE_1_3.encode()
    )
    module = runtime.load(wasm, plugin="openpgp-guest")
    try:
        out = module.execute(REQUEST, KeyRing({"k": made.rsa_plain}))["ok"]
        refused = module.execute(REQUEST, KeyRing({"k": "junk"}))["ok"]
    finally:
        module.close()
    assert out[0] == 0 and out[12:] == made.rsa_public
    assert refused[0] == 1 and KEY_ERRORS[refused[4]] == "bad-format"


def test_a_component_verifies_and_reads_an_openpgp_key(made: Made) -> None:
    from tests import component_guests
    from vultrino.runtime import load_engine

    if "wasmtime" not in available_engines():
        pytest.skip("components run on wasmtime only")
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    message = hashlib.sha256(b"data").digest()
    good = key.sign(message)
    bad = good[:-1] + bytes([good[-1] ^ 0x40])
    ring = KeyRing({"k": made.ed_protected, "p": PASSPHRASE}, {"k": "p"})
    expected_public = _public(ring, "ed25519-public-key")
    with WasmRuntime(load_engine("wasmtime")) as rt:
        for signature, valid in ((good, 1), (bad, 0)):
            module = rt.load(
                component_guests.keys_openpgp(public, message, signature), plugin="keys13"
            )
            try:
                out = module.execute(REQUEST, ring)["ok"]
                junk = module.execute(REQUEST, KeyRing({"k": "junk"}))["ok"]
            finally:
                module.close()
            assert out == bytes([valid]) + expected_public
            assert junk == bytes([valid, KEY_ERRORS.index("bad-format")])


# --- the shipped plugin never holds the key -------------------------------------------------------


def _memory(module: PluginModule) -> bytes:
    session = module._idle[-1] if module._idle else module._local.owned.session
    memory = session.instance.memory
    return bytes(memory.read(0, memory.size()))


def _secret_forms(armored: str, passphrase: str) -> list[bytes]:
    """The passphrase, 16-byte windows of each secret integer (and their base64), and 16-char
    windows of the armored text where it carries the secret part of the key packet (its public
    part is public: the plugin exports it)."""
    key = _openpgp.read_secret_key(armored, passphrase, _keys._aes_cfb)
    forms = [passphrase.encode()] if passphrase else []
    data = _openpgp.dearmor(armored)
    _tag, header, body = _openpgp.packets(data)[0]
    public_end = len(header) + len(_openpgp.packets(key.transferable_public)[0][2])
    secret_end = len(header) + len(body)
    text = base64.b64encode(data)
    start, end = -(-public_end // 3) * 4, secret_end // 3 * 4
    forms += [text[i : i + 16] for i in range(start, end - 15, 4)]
    for value in key.secret.values():
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        forms += [raw[i : i + 16] for i in range(0, len(raw) - 15, 16)]  # any 16-byte window
        forms.append(base64.b64encode(raw)[:24])
    assert len(forms) > 10
    return forms


@pytest.mark.parametrize("which", ["ed25519", "rsa"])
def test_the_pgp_plugin_never_holds_its_key(runtime: WasmRuntime, made: Made, which: str) -> None:
    """``plugins/pgp`` keeps both key fields in the host: it signs, verifies its own signature
    and exports the public key, and afterwards neither the armored key, the passphrase nor any
    16-byte window of the secret integers is anywhere in the guest's memory."""
    from vultrino.plugins.base import CredentialView
    from vultrino.plugins.manifest import load_manifest
    from vultrino.plugins.wasm import WasmPlugin

    directory = ROOT / "plugins" / "pgp"
    manifest = load_manifest(directory / "plugin.toml")
    ctype = manifest.credential_type("pgp_key")
    assert ctype is not None and ctype.host_fields == ("private_key", "passphrase")
    if which == "ed25519":
        fields, public = (
            {"private_key": made.ed_protected, "passphrase": PASSPHRASE},
            made.ed_public,
        )
    else:
        fields, public = {"private_key": made.rsa_plain}, made.rsa_public
    plugin = WasmPlugin(directory, manifest, runtime)
    try:
        view = CredentialView("k", "pgp_key", fields)
        signature = plugin.execute("sign", {"data": "hello"}, view).value
        verdict = plugin.execute("verify", {"data": "hello", "signature": signature}, view).value
        assert verdict["valid"] is True
        exported = plugin.execute("get_public_key", {"armor": False}, view).value
        assert base64.b64decode(exported) == public
        module = plugin.module
        assert isinstance(module, PluginModule)
        memory = _memory(module)
    finally:
        plugin.close()
    for form in _secret_forms(fields["private_key"], fields.get("passphrase", "")):
        assert form not in memory, f"a form of the key ({len(form)} bytes) is in guest memory"
