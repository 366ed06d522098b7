"""`vultrino init` offers the web admin password on a terminal (a real pty), and
`vultrino admin set-password` asks for it twice, hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_cli_paste import PASSWORD as STORE_PASSWORD  # what Terminal's env holds
from tests.e2e.test_cli_paste import Terminal
from vultrino.core import Vultrino

ADMIN_PASSWORD = "web admin password 88e0"


@pytest.fixture
def home(isolated_home: Path) -> Path:
    (isolated_home / "config.toml").write_text("[store]\nkdf_opslimit = 1\nkdf_memlimit_mb = 1\n")
    return isolated_home


def _admin(home: Path, password: str) -> tuple[bool, bool]:
    with Vultrino.open(home, STORE_PASSWORD) as v:
        return v.admin_password_set(), v.check_admin_password(password)


def _init(t: Terminal) -> None:
    t.expect(r"New store password: ")
    t.type(STORE_PASSWORD + "\n")
    t.expect(r"Repeat password: ")
    t.type(STORE_PASSWORD + "\n")
    t.expect(r"New web admin password \(Enter to skip.*\): ")


def test_init_offers_the_admin_password(home: Path) -> None:
    t = Terminal("init")
    _init(t)
    t.type(ADMIN_PASSWORD + "\n")
    t.expect(r"Repeat web admin password: ")
    t.type(ADMIN_PASSWORD + "\n")
    assert t.finish() == 0, t.seen
    assert "the web admin password is set" in t.seen
    assert ADMIN_PASSWORD not in t.seen and STORE_PASSWORD not in t.seen  # never echoed
    assert _admin(home, ADMIN_PASSWORD) == (True, True)


def test_init_skips_it_on_enter_and_set_password_sets_it_later(home: Path) -> None:
    t = Terminal("init")
    _init(t)
    t.type("\n")
    assert t.finish() == 0, t.seen
    assert _admin(home, "") == (False, False)

    t = Terminal("admin", "set-password")
    t.expect(r"New web admin password: ")
    t.type(ADMIN_PASSWORD + "\n")
    t.expect(r"Repeat web admin password: ")
    t.type(ADMIN_PASSWORD + "x\n")  # a typo
    assert t.finish() != 0
    assert "did not match; nothing was changed" in t.seen
    assert _admin(home, ADMIN_PASSWORD) == (False, False)

    t = Terminal("admin", "set-password")
    t.expect(r"New web admin password: ")
    t.type(ADMIN_PASSWORD + "\n")
    t.expect(r"Repeat web admin password: ")
    t.type(ADMIN_PASSWORD + "\n")
    assert t.finish() == 0, t.seen
    assert ADMIN_PASSWORD not in t.seen
    assert _admin(home, ADMIN_PASSWORD) == (True, True)
