"""The lazily built plugin registry of ``vultrino.services.Services`` under concurrent first use.

Two threads may ask for the registry before it exists (the MCP server's worker pools answering
their first requests at once): one builds it; the other, having waited for the lock, must get
that same registry rather than fail.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from vultrino.config import Config
from vultrino.paths import Home
from vultrino.plugins.registry import PluginRegistry
from vultrino.services import Services


class _Announcing:
    """A lock that says when a thread starts waiting for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.asked = threading.Event()

    def __enter__(self) -> None:
        self.asked.set()
        self.lock.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()


def test_a_thread_that_waited_for_another_building_the_registry_gets_it(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.ensure()
    services = Services(home, Config())
    lock = _Announcing()
    services._registry_lock = lock  # type: ignore[assignment]
    got: list[object] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            got.append(services.registry)
        except BaseException as exc:
            errors.append(exc)

    with lock.lock:  # another thread is building the registry
        waiter = threading.Thread(target=ask)
        waiter.start()
        assert lock.asked.wait(30)  # the waiter found none and asked for the lock
        built = PluginRegistry(home.plugins, lambda: services.runtime)
        services.loaded_registry = built
    waiter.join(30)
    assert errors == []
    assert got == [built]
