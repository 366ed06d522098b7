"""The Python-plugin build path without building: the --build gate, the build environment, a
missing componentize-py, and scaffolding from the Python template (no componentize-py needed)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from vultrino.errors import BuildRequiredError, InstallError, PluginError
from vultrino.plugins.install import _componentize, installer
from vultrino.plugins.install.scaffold import find_template, new_plugin
from vultrino.runtime import WasmRuntime


def test_a_python_plugin_is_built_only_with_build(tmp_path: Path) -> None:
    project = new_plugin("acme-py", tmp_path / "acme-py", lang="python")
    with WasmRuntime("wasmtime") as rt, pytest.raises(BuildRequiredError) as info:
        installer.install(str(project), plugins_dir=tmp_path / "plugins", runtime=rt)
    message = str(info.value)
    assert "--build" in message and "componentize-py" in message and "acme_py.wasm" in message
    assert isinstance(info.value, InstallError)
    assert list((tmp_path / "plugins").iterdir()) == []
    assert sorted(p.name for p in project.iterdir()) == sorted(
        p.name for p in find_template("python").iterdir() if p.name != "__pycache__"
    )


def test_the_build_environment_has_only_what_toolchains_need(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VULTRINO_PASSWORD", "hunter2-build-env")
    monkeypatch.setenv("VULTRINO_HOME", "/somewhere")
    monkeypatch.setenv("HOME_OF_SOMETHING", "dropped")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "dropped")
    monkeypatch.setenv("CARGO_REGISTRY_TOKEN", "dropped")
    monkeypatch.setenv("CARGO_TARGET_DIR", "kept")
    monkeypatch.setenv("RUSTFLAGS", "kept")
    monkeypatch.setenv("LC_ALL", "kept")
    env = _componentize.build_environment()
    assert not [k for k in env if k.startswith("VULTRINO_")]
    assert "dropped" not in env.values()
    assert env["CARGO_TARGET_DIR"] == env["RUSTFLAGS"] == env["LC_ALL"] == "kept"
    assert env["PATH"] == os.environ["PATH"]


def test_missing_componentize_py_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    project = new_plugin("acme-py", tmp_path / "acme-py", lang="python")
    with (
        WasmRuntime("wasmtime") as rt,
        pytest.raises(
            InstallError, match=r"componentize-py is not installed; .*pip install componentize-py"
        ),
    ):
        installer.install(str(project), plugins_dir=tmp_path / "plugins", runtime=rt, build=True)
    assert list((tmp_path / "plugins").iterdir()) == []


def test_scaffold_substitutes_names_in_the_python_template(tmp_path: Path) -> None:
    project = new_plugin("acme-notes", tmp_path / "n", lang="python")
    manifest = (project / "plugin.toml").read_text()
    assert 'name = "acme-notes"' in manifest and 'wasm_module = "acme_notes.wasm"' in manifest
    assert "acme_notes_greet" in manifest
    assert "acme-notes" in (project / "app.py").read_text().splitlines()[0]
    assert _componentize.is_python_project(project)


def test_unknown_language_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        PluginError, match="no plugin template for 'cobol'; choose one of rust, python"
    ):
        new_plugin("acme", tmp_path / "x", lang="cobol")
    assert not (tmp_path / "x").exists()
