"""Where Vultrino keeps its files. A leaf module: it imports nothing from Vultrino."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "VULTRINO_HOME"


@dataclass(frozen=True)
class Home:
    """The layout of ``$VULTRINO_HOME`` (DESIGN.md section 2)."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "credentials.enc"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def build_cache(self) -> Path:
        """Plugin builds kept between ``install --build`` runs (docs/plugins/installing.md)."""
        return self.cache / "builds"

    @property
    def manifest_cache(self) -> Path:
        """Parsed manifests and verified module digests (docs/cli.md#plugin-health)."""
        return self.cache / "manifest-cache.json"

    @property
    def keyring_marker(self) -> Path:
        """Present when the owner opted in to keeping the password in the OS keyring
        (``vultrino unlock --remember``; docs/cli.md#passwords)."""
        return self.root / "keyring.json"

    @property
    def plugins(self) -> Path:
        return self.root / "plugins"

    @property
    def logs(self) -> Path:
        """What plugins logged, one file per plugin (``vultrino plugin logs``)."""
        return self.root / "logs"

    def ensure(self) -> Home:
        """Create the home (mode 0700) and its plugins folder if missing."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.plugins.mkdir(mode=0o700, exist_ok=True)
        return self


def resolve_home(home: str | os.PathLike[str] | None = None) -> Home:
    """``home`` if given, else ``$VULTRINO_HOME``, else ``~/.vultrino``."""
    if home is None:
        env = os.environ.get(ENV_HOME)
        home = env if env else Path.home() / ".vultrino"
    return Home(Path(home).expanduser().absolute())
