"""Shared test isolation: no test touches a real home, a real password or real plugins."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point VULTRINO_HOME at a fresh directory and clear every other VULTRINO_* variable."""
    for key in list(os.environ):
        if key.startswith("VULTRINO_"):
            monkeypatch.delenv(key, raising=False)
    home = tmp_path_factory.mktemp("vhome")
    monkeypatch.setenv("VULTRINO_HOME", str(home))
    yield home
