"""Installing a first-party plugin from the checkout's ``plugins/<name>``: the prebuilt module
as is, or ``--build`` from its sources, whose ``path`` dependency on the SDK crate
(``../../sdk/rust/vultrino-pdk``) and Cargo workspace the build copy must carry along
(:mod:`vultrino.plugins.install._cargo_paths`); and the path dependencies a source may not
use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.mcp_helpers import McpHome, make_home
from tests.integration.test_installer import manifest_text, new_runtime, snapshot, tar_gz_of
from vultrino.errors import InstallError, UnsafeSourceError
from vultrino.plugins.install import _cargo_paths, installer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
TOTP = ROOT / "plugins" / "totp"
# RFC 6238 Appendix B: the SHA1 seed, T = 59 s, 8 digits.
RFC6238_SEED_B32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
RFC6238_AT_59 = "94287082"
BUILD_GUARD_S = 900.0


def _cli(home: McpHome, *args: str, stdin: str | None = None, **env: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "vultrino", *args, "--json"],
        env=home.env(**env), input=stdin, capture_output=True, text=True,
        timeout=BUILD_GUARD_S, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    assert isinstance(result, dict)
    result["_stderr"] = proc.stderr
    return result


def _rfc6238_code(home: McpHome) -> object:
    _cli(
        home,
        "add", "--alias", "rfc", "--type", "plugin:totp:totp",
        "--field", "secret=-", "--field", "digits=8",
        stdin=RFC6238_SEED_B32,
    )  # fmt: skip
    answer = _cli(home, "request", "rfc", "--action", "code", "--param", "time=59")
    return answer["code"]


def test_install_of_a_checkout_plugin_uses_its_prebuilt_module(isolated_home: Path) -> None:
    home = make_home(isolated_home, plugins=())
    result = _cli(home, "plugin", "install", str(TOTP))
    assert (result["name"], result["built"]) == ("totp", False)
    shipped = hashlib.sha256((TOTP / "vultrino_totp.wasm").read_bytes()).hexdigest()
    assert result["sha256"] == shipped
    assert _rfc6238_code(home) == RFC6238_AT_59


def test_a_first_party_plugin_installs_by_name(isolated_home: Path) -> None:
    home = make_home(isolated_home, plugins=())
    result = _cli(home, "plugin", "install", "totp")
    assert (result["name"], result["built"]) == ("totp", False)
    assert result["source"] == str(TOTP)


def _checkout_without_modules(dest: Path) -> Path:
    """The checkout's Cargo side (workspace manifest, SDK crate, the plugins) without the
    prebuilt modules: what a fresh clone holds before scripts/build-plugins.sh."""
    skip = shutil.ignore_patterns("*.wasm", "target", "Cargo.lock")
    dest.mkdir()
    shutil.copy2(ROOT / "Cargo.toml", dest / "Cargo.toml")
    shutil.copytree(ROOT / "sdk" / "rust", dest / "sdk" / "rust", ignore=skip)
    shutil.copytree(ROOT / "plugins", dest / "plugins", ignore=skip)
    return dest


@pytest.mark.cargo
@pytest.mark.slow
def test_install_build_of_a_workspace_member_from_a_checkout(
    isolated_home: Path, tmp_path: Path
) -> None:
    from tests.integration.test_sdk_template import _rust_env

    rust = _rust_env()
    if isinstance(rust, str):
        pytest.skip(rust)
    toolchain = {k: rust[k] for k in ("PATH", "CARGO_HOME", "RUSTC", "CARGO") if k in rust}
    checkout = _checkout_without_modules(tmp_path / "checkout")
    before = snapshot(checkout)
    home = make_home(isolated_home, plugins=())

    source = str(checkout / "plugins" / "totp")
    result = _cli(home, "plugin", "install", "--build", source, **toolchain)

    assert (result["name"], result["abi"], result["built"]) == ("totp", 2, True)
    stderr = str(result["_stderr"])
    assert "Compiling vultrino-pdk" in stderr and "path dependency" in stderr
    assert snapshot(checkout) == before  # built in a private copy: nothing written here
    # The workspace's release profile (LTO, opt-level "s", strip) came along: the module is
    # the size of the shipped one, not the several times larger default build.
    built = Path(str(result["path"])) / "vultrino_totp.wasm"
    assert built.stat().st_size < 1.25 * (TOTP / "vultrino_totp.wasm").stat().st_size
    assert _rfc6238_code(home) == RFC6238_AT_59


# --- preparing the copy (no cargo) -----------------------------------------------------------


def _member(root: Path, dependency: str, *, extra: str = "") -> Path:
    """``root/plugins/acme``: a workspace member of ``root`` with one path dependency."""
    crate = root / "plugins" / "acme"
    (crate / "src").mkdir(parents=True)
    (crate / "src" / "lib.rs").write_text("")
    (crate / "plugin.toml").write_text(manifest_text("acme"))
    (crate / "Cargo.toml").write_text(
        '[package]\nname = "acme"\nversion = "0.1.0"\nedition = "2021"\n'
        f'{extra}\n[lib]\ncrate-type = ["cdylib"]\n\n'
        f'[dependencies]\nserde = "1"\nhelper = {{ path = {json.dumps(dependency)} }}\n'
    )
    (root / "Cargo.toml").write_text(
        '[workspace]\nmembers = ["plugins/*", "crates/helper"]\n\n'
        '[profile.release]\nopt-level = "s"\nlto = true\n'
    )
    return crate


def _crate(path: Path, name: str = "helper") -> Path:
    (path / "src").mkdir(parents=True)
    (path / "src" / "lib.rs").write_text("")
    (path / "Cargo.toml").write_text(f'[package]\nname = "{name}"\nversion = "0.1.0"\n')
    return path


def test_the_copy_vendors_path_dependencies_and_keeps_the_workspace_profile(
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    helper = _crate(root / "crates" / "helper")
    _crate(helper / "inner", "inner")  # a path dependency inside the vendored crate
    (helper / "Cargo.toml").write_text(
        (helper / "Cargo.toml").read_text() + '\n[dependencies]\ninner = { path = "inner" }\n'
    )
    crate = _member(root, "../../crates/helper")
    copy = tmp_path / "staging" / "src"
    shutil.copytree(crate, copy)
    notes = _cargo_paths.prepare(
        copy,
        original=crate,
        original_root=crate,
        copy_root=copy,
        vendor_dir=tmp_path / "staging" / "path-deps",
        local=True,
        protected=(tmp_path / "home",),
        label="acme",
    )
    data = tomllib.loads((copy / "Cargo.toml").read_text())
    assert data["dependencies"]["helper"] == {"path": "../path-deps/helper"}
    assert data["dependencies"]["serde"] == "1"
    assert data["workspace"] == {}
    assert data["profile"] == {"release": {"opt-level": "s", "lto": True}}
    vendored = tmp_path / "staging" / "path-deps" / "helper"
    assert (vendored / "inner" / "Cargo.toml").is_file()
    assert tomllib.loads((vendored / "Cargo.toml").read_text())["dependencies"] == {
        "inner": {"path": "inner"}
    }
    assert any("helper" in note for note in notes)
    assert (crate / "Cargo.toml").read_text().count("[workspace]") == 0  # the source untouched


def _install_build(crate: Path, tmp_path: Path, **kw: object) -> None:
    """Install with --build; every case here must stop before cargo runs."""
    os.environ["VULTRINO_CARGO"] = str(tmp_path / "no-cargo-should-run")
    try:
        installer.install(
            str(crate),
            plugins_dir=tmp_path / "home" / "plugins",
            runtime=new_runtime(tmp_path / "cache"),
            build=True,
            **kw,  # type: ignore[arg-type]
        )
    finally:
        del os.environ["VULTRINO_CARGO"]


@pytest.mark.parametrize(
    ("dependency", "message"),
    [
        ("/usr/share/cargo/registry/serde-1.0.130", "absolute path"),
        ("~/crates/helper", "absolute path"),
        ("../../linked", "symbolic link"),
        ("../../not-a-crate", "not a crate"),
        ("../../home/plugins", "Vultrino home"),
        ("..", "holds the plugin"),
        ("SYSTEM", "leads into /etc"),
    ],
)
def test_dangerous_path_dependencies_are_refused(
    tmp_path: Path, dependency: str, message: str
) -> None:
    root = tmp_path
    (root / "home" / "plugins").mkdir(parents=True)
    _crate(root / "home" / "plugins" / "x")  # a crate in the home must not be copied out
    (root / "not-a-crate").mkdir()
    (root / "not-a-crate" / "id_rsa").write_text("secret")
    _crate(root / "real-helper")
    (root / "linked").symlink_to(root / "real-helper")
    crate = root / "plugins" / "acme"
    if dependency == "SYSTEM":
        dependency = os.path.relpath("/etc", crate)
    crate = _member(root, dependency)
    with pytest.raises(InstallError, match=message):
        _install_build(crate, tmp_path)
    assert sorted(os.listdir(root / "home" / "plugins")) == ["x"]  # no staging left behind


def test_a_vendored_crate_with_a_link_leading_out_is_refused(tmp_path: Path) -> None:
    helper = _crate(tmp_path / "crates" / "helper")
    (helper / "src" / "secret.rs").symlink_to("/etc/passwd")
    crate = _member(tmp_path, "../../crates/helper")
    with pytest.raises(UnsafeSourceError, match="outside the source tree"):
        _install_build(crate, tmp_path)


def test_a_fetched_source_may_not_reach_outside_its_tree(tmp_path: Path) -> None:
    _crate(tmp_path / "home" / "helper")
    repo = tmp_path / "repo"
    crate = _member(repo, "../../../../helper")
    archive = tar_gz_of(repo, tmp_path / "repo.tar.gz")
    with pytest.raises(UnsafeSourceError, match="outside the fetched source"):
        _install_build(archive, tmp_path, subdir="plugins/acme")
    assert crate.is_dir()


def test_a_crate_inheriting_from_its_workspace_is_refused_clearly(tmp_path: Path) -> None:
    _crate(tmp_path / "crates" / "helper")
    crate = _member(tmp_path, "../../crates/helper", extra="license.workspace = true\n")
    with pytest.raises(InstallError, match=r"inherits package\.license from its Cargo workspace"):
        _install_build(crate, tmp_path)
