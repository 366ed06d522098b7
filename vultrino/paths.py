"""Where Vultrino keeps its files. A leaf module: it imports nothing from Vultrino."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "VULTRINO_HOME"
#: The config file to use instead of the home's ``config.toml`` (``vultrino -c PATH``).
ENV_CONFIG = "VULTRINO_CONFIG"


@dataclass(frozen=True)
class Home:
    """The layout of ``$VULTRINO_HOME`` (DESIGN.md section 2)."""

    root: Path
    #: the config file named by ``-c/--config`` or ``VULTRINO_CONFIG``; None: the home's own
    config_file: Path | None = None

    @property
    def store(self) -> Path:
        return self.root / "credentials.enc"

    @property
    def config(self) -> Path:
        """The config file: the one named by ``-c``/``VULTRINO_CONFIG``, else
        ``config.toml`` in the home."""
        return self.config_file if self.config_file is not None else self.root / "config.toml"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    @property
    def backups(self) -> Path:
        """Stores set aside by ``vultrino init --force``, still sealed, one file each."""
        return self.root / "backups"

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
    """``home`` if given, else ``$VULTRINO_HOME``, else ``~/.vultrino``; its config file is
    ``$VULTRINO_CONFIG`` when that is set (the home itself does not move with it)."""
    if home is None:
        env = os.environ.get(ENV_HOME)
        home = env if env else Path.home() / ".vultrino"
    config = os.environ.get(ENV_CONFIG)
    config_file = Path(config).expanduser().absolute() if config else None
    return Home(Path(home).expanduser().absolute(), config_file)
