"""``vultrino plugin dev``: run a step (build and reinstall) now and after every change.

The watcher polls: every ``interval`` seconds it takes the plugin directory's
:func:`~._freshness.signature` (paths, sizes, modification times of every file but cargo's
target directories and ``.git``); when it differs, it waits until the tree holds still for one
more ``settle`` period (an editor saving several files, cargo writing ``Cargo.lock``), then runs
the step again. No dependency, no inotify: the same on every system, and a few milliseconds a
poll for a plugin-sized tree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from vultrino.plugins.install._freshness import signature

__all__ = ["DEFAULT_INTERVAL", "watch"]

DEFAULT_INTERVAL = 0.3


def watch(
    directory: Path,
    step: Callable[[], None],
    *,
    interval: float = DEFAULT_INTERVAL,
    settle: float | None = None,
    rounds: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run ``step()`` now, then again after each change of ``directory``; returns after
    ``rounds`` steps when given (else runs until interrupted). ``step`` reports its own
    errors: an exception from it ends the watch."""
    settle = interval if settle is None else settle
    last = signature(directory)
    step()
    done = 1
    while rounds is None or done < rounds:
        sleep(interval)
        now = signature(directory)
        if now == last:
            continue
        while True:  # wait until the tree holds still
            sleep(settle)
            again = signature(directory)
            if again == now:
                break
            now = again
        last = now
        step()
        done += 1
