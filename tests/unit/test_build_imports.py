"""The static import scan a Python plugin's build starts from (plugins/install/_imports.py)."""

from __future__ import annotations

from pathlib import Path

from vultrino.plugins.install import _imports


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_imports_anywhere_are_found_with_where(tmp_path: Path) -> None:
    _write(tmp_path, "app.py", (
        "import json\n"
        "def f():\n"
        "    import secrets\n"
        "    if True:\n"
        "        from email import utils\n"
        "    try:\n"
        "        import ujson\n"
        "    except ImportError:\n"
        "        pass\n"
        "class C:\n"
        "    def m(self):\n"
        "        from decimal import Decimal\n"
    ))  # fmt: skip
    found = {f.name: f for f in _imports.scan(tmp_path)}
    assert {"json", "secrets", "email", "ujson", "decimal"} <= set(found)
    assert found["secrets"].where == "app.py:3" and not found["secrets"].guess
    assert found["email.utils"].guess and found["decimal.Decimal"].guess


def test_relative_imports_resolve_against_the_package(tmp_path: Path) -> None:
    _write(tmp_path, "pkg/__init__.py", "from . import helpers\n")
    _write(tmp_path, "pkg/sub/mod.py", "from ..helpers import tool\nfrom .sibling import x\n")
    names = {f.name for f in _imports.scan(tmp_path)}
    assert {"pkg", "pkg.helpers", "pkg.helpers.tool", "pkg.sub.sibling"} <= names


def test_tests_hidden_dirs_and_virtualenvs_are_not_scanned(tmp_path: Path) -> None:
    _write(tmp_path, "app.py", "import json\n")
    _write(tmp_path, "tests/test_app.py", "import pytest\n")
    _write(tmp_path, "test_more.py", "import hypothesis\n")
    _write(tmp_path, ".hidden/x.py", "import nope\n")
    _write(tmp_path, "venv/pyvenv.cfg", "")
    _write(tmp_path, "venv/lib/y.py", "import alsonope\n")
    _write(tmp_path, "broken.py", "def (:\n")
    assert [f.name for f in _imports.scan(tmp_path)] == ["json"]


def test_lazy_standard_library_dependencies_are_added_transitively() -> None:
    found = _imports.with_lazy_dependencies([_imports.Found("secrets", "app.py:1")])
    names = {f.name for f in found}
    assert {"secrets", "hmac", "warnings", "hashlib", "base64", "linecache"} <= names
    dt = {f.name for f in _imports.with_lazy_dependencies([_imports.Found("datetime", "a:1")])}
    assert "_strptime" in dt


def test_the_entry_module_imports_app_first_then_the_modules(tmp_path: Path) -> None:
    path = _imports.write_entry(tmp_path, "app", [_imports.Found("secrets", "app.py:3")])
    text = path.read_text()
    assert path.name == f"{_imports.ENTRY_MODULE}.py"
    assert text.index("from app import Handler") < text.index("_MODULES = [('secrets', False)]")
    compile(text, str(path), "exec")
    (tmp_path / _imports.REPORT_FILE).write_text(
        "yaml\tModuleNotFoundError: No module named 'yaml'"
    )
    assert _imports.read_report(tmp_path) == {"yaml": "ModuleNotFoundError: No module named 'yaml'"}
