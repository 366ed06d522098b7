"""A Python plugin whose actions import modules only inside functions, built for real with
componentize-py and run through the real CLI: every lazily imported standard-library module
works at run time, a module that cannot exist is named at build time and fails clearly at run
time, and a failing action shows a scrubbed traceback under ``--debug``.

componentize-py is in the ``dev`` extra (Python >= 3.11); without it the test is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.leakcheck import LeakCheck, forms_of
from vultrino.plugins.install import _componentize

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "python_lazy"
PASSWORD = "lazy imports, loud failures"
TOKEN = "lazy-token-5d2c9a1e7f3b4d68"
#: A guard against a hung build, never a performance assertion.
BUILD_GUARD_S = 900.0

#: module -> what the `use` action answers after importing it inside the function.
EXPECTED = {
    "secrets": 16,
    "hmac": "6e9ef29b75fffc5b7abae527d58fdadb2fe42e7219011976917343065f58ed4a",
    "uuid": "aad03681-8b63-5304-89e0-8ca8f49461b5",
    "decimal": "3.30",
    "statistics": 3,
    "email.utils": "ada@example.org",
    "json": {"a": [1, 2.5]},
    "datetime": "060",
    "hashlib": "ba7816bf8f01cfea",
    "urllib.parse": "b=c",
}


def _has_componentize() -> bool:
    try:
        _componentize.executable()
    except Exception:
        return False
    return True


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vultrino", *args],
        capture_output=True, text=True, timeout=timeout, env=dict(os.environ), check=False,
    )  # fmt: skip


@pytest.mark.skipif(not _has_componentize(), reason="componentize-py is not installed")
def test_lazy_imports_work_and_failures_can_be_debugged(
    isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leakcheck: LeakCheck
) -> None:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    monkeypatch.setenv("VULTRINO_PASSWORD", PASSWORD)
    leakcheck.add(PASSWORD, TOKEN)
    source = shutil.copytree(FIXTURE, tmp_path / "python-lazy")
    assert cli("init").returncode == 0

    built = cli("plugin", "install", "--build", str(source), timeout=BUILD_GUARD_S)
    assert built.returncode == 0, built.stderr
    assert (
        "vultrino: note: `import no_such_module_for_vultrino_tests` (app.py:63) cannot be "
        "imported in the component (ModuleNotFoundError"
    ) in built.stderr
    assert sorted(p.name for p in source.iterdir()) == ["app.py", "plugin.toml"]  # no shim left
    added = cli("add", "--alias", "lazy", "--type", "plugin:python-lazy:key", "--field",
                f"token={TOKEN}")  # fmt: skip
    assert added.returncode == 0, added.stderr

    for module, expected in EXPECTED.items():
        r = cli("request", "lazy", "--action", "use", "--param", f"module={module}", "--json")
        assert r.returncode == 0, f"{module}: {r.stderr}"
        assert json.loads(r.stdout) == expected, module

    missing = cli("request", "lazy", "--action", "missing")
    assert missing.returncode == 7
    assert missing.stderr.strip() == (
        "error: plugin python-lazy, action missing failed (failed): the action failed "
        "(ModuleNotFoundError: No module named 'no_such_module_for_vultrino_tests')"
    )

    plain = cli("request", "lazy", "--action", "leak")
    assert plain.returncode == 7
    assert plain.stderr.strip() == (
        "error: plugin python-lazy, action leak failed (failed): the action failed "
        "(ValueError: token [REDACTED] was refused upstream)"
    )
    debug = cli("request", "lazy", "--action", "leak", "--debug")
    lines = debug.stderr.splitlines()
    assert lines[1:5] == [
        "plugin traceback (most recent call last):",
        "  app.py:55 in leak (app)",
        "  app.py:59 in _check (app)",
        "ValueError: token [REDACTED] was refused upstream",
    ]
    assert "  [info] about to fail with the token in the message" in lines
    detail = json.loads(cli("request", "lazy", "--action", "leak", "--json", "--debug").stdout)
    frames = detail["error"]["detail"]["traceback"]
    assert [(f["file"], f["line"], f["function"]) for f in frames] == [
        ("app.py", 55, "leak"),
        ("app.py", 59, "_check"),
    ]
    for text in (plain.stderr, debug.stderr, json.dumps(detail)):
        for form, value in forms_of(TOKEN).items():
            assert value.decode() not in text, f"the token leaked ({form})"
