"""Pasting a multi-line key at `vultrino add`'s prompts, on a real pseudo-terminal.

``vultrino add`` runs as a real process whose controlling terminal, stdin, stdout and stderr are
the slave side of a pty; the test is the user at the master side: it waits for each prompt and
pastes a whole PGP key block in one write, as a terminal does. The stored value must be the
whole block, the key must never be echoed, and what was read is confirmed by its size.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.guests import abi2_fixed
from tests.leakcheck import LeakCheck
from vultrino._msgpack import packb
from vultrino.cli._tty import FieldText, read_lines
from vultrino.errors import CredentialValidationError

PASSWORD = "correct horse battery staple, paste edition"
BODY = [
    "lQOYBGZ3x0cBCADK9mJ0n2Yg8v0pQx7Rk2hT4c1u5sWm9aLqE3dFb6yNoP8rVt0j",
    "Hs2KwC4eXgZ1iUoM7pB9lQnD3fRa5tYv6cEzJ0kLh8SbWq2xGm4NuIdOe7rTj1yA",
    "c5Vb0nKp3QwEs9fHg2ZxLm6RtUi8oJd4yCaB7eNq1vGk5MhWs0lPrXu3TjYz9Fb2",
    "=Q3kZ",
]
ARMOR = "PGP PRIVATE KEY BLOCK"
KEY = "\n".join([f"-----BEGIN {ARMOR}-----", "", *BODY, f"-----END {ARMOR}-----"]) + "\n"
PASSPHRASE = "pass-phrase-61d0e2a7"

MANIFEST = """\
[plugin]
name = "signer"
version = "1.0.0"
wasm_module = "signer.wasm"

[[credential_types]]
name = "key"

[[credential_types.fields]]
name = "private_key"
type = "textarea"
required = true
secret = true

[[credential_types.fields]]
name = "passphrase"
type = "password"
secret = true

[[credential_types.fields]]
name = "comment"
type = "text"

[[credential_types]]
name = "token"

[[credential_types.fields]]
name = "value"
type = "password"
required = true
secret = true

[[actions]]
name = "sign"
credential_type = "key"
"""

HANG_GUARD_S = 60.0


@pytest.fixture
def home(isolated_home: Path, tmp_path: Path, leakcheck: LeakCheck) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    leakcheck.add(PASSWORD, PASSPHRASE, *BODY)
    src = tmp_path / "signer"
    src.mkdir()
    (src / "plugin.toml").write_text(MANIFEST)
    (src / "signer.wasm").write_bytes(abi2_fixed(packb({"ok": "signed"})))
    env = {**os.environ, "VULTRINO_PASSWORD": PASSWORD}
    for args in (["init"], ["plugin", "install", str(src)]):
        r = subprocess.run(
            [sys.executable, "-m", "vultrino", *args], env=env, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
    return isolated_home


class Terminal:
    """`python -m vultrino ARGS` on a fresh pty, and the user at its master side."""

    def __init__(self, *args: str) -> None:
        self.master, slave = os.openpty()

        def controlling_tty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vultrino", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "VULTRINO_PASSWORD": PASSWORD},
            start_new_session=True,
            preexec_fn=controlling_tty,  # the child must own the pty (its /dev/tty)
        )
        os.close(slave)
        self.seen = ""
        self.pos = 0

    def expect(self, pattern: str) -> None:
        """Read the screen until ``pattern`` (a regex) appears after the last match."""
        deadline = time.monotonic() + HANG_GUARD_S
        while (found := re.search(pattern, self.seen[self.pos :])) is None:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no {pattern!r} on the terminal; it shows:\n{self.seen}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"the process ended before {pattern!r}:\n{self.seen}")
            self.seen += chunk.decode("utf-8", "replace")
        self.pos += found.end()

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self) -> int:
        try:
            code = self.proc.wait(timeout=HANG_GUARD_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        while True:
            ready, _, _ = select.select([self.master], [], [], 0)
            if not ready:
                break
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk.decode("utf-8", "replace")
        os.close(self.master)
        return code


def stored(home: Path, alias: str) -> dict[str, object]:
    from vultrino.core import Vultrino

    with Vultrino.open(home, PASSWORD) as v:
        v.unlock()
        return dict(v._s.store.get(alias).fields)


def test_a_key_pasted_into_a_textarea_ends_at_its_end_line(home: Path) -> None:
    t = Terminal("add", "--alias", "release", "--type", "plugin:signer:key", "--all-fields")
    t.expect(r"private_key.*single '\.'")
    t.type(KEY)  # one paste, as a terminal delivers it; no '.' line needed
    t.expect(r"read a PGP PRIVATE KEY BLOCK block: 7 lines, \d+ bytes")
    t.expect(r"passphrase.*: ")
    t.type(PASSPHRASE + "\n")
    t.expect(r"comment.*: ")
    t.type("release signing\n")
    code = t.finish()
    assert code == 0, t.seen
    assert "added release" in t.seen
    fields = stored(home, "release")
    assert fields == {
        "private_key": KEY,
        "passphrase": PASSPHRASE,
        "comment": "release signing",
    }
    for secret in (*BODY, PASSPHRASE):
        assert secret not in t.seen  # never echoed
    assert f"{len(KEY.encode())} bytes" in t.seen


def test_a_key_pasted_at_a_one_line_password_prompt_is_kept_whole(home: Path) -> None:
    t = Terminal("add", "--alias", "tok", "--type", "plugin:signer:token")
    t.expect(r"value.*: ")
    t.type(KEY)
    code = t.finish()
    assert code == 0, t.seen
    assert stored(home, "tok") == {"value": KEY}
    assert not any(line in t.seen for line in BODY)


def test_a_textarea_typed_by_hand_ends_at_a_dot_line(home: Path) -> None:
    t = Terminal("add", "--alias", "typed", "--type", "plugin:signer:key")
    t.expect(r"private_key.*single '\.'")
    t.type("first line\nsecond line\n.\n")
    t.expect(r"read text: 2 lines")
    assert t.finish() == 0, t.seen  # the optional passphrase and comment are not asked
    assert "passphrase" not in t.seen and "comment" not in t.seen
    assert stored(home, "typed") == {"private_key": "first line\nsecond line\n"}


def test_all_fields_asks_the_optional_fields_too(home: Path) -> None:
    t = Terminal("add", "--alias", "every", "--type", "plugin:signer:key", "--all-fields")
    t.expect(r"private_key.*single '\.'")
    t.type("one line\n.\n")
    t.expect(r"passphrase \[optional\]: ")
    t.type(PASSPHRASE + "\n")
    t.expect(r"comment \[optional\]: ")
    t.type("\n")  # left empty: not stored
    assert t.finish() == 0, t.seen
    assert stored(home, "every") == {"private_key": "one line\n", "passphrase": PASSPHRASE}


def test_an_empty_first_line_ends_a_required_textarea_and_it_is_refused(home: Path) -> None:
    t = Terminal("add", "--alias", "empty", "--type", "plugin:signer:key")
    t.expect(r"private_key.*single '\.'")
    t.type("\n")  # Enter alone ends the textarea at once: no hang waiting for '.'
    assert t.finish() == 4, t.seen
    assert "private_key: required" in t.seen
    assert "--all-fields" in t.seen  # optional fields were skipped: says how to be asked


def test_a_key_on_stdin_is_stored_whole(home: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vultrino",
            "add",
            "--alias",
            "piped",
            "--type",
            "plugin:signer:key",
            "--field",
            "private_key=-",
        ],
        input=KEY,
        env={**os.environ, "VULTRINO_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert r.returncode == 0, r.stderr
    assert stored(home, "piped") == {"private_key": KEY}
    assert not any(line in r.stdout + r.stderr for line in BODY)


def test_a_block_cut_short_is_refused_and_says_how_to_pass_it() -> None:
    lines = iter([f"-----BEGIN {ARMOR}-----\n", BODY[0] + "\n"])
    with pytest.raises(CredentialValidationError, match="ended before its '-----END PGP"):
        read_lines(lambda: next(lines, ""), textarea=False)


def test_a_pem_block_with_crlf_line_ends_is_normalised() -> None:
    pem = [
        "-----BEGIN PRIVATE KEY-----\r\n",
        "MC4CAQAwBQYDK2VwBCIEIA==\r\n",
        "-----END PRIVATE KEY-----\r\n",
    ]
    lines = iter(pem)
    got = read_lines(lambda: next(lines, ""), textarea=False)
    assert got.value == "".join(p.replace("\r\n", "\n") for p in pem)
    assert (got.lines, got.armor) == (3, "PRIVATE KEY")


def test_a_textarea_ends_at_end_of_input_and_a_plain_field_is_one_line() -> None:
    lines = iter(["a\n", "b\n"])
    got = read_lines(lambda: next(lines, ""), textarea=True)
    assert (got.value, got.lines, got.armor) == ("a\nb\n", 2, None)
    lines = iter(["only this\n", "not this\n"])
    assert read_lines(lambda: next(lines, ""), textarea=False).value == "only this"
    assert read_lines(lambda: "", textarea=True).value == ""


def test_an_empty_first_line_ends_a_textarea_and_later_empty_lines_are_kept() -> None:
    lines = iter(["\n", "never read\n"])
    assert read_lines(lambda: next(lines, ""), textarea=True) == FieldText("", 0)
    assert next(lines) == "never read\n"
    lines = iter(["a\n", "\n", "b\n", ".\n"])
    got = read_lines(lambda: next(lines, ""), textarea=True)
    assert (got.value, got.lines) == ("a\n\nb\n", 3)


@pytest.mark.parametrize("at", ["hidden", "visible"])
def test_ctrl_c_at_any_prompt_exits_130(home: Path, at: str) -> None:
    """Ctrl-C at a hidden prompt (the key) and at a visible one (Click's, for the header):
    exit 130 as for SIGINT, never Click's "Aborted!" with 1."""
    t = Terminal("add", "--alias", "x", "--type", "api_key", "--all-fields")
    t.expect(r"key.*: ")
    if at == "visible":
        t.type("a-key-typed-by-hand\n")
        t.expect(r"Header \(")
    t.type("\x03")
    code = t.finish()
    assert code == 130, t.seen
    assert "interrupted" in t.seen and "Aborted" not in t.seen


def test_ctrl_c_at_a_confirmation_exits_130(home: Path) -> None:
    from vultrino.core import Vultrino

    with Vultrino.open(home, PASSWORD) as v:
        v.add_credential("gone-soon", "api_key", {"key": "k" * 16})
    t = Terminal("remove", "gone-soon")
    t.expect(r"\[y/N\]")
    t.type("\x03")
    code = t.finish()
    assert code == 130, t.seen
    assert "Aborted" not in t.seen


def test_an_optional_field_the_others_make_necessary_is_asked_for(home: Path) -> None:
    # oauth2's client_secret is optional in the type (a refresh_token grant needs none), but
    # its default client_credentials grant needs it: add asks for it instead of failing
    t = Terminal(
        "add", "--alias", "api", "--type", "oauth2",
        "--field", "token_url=https://auth.example.invalid/token",
        "--field", "client_id=vultrino-tests",
    )  # fmt: skip
    t.expect(r"[Cc]lient secret.*: ")
    t.type(PASSPHRASE + "\n")
    assert t.finish() == 0, t.seen
    assert PASSPHRASE not in t.seen
    assert stored(home, "api")["client_secret"] == PASSPHRASE
