"""Reading a credential field on the terminal, including a pasted multi-line key.

``getpass`` reads one line and, on POSIX, switches echo with ``TCSAFLUSH``, which throws away
whatever was typed or pasted beyond the line it returns: paste a PGP or PEM key at a ``getpass``
prompt and only its first line is kept (the rest is silently discarded, and a loop waiting for an
end marker then hangs). So fields are read here instead, from the controlling terminal, with echo
switched off once (``TCSANOW``) and back on without a flush (``TCSADRAIN``), line by line:

- a first line that opens an ASCII-armored block (``-----BEGIN <LABEL>-----``, PEM or PGP) is
  read up to and including its ``-----END <LABEL>-----`` line, whatever the field's kind;
- a ``textarea`` field is read up to a line holding a single ``.`` (or end of input, Ctrl-D);
  an empty first line (Enter alone) ends it at once, leaving the field empty;
- any other field is one line.

The value is never echoed. After a multi-line value the caller is told how many lines and bytes
were read, so a truncated paste is visible at once.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vultrino.errors import CredentialValidationError

__all__ = ["ARMOR_BEGIN", "FieldText", "read_field", "read_lines"]

#: The first line of an ASCII-armored block: PEM (RFC 7468) and OpenPGP (RFC 4880) alike.
ARMOR_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9][A-Z0-9 ._/-]*)-----")
END_OF_TEXTAREA = "."


@dataclass(frozen=True)
class FieldText:
    """What was read: the value, its line count, and the armor label when it was a block."""

    value: str
    lines: int
    armor: str | None = None

    def summary(self) -> str:
        """A confirmation that names the size of the value, never its content."""
        size = len(self.value.encode("utf-8"))
        what = f"a {self.armor} block" if self.armor else "text"
        return f"read {what}: {self.lines} line{'s' if self.lines != 1 else ''}, {size} bytes"


def read_lines(readline: Callable[[], str], *, textarea: bool) -> FieldText:
    """Assemble one field value from ``readline`` (which returns ``""`` at end of input).

    An armored block keeps its lines exactly and ends with a newline, as the key file would;
    a textarea's lines are joined with newlines and end with one; a single line has none.
    """
    first = readline()
    if first == "":
        return FieldText("", 0)
    line = first.rstrip("\r\n")
    begin = ARMOR_BEGIN.fullmatch(line.strip())
    if begin is not None:
        label = begin.group(1)
        end = f"-----END {label}-----"
        lines = [line]
        while True:
            raw = readline()
            if raw == "":
                raise CredentialValidationError(
                    f"the pasted {label} block ended before its '{end}' line, so nothing was "
                    "saved; paste the whole block, or pass it with --field NAME=@FILE"
                )
            lines.append(raw.rstrip("\r\n"))
            if lines[-1].strip() == end:
                return FieldText("\n".join(lines) + "\n", len(lines), label)
    if not textarea:
        return FieldText(line, 1)
    if line == "":  # Enter alone on the first line: no value (an optional field stays empty)
        return FieldText("", 0)
    lines = []
    while line != END_OF_TEXTAREA:
        lines.append(line)
        raw = readline()
        if raw == "":
            break
        line = raw.rstrip("\r\n")
    return FieldText("\n".join(lines) + ("\n" if lines else ""), len(lines))


@contextlib.contextmanager
def _terminal(hidden: bool) -> Iterator[Callable[[], str] | None]:
    """A line reader on the controlling terminal with echo off when ``hidden``; None when
    there is no terminal device to open (the caller falls back to getpass/input)."""
    try:
        import termios
    except ImportError:  # not POSIX
        yield None
        return
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        yield None
        return
    tty = io.TextIOWrapper(io.FileIO(fd, "r+"), encoding="utf-8", errors="replace")
    old = None
    try:
        if hidden:
            old = termios.tcgetattr(fd)
            new = termios.tcgetattr(fd)
            new[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSANOW, new)  # no flush: keep what is pasted
        yield tty.readline
    finally:
        if old is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
            sys.stderr.write("\n")  # the Enter that ended the input was not echoed
            sys.stderr.flush()
        tty.close()


def read_field(prompt: str, *, hidden: bool, textarea: bool) -> FieldText:
    """Ask for one field on the terminal (``prompt`` goes to stderr) and read its value."""
    with _terminal(hidden) as readline:
        if readline is None:
            import getpass

            reader: Callable[[str], str] = getpass.getpass if hidden else input

            def line() -> str:
                try:
                    return reader("") + "\n"
                except EOFError:
                    return ""

            sys.stderr.write(prompt)
            sys.stderr.flush()
            return read_lines(line, textarea=textarea)
        sys.stderr.write(prompt)
        sys.stderr.flush()
        return read_lines(readline, textarea=textarea)
