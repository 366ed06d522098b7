"""The leak scanner must be able to fail: a secret planted in each form, in each place the
end-to-end tests scan, is found — and a clean home is not flagged.

A scanner that cannot fail is a defect: every "no secret leaked" claim in the suite rests on
this one (tests/leakcheck.py and the ``leakcheck`` fixture in tests/conftest.py).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.leakcheck import LeakCheck, forms_of

SECRET = "ghp_leak>>check??Probe~~0123456789abcdefXYZ"  # base64 has + and /, and padding
REPO = Path(__file__).resolve().parents[2]

FORMS: dict[str, Callable[[str], str]] = {
    "plain": lambda s: s,
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "base64url": lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
    "hex": lambda s: s.encode().hex(),
    "HEX": lambda s: s.encode().hex().upper(),
}


def _plant(home: Path, place: str, text: str) -> str:
    """Write ``text`` (embedded in ordinary content) to ``place`` in ``home``; returns the
    name the scanner reports for it."""
    if place == "audit.log":
        record = {"ts": "2025-01-01T00:00:00Z", "alias": "x", "error": text}
        (home / "audit.log").write_text(json.dumps(record) + "\n")
        return "audit.log"
    if place == ".installed.json":
        plugin = home / "plugins" / "probe"
        plugin.mkdir(parents=True)
        (plugin / ".installed.json").write_text(json.dumps({"source": text, "sha256": "0" * 64}))
        return "plugins/probe/.installed.json"
    if place == "cache":
        cache = home / "cache"
        cache.mkdir()
        blob = os.urandom(512) + text.encode() + os.urandom(512)
        (cache / "abc.wasmtime.0123.vmc").write_bytes(blob)
        return "cache/abc.wasmtime.0123.vmc"
    raise AssertionError(place)


def _clean_home(home: Path) -> None:
    (home / "audit.log").write_text('{"alias": "github", "outcome": "ok"}\n')
    (home / "plugins" / "probe").mkdir(parents=True)
    (home / "plugins" / "probe" / ".installed.json").write_text('{"sha256": "' + "ab" * 32 + '"}')
    (home / "cache").mkdir()
    (home / "cache" / "m.vmc").write_bytes(os.urandom(4096).replace(SECRET[:4].encode(), b""))
    (home / "credentials.enc").write_bytes(SECRET.encode())  # the sealed store is not scanned


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_secret_in_output_is_found_in_every_form(form: str, stream: str, tmp_path: Path) -> None:
    check = LeakCheck()
    check.add(SECRET)
    check.scan_all([(stream, f"result: {FORMS[form](SECRET)} done")], tmp_path)
    assert f"{stream}: secret #0 ({form})" in check.findings
    assert all(f.startswith(f"{stream}: secret #0 ") for f in check.findings), check.findings
    with pytest.raises(AssertionError, match="secret leaked"):
        check.assert_clean()


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("place", ["audit.log", ".installed.json", "cache"])
def test_a_secret_in_a_home_file_is_found_in_every_form(
    form: str, place: str, tmp_path: Path
) -> None:
    where = _plant(tmp_path, place, FORMS[form](SECRET))
    check = LeakCheck()
    check.add(SECRET)
    check.scan_all([("stdout", "nothing here"), ("stderr", "")], tmp_path)
    assert f"{where}: secret #0 ({form})" in check.findings
    assert all(f.startswith(f"{where}: secret #0 ") for f in check.findings), check.findings


def test_a_clean_home_and_clean_output_are_not_flagged(tmp_path: Path) -> None:
    _clean_home(tmp_path)
    check = LeakCheck()
    check.add(SECRET, "another-secret-value-1234")
    check.scan_all([("stdout", "added github (api_key)\n"), ("stderr", "[REDACTED]")], tmp_path)
    check.assert_clean()


def test_the_forms_are_distinct_and_cover_padding() -> None:
    forms = forms_of(SECRET)
    assert len(set(forms.values())) == len(forms)
    assert not forms["base64"].endswith(b"=")  # padding stripped: found with or without it


def test_the_fixture_fails_a_test_that_leaks(tmp_path: Path) -> None:
    """End to end: a test using the ``leakcheck`` fixture that prints a secret's base64 to
    stdout, or writes its hex into audit.log, fails at teardown; one that does neither passes."""
    test_file = tmp_path / "test_probe.py"
    test_file.write_text(
        textwrap.dedent(
            f"""
            import base64, os
            from pathlib import Path

            def test_prints(leakcheck):
                leakcheck.add({SECRET!r})
                print(base64.b64encode({SECRET!r}.encode()).decode())

            def test_audit(leakcheck):
                leakcheck.add({SECRET!r})
                home = Path(os.environ["VULTRINO_HOME"])
                (home / "audit.log").write_text({SECRET!r}.encode().hex())

            def test_clean(leakcheck):
                leakcheck.add({SECRET!r})
                print("[REDACTED]")
            """
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(test_file),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 1, out
    assert "3 passed, 2 errors" in out, out  # the bodies pass; the fixture fails two teardowns
    assert "ERROR at teardown of test_prints" in out and "ERROR at teardown of test_audit" in out
    assert "test_clean" not in out, out
    assert "stdout: secret #0 (base64)" in out and "audit.log: secret #0 (hex)" in out, out


@pytest.mark.parametrize("prefix", [b"", b"t", b"t:", b"token="])
@pytest.mark.parametrize("urlsafe", [False, True])
def test_a_secret_base64_encoded_inside_a_longer_value_is_found(
    prefix: bytes, urlsafe: bool
) -> None:
    """A secret in the middle of a longer base64 value, at every byte offset modulo 3."""
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    check = LeakCheck()
    check.add(SECRET)
    check.scan(encode(prefix + SECRET.encode() + b";more").decode(), "out")
    assert check.findings, (prefix, urlsafe)
