"""Settings from ``$VULTRINO_HOME/config.toml`` and the ``VULTRINO_*`` environment.

An absent file means defaults. A broken file is a :class:`ConfigError` naming the file, and the
line (syntax errors) or key (wrong values) — never silently replaced by defaults. Unknown keys are
errors too: a mistyped limit must not quietly leave the default in force.

::

    engine = "wasmtime"          # or "wasmer"; VULTRINO_ENGINE overrides

    [limits]
    deadline_s = 5.0             # wall-clock budget of one plugin call
    memory_mb = 128              # linear-memory cap of one plugin instance
    output_mb = 8                # largest plugin result

    [store]
    url = "postgresql://vultrino@db.internal/vultrino"   # the store in PostgreSQL (scaling.md)
    kdf_opslimit = 3             # Argon2id parameters for `init` and `rekey`
    kdf_memlimit_mb = 128
    keep_versions = 1            # earlier secret versions kept after `vultrino rotate`
    keep_versions_days = 7       # ... each for this many days (`vultrino rollback`)

    [http]
    max_response_mb = 10         # largest body the built-in HTTP plugin reads

    [mcp]
    port = 8765                  # default port of `vultrino mcp --http`

    [build]
    sandbox = "auto"             # `plugin install --build`: "auto", "require" or "off"

    [server]                     # `vultrino serve` (docs/server.md)
    bind = "127.0.0.1:7879"
    tls_cert = "/etc/vultrino/cert.pem"
    tls_key = "/etc/vultrino/key.pem"
    trusted_proxies = ["127.0.0.1"]
    allowed_hosts = ["vultrino.example.com"]
    approval_wait_s = 120        # how long a gated call waits in the approvals inbox
    shutdown_grace_s = 30        # how long SIGTERM lets in-flight calls finish
    header_timeout_s = 30        # how long a request's line and headers may take to arrive

    [logging]                    # the CLI's diagnostic log on stderr (docs/configuration.md)
    level = "info"               # error, warn, info, debug; -v / -vv override
    format = "json"              # "text" (default) or "json": one object per line

    [[policies]]                 # rules for every caller (docs/agents.md#policies)
    name = "github-no-delete"
    credential_pattern = "github-*"
    default_action = "allow"
    rules = [{ condition = { method_match = ["DELETE"] }, action = "deny" }]
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vultrino.errors import ConfigError
from vultrino.runtime.engine import MIB, Limits

ENV_ENGINE = "VULTRINO_ENGINE"
ENV_STORE_URL = "VULTRINO_STORE_URL"
STORE_URL_SCHEMES = ("postgresql://", "postgres://")
ENGINE_NAMES = ("wasmtime", "wasmer")
#: ``[logging] level`` values (``warning`` and the original's ``trace`` are accepted too)
LOG_LEVEL_NAMES = ("error", "warn", "info", "debug")
LOG_FORMATS = ("text", "json")
_LOG_ALIASES = {"warning": "warn", "trace": "debug"}

_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "": {"engine": str, "policies": list},
    "limits": {"deadline_s": (int, float), "memory_mb": int, "output_mb": int},
    "store": {
        "url": str,
        "kdf_opslimit": int,
        "kdf_memlimit_mb": int,
        "keep_versions": int,
        "keep_versions_days": (int, float),
    },
    "http": {"max_response_mb": int},
    "logging": {"level": str, "format": str},
    "mcp": {"port": int},
    "build": {"sandbox": str},
    "server": {
        "bind": str,
        "tls_cert": str,
        "tls_key": str,
        "trusted_proxies": list,
        "allowed_hosts": list,
        "approval_wait_s": (int, float),
        "shutdown_grace_s": (int, float),
        "header_timeout_s": (int, float),
    },
}
DEFAULT_BIND = "127.0.0.1:7879"
BUILD_SANDBOX_MODES = ("auto", "require", "off")


@dataclass(frozen=True)
class Config:
    """Effective settings: file values over defaults, environment over file."""

    engine: str = "wasmtime"
    limits: Limits = field(default_factory=Limits)
    kdf_opslimit: int | None = None
    kdf_memlimit: int | None = None
    http_max_response_bytes: int = 10 * MIB
    mcp_port: int = 8765
    build_sandbox: str = "auto"
    keep_versions: int = 1
    keep_versions_days: float = 7.0
    source: Path | None = None
    server_bind: str = DEFAULT_BIND
    server_tls_cert: str | None = None
    server_tls_key: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    approval_wait_s: float = 120.0
    shutdown_grace_s: float = 30.0
    header_timeout_s: float = 30.0
    #: where the store lives when not in the home's credentials.enc: a postgresql:// URL
    store_url: str | None = None
    # the [[policies]] tables as written; vultrino.policy.rules parses and checks them
    policies: tuple[dict[str, Any], ...] = ()
    #: ``[logging] level`` (one of LOG_LEVEL_NAMES), None when not set
    log_level: str | None = None
    #: ``[logging] format``: "text" or "json"
    log_format: str = "text"


def load_config(path: Path, *, required: bool = False) -> Config:
    """Read ``path`` (absent = defaults, unless ``required``: a config file named by
    ``-c``/``VULTRINO_CONFIG`` must exist) and apply ``VULTRINO_ENGINE``."""
    data: dict[str, Any] = {}
    if required and not path.is_file():
        raise ConfigError(
            f"{path}: no such config file (named by -c/--config or VULTRINO_CONFIG); give "
            "an existing file, or leave both out to use config.toml in the home"
        )
    if path.exists():
        if sys.version_info >= (3, 11):  # imported only when there is a file to read
            import tomllib
        else:  # pragma: no cover - exercised on the Python 3.10 CI leg
            import tomli as tomllib
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}. Fix the file or delete it to use defaults.") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if isinstance(data.get("store"), str):  # `store = "postgresql://…"`: short for [store] url
        data = {**data, "store": {"url": data["store"]}}
    _check_schema(path, data)

    limits = data.get("limits", {})
    store = data.get("store", {})
    try:
        lim = Limits(
            deadline_s=float(limits.get("deadline_s", Limits.deadline_s)),
            memory_bytes=int(limits.get("memory_mb", Limits.memory_bytes // MIB)) * MIB,
            output_bytes=int(limits.get("output_mb", Limits.output_bytes // MIB)) * MIB,
        )
    except ValueError as exc:
        raise ConfigError(f"{path}: [limits]: {exc}") from exc

    engine = os.environ.get(ENV_ENGINE) or data.get("engine", "wasmtime")
    if engine not in ENGINE_NAMES:
        where = ENV_ENGINE if os.environ.get(ENV_ENGINE) else f"{path}: engine"
        raise ConfigError(f"{where}: unknown engine {engine!r}; expected one of {ENGINE_NAMES}")

    build_sandbox = data.get("build", {}).get("sandbox", "auto")
    if build_sandbox not in BUILD_SANDBOX_MODES:
        raise ConfigError(
            f"{path}: build.sandbox: expected one of {', '.join(BUILD_SANDBOX_MODES)}, "
            f"got {build_sandbox!r}"
        )
    memlimit_mb = store.get("kdf_memlimit_mb")
    store_url = os.environ.get(ENV_STORE_URL) or store.get("url")
    if store_url is not None and not store_url.startswith(STORE_URL_SCHEMES):
        where = ENV_STORE_URL if os.environ.get(ENV_STORE_URL) else f"{path}: store.url"
        raise ConfigError(
            f"{where}: expected a postgresql://user@host:port/database URL; leave it unset "
            "to keep the store in the home's credentials.enc"
        )
    server = data.get("server", {})
    for name in ("trusted_proxies", "allowed_hosts"):
        if not all(isinstance(x, str) and x.strip() for x in server.get(name, [])):
            raise ConfigError(f"{path}: server.{name}: expected a list of non-empty strings")
    log_level, log_format = logging_settings(path, data.get("logging", {}))
    policies = data.get("policies", [])
    if not all(isinstance(x, dict) for x in policies):
        raise ConfigError(f"{path}: policies: expected [[policies]] tables")
    return Config(
        engine=engine,
        limits=lim,
        kdf_opslimit=store.get("kdf_opslimit"),
        kdf_memlimit=None if memlimit_mb is None else memlimit_mb * MIB,
        http_max_response_bytes=data.get("http", {}).get("max_response_mb", 10) * MIB,
        mcp_port=data.get("mcp", {}).get("port", 8765),
        build_sandbox=build_sandbox,
        keep_versions=store.get("keep_versions", 1),
        keep_versions_days=float(store.get("keep_versions_days", 7.0)),
        source=path if path.exists() else None,
        server_bind=server.get("bind", DEFAULT_BIND),
        server_tls_cert=server.get("tls_cert"),
        server_tls_key=server.get("tls_key"),
        trusted_proxies=tuple(x.strip() for x in server.get("trusted_proxies", [])),
        allowed_hosts=tuple(x.strip() for x in server.get("allowed_hosts", [])),
        approval_wait_s=float(server.get("approval_wait_s", 120.0)),
        shutdown_grace_s=float(server.get("shutdown_grace_s", 30.0)),
        header_timeout_s=float(server.get("header_timeout_s", 30.0)),
        policies=tuple(policies),
        store_url=store_url,
        log_level=log_level,
        log_format=log_format,
    )


def logging_settings(path: Path, table: dict[str, Any]) -> tuple[str | None, str]:
    """The ``[logging]`` table's level (None when unset) and format, checked."""
    level = table.get("level")
    if level is not None:
        level = _LOG_ALIASES.get(level.lower(), level.lower())
        if level not in LOG_LEVEL_NAMES:
            raise ConfigError(
                f"{path}: logging.level: expected one of {', '.join(LOG_LEVEL_NAMES)}, "
                f"got {table['level']!r}"
            )
    fmt = table.get("format", "text")
    if fmt not in LOG_FORMATS:
        raise ConfigError(
            f"{path}: logging.format: expected one of {', '.join(LOG_FORMATS)}, got {fmt!r}"
        )
    return level, fmt


def read_logging(path: Path) -> tuple[str | None, str]:
    """Only the ``[logging]`` settings of ``path`` (defaults when it is absent): what the CLI
    needs before a command runs. ConfigError for a broken file or bad values."""
    if not path.is_file():
        return None, "text"
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on the Python 3.10 CI leg
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    table = data.get("logging", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: logging: expected a [logging] table")
    for key, value in table.items():
        if key not in _SCHEMA["logging"] or not isinstance(value, str):
            raise ConfigError(f"{path}: logging.{key}: unknown key or not a string")
    return logging_settings(path, table)


def _check_schema(path: Path, data: dict[str, Any]) -> None:
    problems: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict) and key in _SCHEMA and key:
            table, entries = key, value
        elif key in _SCHEMA[""]:
            table, entries = "", {key: value}
        else:
            problems.append(f"{key}: unknown key (known: {', '.join(_known_keys())})")
            continue
        for name, val in entries.items():
            expected = _SCHEMA[table].get(name)
            where = f"{table}.{name}" if table else name
            if expected is None:
                problems.append(f"{where}: unknown key")
            elif isinstance(val, bool) or not isinstance(val, expected):
                problems.append(f"{where}: expected {_type_name(expected)}, got {val!r}")
            elif isinstance(val, (int, float)) and not isinstance(val, bool) and val <= 0:
                problems.append(f"{where}: must be positive, got {val!r}")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))


def _known_keys() -> list[str]:
    keys = list(_SCHEMA[""])
    keys += [f"[{t}]" for t in _SCHEMA if t]
    return keys


def _type_name(expected: type | tuple[type, ...]) -> str:
    if isinstance(expected, tuple):
        return " or ".join(t.__name__ for t in expected)
    return expected.__name__
