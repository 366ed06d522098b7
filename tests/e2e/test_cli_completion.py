"""Shell completion (`vultrino --show-completion`, `--install-completion`) through the installed
`vultrino` script, with the environment a shell's completion function sets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "vultrino"

pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="the vultrino script is not installed")


def complete(*words: str) -> list[str]:
    """What bash's completion function gets for the command line ``vultrino WORDS``, the last
    word being completed."""
    env = {
        **os.environ,
        "_VULTRINO_COMPLETE": "complete_bash",
        "COMP_WORDS": " ".join(["vultrino", *words]),
        "COMP_CWORD": str(len(words)),
    }
    r = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_show_completion_prints_a_bash_function_for_vultrino() -> None:
    r = subprocess.run(
        [SCRIPT, "--show-completion", "bash"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert "complete -o default -F _vultrino_completion vultrino" in r.stdout


def test_commands_subcommands_and_options_complete() -> None:
    assert complete("pl") == ["plugin"]
    assert complete("plugin", "ins") == ["install"]
    assert complete("audit", "--fol") == ["--follow"]
    assert {"request", "rekey", "remove"} <= set(complete("re"))
