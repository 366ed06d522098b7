"""The guest SDKs exist once (``sdk/rust/vultrino-pdk``, ``sdk/python/vultrino_pdk``), ship in
the wheel, are found from a checkout and from a wheel by one resolver, and reach plugin authors:
``vultrino plugin new`` then ``vultrino plugin install --build`` in a directory outside the
repository, for both languages.
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

from tests.e2e.mcp_helpers import make_home
from vultrino.plugins.base import CredentialView
from vultrino.plugins.install import _componentize, _shipped, scaffold
from vultrino.plugins.registry import PluginRegistry
from vultrino.runtime import WasmRuntime

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
RUST_PDK = ROOT / "sdk" / "rust" / "vultrino-pdk"
PYTHON_PDK = ROOT / "sdk" / "python" / "vultrino_pdk"
SDK_FILES = [
    RUST_PDK / "Cargo.toml",
    RUST_PDK / "src" / "lib.rs",
    PYTHON_PDK / "__init__.py",
    PYTHON_PDK / "msgpack.py",
]
#: Names the SDK files had when each plugin carried a copy.
OLD_COPY_NAMES = {"vultrino.rs", "vultrino_msgpack.py", "vultrino_plugin.py"}
#: A line only the SDK file itself may hold (split so this file does not hold it either).
SIGNATURES = {
    RUST_PDK / "src" / "lib.rs": "macro_rules! " + "actions",
    PYTHON_PDK / "__init__.py": "def run(request, " + "actions):",
    PYTHON_PDK / "msgpack.py": "def _pack(v, out, " + "depth):",
}
BUILD_GUARD_S = 900.0


def _repository_files() -> list[Path]:
    """Every file of the tree that is not ignored (tracked or about to be)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_each_sdk_file_exists_once_in_the_tree() -> None:
    files = _repository_files()
    wanted = {_digest(f): f for f in SDK_FILES}
    copies: dict[Path, list[Path]] = {f: [] for f in SDK_FILES}
    for path in files:
        original = wanted.get(_digest(path))
        if original is not None:
            copies[original].append(path)
    assert copies == {f: [f] for f in SDK_FILES}
    assert [p for p in files if p.name in OLD_COPY_NAMES] == []
    for sdk_file, signature in SIGNATURES.items():
        holders = [p for p in files if signature in p.read_text(errors="replace")]
        assert holders == [sdk_file], signature


def test_the_wheel_carries_the_sdks_once() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    force = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert (
        force["sdk/rust/vultrino-pdk/Cargo.toml"]
        == f"vultrino/_data/{_shipped.RUST_PDK}/Cargo.toml"
    )
    assert force["sdk/rust/vultrino-pdk/src"] == f"vultrino/_data/{_shipped.RUST_PDK}/src"
    assert force["sdk/python/vultrino_pdk"] == f"vultrino/_data/{_shipped.PYTHON_PDK}/vultrino_pdk"
    for source in force:
        assert (ROOT / source).exists(), source


def test_a_checkout_finds_its_own_sdks() -> None:
    assert scaffold.find_rust_pdk() == RUST_PDK
    assert _componentize.find_sdk() == PYTHON_PDK.parent
    assert _componentize.find_wit() == ROOT / "wit" / "vultrino-plugin.wit"


def _wheel_layout(dest: Path) -> Path:
    """The files a wheel installs, laid out from pyproject.toml: the package plus its
    force-included data (what ``pip install vultrino`` puts in site-packages)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = config["tool"]["hatch"]["build"]["targets"]["wheel"]
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "target", "Cargo.lock")
    for package in wheel["packages"]:
        shutil.copytree(ROOT / package, dest / package, ignore=skip)
    for source, target in wheel["force-include"].items():
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, dest / target, ignore=skip)
        else:
            (dest / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, dest / target)
    return dest


def test_a_wheel_install_finds_its_sdks_and_scaffolds_without_the_checkout(
    tmp_path: Path,
) -> None:
    site = _wheel_layout(tmp_path / "site-packages")
    script = """
import json, sys
from pathlib import Path
import vultrino
from vultrino.plugins.install import _componentize, scaffold
rust = scaffold.new_plugin("acme-rs", Path(sys.argv[1]) / "acme-rs")
python = scaffold.new_plugin("acme-py", Path(sys.argv[1]) / "acme-py", lang="python")
print(json.dumps({
    "package": vultrino.__file__,
    "rust_pdk": str(scaffold.find_rust_pdk()),
    "python_pdk": str(_componentize.find_sdk()),
    "wit": str(_componentize.find_wit()),
    "templates": [str(scaffold.find_template(lang)) for lang in ("rust", "python")],
}))
"""
    out = tmp_path / "projects"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VULTRINO_")}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    data = site / "vultrino" / "_data"
    assert Path(found["package"]).parent == site / "vultrino"
    assert Path(found["rust_pdk"]) == data / _shipped.RUST_PDK
    assert Path(found["python_pdk"]) == data / _shipped.PYTHON_PDK
    assert Path(found["wit"]) == data / _shipped.WIT
    for template in found["templates"]:
        assert Path(template).parent == data
    _assert_self_contained_rust_project(out / "acme-rs")
    assert sorted(p.name for p in (out / "acme-py").iterdir()) == [
        "README.md",
        "app.py",
        "plugin.toml",
    ]


def _assert_self_contained_rust_project(project: Path) -> None:
    cargo_toml = (project / "Cargo.toml").read_text()
    assert 'vultrino-pdk = { path = "vultrino-pdk" }' in cargo_toml
    assert "../" not in cargo_toml
    for original in SDK_FILES[:2]:
        copy = project / "vultrino-pdk" / original.relative_to(RUST_PDK)
        assert copy.read_bytes() == original.read_bytes()
    assert not (project / "src" / "vultrino.rs").exists()


def test_the_componentize_build_adds_the_python_sdk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **_: object) -> tuple[int, list[str]]:
        seen.append(cmd)
        Path(cmd[cmd.index("-o") + 1]).write_bytes(b"\0asm")
        return 0, []

    monkeypatch.setattr(_componentize, "executable", lambda: "componentize-py")
    monkeypatch.setattr(_componentize, "run_streamed", fake_run)
    project = scaffold.new_plugin("acme-py", tmp_path / "acme-py", lang="python")
    _componentize.build(project, out=tmp_path / "out" / "acme_py.wasm")
    (cmd,) = seen
    paths = [cmd[i + 1] for i, word in enumerate(cmd) if word == "-p"]
    assert paths[:2] == [str(project), str(PYTHON_PDK.parent)]  # the project's own modules first
    assert (Path(paths[1]) / _componentize.SDK_PACKAGE / "__init__.py").is_file()
    # then the generated entry module that imports everything the sources import, gone after
    entry = Path(paths[2])
    assert entry.parent == tmp_path / "out" and not entry.exists()
    assert cmd[cmd.index("componentize") + 1] == "vultrino_build_entry"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["acme_py.wasm"]


# --- scaffold -> install --build, outside the repository ---------------------------------------


def _outside_repository(tmp_path: Path) -> Path:
    assert ROOT not in tmp_path.resolve().parents, "tmp_path must be outside the checkout"
    return tmp_path


def _greet(plugins: Path, name: str) -> object:
    cred = CredentialView(
        alias="t", type="example_token", fields={"token": "s3cret", "greeting": "Hi"}
    )
    with WasmRuntime("wasmtime") as rt, PluginRegistry(plugins, rt) as registry:
        registry.load_all()
        assert not registry.broken(), registry.broken()
        return registry.get(name).execute("greet", {"name": "Ada"}, cred).value


def _new_and_install(
    isolated_home: Path, tmp_path: Path, name: str, lang: list[str], extra: dict[str, str]
) -> Path:
    """`vultrino plugin new NAME` in a fresh directory outside the checkout, then
    `vultrino plugin install --build NAME`, each as its own process run from that directory."""
    work = _outside_repository(tmp_path)
    home = make_home(isolated_home, plugins=())
    env = home.env(**extra)
    new = subprocess.run(
        [sys.executable, "-m", "vultrino", "plugin", "new", name, *lang],
        cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert new.returncode == 0, new.stderr
    project = work / name
    for path in project.rglob("*"):
        if path.is_file():
            assert str(ROOT) not in path.read_text(errors="replace"), path
    built = subprocess.run(
        [sys.executable, "-m", "vultrino", "plugin", "install", "--build", name, "--json"],
        cwd=work, env=env, capture_output=True, text=True, timeout=BUILD_GUARD_S, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    result = json.loads(built.stdout)
    assert (result["name"], result["abi"], result["built"]) == (name, 2, True)
    assert _greet(isolated_home / "plugins", name) == {"message": "Hi, Ada."}
    return project


@pytest.mark.cargo
@pytest.mark.slow
def test_rust_plugin_new_then_install_build_outside_the_checkout(
    isolated_home: Path, tmp_path: Path
) -> None:
    from tests.integration.test_sdk_template import _rust_env

    rust = _rust_env()
    if isinstance(rust, str):
        pytest.skip(rust)
    toolchain = {k: rust[k] for k in ("PATH", "CARGO_HOME", "RUSTC", "CARGO") if k in rust}
    project = _new_and_install(isolated_home, tmp_path, "acme-rs", [], toolchain)
    _assert_self_contained_rust_project(project)
    assert not (project / "target").exists()


def _componentize_py() -> str | None:
    try:
        return _componentize.executable()
    except Exception:
        return None


@pytest.mark.slow
@pytest.mark.skipif(_componentize_py() is None, reason="componentize-py is not installed")
def test_python_plugin_new_then_install_build_outside_the_checkout(
    isolated_home: Path, tmp_path: Path
) -> None:
    project = _new_and_install(isolated_home, tmp_path, "acme-py", ["--lang", "python"], {})
    assert sorted(p.name for p in project.iterdir()) == ["README.md", "app.py", "plugin.toml"]
