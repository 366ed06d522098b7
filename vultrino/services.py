"""The parts one open home is made of, built lazily and shared by the facade and the pipeline.

:class:`Services` holds the unlocked store, the engine runtime, the plugin registry, the audit
log and the agent profiles parsed from the store. Nothing is decrypted, compiled or imported
until a part is first asked for; :meth:`Services.close` releases them all. The facade
(:mod:`vultrino.core`) administers these parts; the call pipeline (:mod:`vultrino.pipeline`)
runs calls through them. Neither hands them out: they are not public API.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vultrino import audit
from vultrino._scrub import clear_scrubbers
from vultrino.config import Config
from vultrino.errors import (
    AgentNotFoundError,
    ConfigError,
    PasswordRequiredError,
    StoreError,
    StoreNotInitializedError,
    VultrinoError,
    WrongPasswordError,
)
from vultrino.paths import Home
from vultrino.plugins.logs import PluginLogs
from vultrino.policy.access import BUILTIN_ROLES, ApiKey
from vultrino.policy.profile import AgentProfile

if TYPE_CHECKING:
    from vultrino.plugins.registry import PluginRegistry
    from vultrino.runtime import WasmRuntime
    from vultrino.store import CredentialStore, KdfParams, VersionRetention
    from vultrino.store.pg_audit import AuditTable
    from vultrino.store.pg_plugins import PluginShelf

__all__ = [
    "ENV_PASSWORD",
    "ENV_PASSWORD_FILE",
    "PASSWORD_PROMPT",
    "PASSWORD_TRIES",
    "Prompt",
    "Services",
    "env_password",
    "kdf_params",
    "resolve_password",
]

ENV_PASSWORD = "VULTRINO_PASSWORD"  # noqa: S105 - a variable name
ENV_PASSWORD_FILE = "VULTRINO_PASSWORD_FILE"  # noqa: S105

Prompt = Callable[[str], str]

PASSWORD_PROMPT = "Store password: "  # noqa: S105 - a prompt
#: How often a wrong password may be typed at the prompt before the command fails (as sudo).
PASSWORD_TRIES = 3

_log = logging.getLogger("vultrino.services")


def env_password(password: str | None) -> str | None:
    """The explicit password, else VULTRINO_PASSWORD, else VULTRINO_PASSWORD_FILE, else None."""
    if password is not None:
        return password
    env = os.environ.get(ENV_PASSWORD)
    if env:
        return env
    file = os.environ.get(ENV_PASSWORD_FILE)
    if not file:
        return None
    try:
        mode = os.stat(file).st_mode
    except OSError as exc:
        raise PasswordRequiredError(
            f"{ENV_PASSWORD_FILE}={file}: cannot read the password file ({exc.strerror})"
        ) from exc
    if mode & 0o077:  # as the MCP token file: a password others can read is no secret
        raise ConfigError(
            f"{ENV_PASSWORD_FILE}={file}: the password file is readable or writable by "
            f"other users (mode {mode & 0o777:o}); run `chmod 600 {file}`"
        )
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise PasswordRequiredError(
            f"{ENV_PASSWORD_FILE}={file}: cannot read the password file ({exc.strerror})"
        ) from exc
    return text.rstrip("\r\n")


def resolve_password(password: str | None, prompt: Prompt | None) -> str:
    """The explicit password, else VULTRINO_PASSWORD, else VULTRINO_PASSWORD_FILE, else prompt
    (once: for a new store). Opening an existing store goes through :meth:`Services.store`."""
    found = env_password(password)
    if found is not None:
        return found
    if prompt is not None:
        return prompt(PASSWORD_PROMPT)
    raise PasswordRequiredError(
        f"no terminal to ask for the store password: set {ENV_PASSWORD} or {ENV_PASSWORD_FILE}"
    )


def _no_password() -> PasswordRequiredError:
    return PasswordRequiredError(
        "the credential store is locked and there is no terminal to ask for its password: "
        f"run `vultrino unlock` first, or set {ENV_PASSWORD} or {ENV_PASSWORD_FILE}"
    )


def kdf_params(opslimit: int | None, memlimit: int | None) -> KdfParams | None:
    """Argon2id parameters with the built-in default for what is not given; None if neither."""
    if opslimit is None and memlimit is None:
        return None
    from vultrino.store import KdfParams

    default = KdfParams.default()
    return KdfParams(opslimit=opslimit or default.opslimit, memlimit=memlimit or default.memlimit)


class Services:
    """The lazily built parts of one open home (see the module docstring).

    ``lock`` serialises mutations and refreshes. The lazily built parts have their own locks,
    taken innermost and never around a call back out: a plugin that loads its module from a
    worker thread asks for the runtime while another thread may hold ``lock`` in a refresh, and
    one shared lock would deadlock the two. ``loaded_store`` and ``loaded_registry`` are the
    parts once built (None before), for hot paths that skip the property.
    """

    def __init__(
        self,
        home: Home,
        config: Config,
        *,
        password: str | None = None,
        prompt: Prompt | None = None,
        runtime: WasmRuntime | None = None,
        use_session: bool = True,
    ) -> None:
        self.home = home
        self.config = config
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("home %s, config %s", home.root, config.source or "(none: defaults)")
        self._password = password
        self._prompt = prompt
        self._use_session = use_session
        # how the store was opened ("password": given or from the environment, "session",
        # "keyring", "prompt"), and the password when one opened it (for `unlock --remember`)
        self.unlocked_by: str | None = None
        self._opened_password: str | None = None
        self._runtime = runtime
        self.loaded_store: CredentialStore | None = None
        self.loaded_registry: PluginRegistry | None = None
        self.lock = threading.RLock()
        self._store_lock = threading.Lock()
        self._runtime_lock = threading.Lock()
        self._registry_lock = threading.Lock()
        # opened on the first record; its head is signed with the store's key once the store
        # is open (a call never unlocks the store just to sign)
        # With the store in PostgreSQL, the audit log is its append-only table (every
        # replica's records in one place, docs/scaling.md); it connects on the first record.
        self.audit: audit.AuditLog | AuditTable
        if config.store_url is None:
            self.audit = audit.AuditLog(home.audit_log, signer=self._sign_audit_head)
        else:
            from vultrino.store import audit_table

            self.audit = audit_table(config.store_url, signer=self._sign_audit_head)
        # what plugins log, one file each under the home (``vultrino plugin logs``)
        self.plugin_logs = PluginLogs(home.logs)
        self.plugins_signature = ""  # what the plugins directory looked like when last loaded
        self._profiles_cache: tuple[int, tuple[AgentProfile, ...]] | None = None
        self._keys_cache: tuple[int, tuple[ApiKey, ...]] | None = None
        # the shared plugins of a PostgreSQL store: their tables, and the store revision at
        # which plugins/ was last made to match them (None: not yet)
        self._shelf: PluginShelf | None = None
        self._shared_at: int | None = None
        self.shared_problems: dict[str, str] = {}

    # --- the parts ---------------------------------------------------------------------------

    @property
    def store(self) -> CredentialStore:
        """The unlocked store; the key is derived (or fetched from the unlock agent) on first
        access."""
        if self.loaded_store is not None:
            return self.loaded_store
        with self._store_lock:
            if self.loaded_store is None:
                from vultrino.store import CredentialStore

                if self.config.store_url is None and not CredentialStore.exists(self.home.store):
                    raise StoreNotInitializedError(
                        f"no credential store at {self.home.store}: run `vultrino init` first"
                    )
                self.loaded_store = self._open_store()
            return self.loaded_store

    def _open_store(self) -> CredentialStore:
        """The password sources in order (docs/cli.md#passwords): the given password,
        VULTRINO_PASSWORD, VULTRINO_PASSWORD_FILE, the home's unlock agent, the OS keyring
        (when opted in), the prompt with PASSWORD_TRIES tries."""
        from vultrino.store import open_store

        path = self.store_location
        password = env_password(self._password)
        if password is not None:
            return self._opened(
                open_store(path, password, retention=self.retention()),
                "password",
                password,
            )
        if self._use_session:
            store = self._open_with_session()
            if store is not None:
                return store
        if self.keyring_opted_in():
            from vultrino import _keyring

            password = _keyring.get_password(self.keyring_account)
            if password is not None:
                try:
                    store = open_store(path, password, retention=self.retention())
                except WrongPasswordError:
                    raise WrongPasswordError(
                        f"the password kept in the OS keyring for {self.home.root} does not "
                        f"open {path}; run `vultrino unlock --remember` to keep the right one, "
                        "or `vultrino lock --forget` to stop using the keyring"
                    ) from None
                return self._opened(store, "keyring", password)
        if self._prompt is None:
            raise _no_password()
        label = PASSWORD_PROMPT
        for left in range(PASSWORD_TRIES - 1, -1, -1):
            password = self._prompt(label)
            try:
                store = open_store(path, password, retention=self.retention())
            except WrongPasswordError:
                if not left:
                    raise
                label = f"wrong password, try again ({left} left)\n{PASSWORD_PROMPT}"
                continue
            return self._opened(store, "prompt", password)
        raise AssertionError("unreachable")  # pragma: no cover

    def _opened(self, store: CredentialStore, how: str, password: str) -> CredentialStore:
        self.unlocked_by = how
        self._opened_password = password
        self._log_opened(how)
        return store

    def _log_opened(self, how: str) -> None:
        # a database URL may carry its password: the log names only the backend
        where = "a PostgreSQL database" if self.config.store_url else str(self.home.store)
        _log.info("store opened: %s (unlocked by %s)", where, how)

    def _open_with_session(self) -> CredentialStore | None:
        """The store opened with the key of the home's unlock agent; None when it is locked.
        A key that does not open the store (re-keyed meanwhile, or a modified file) ends the
        session, and the next source is asked."""
        from vultrino import unlock
        from vultrino.store import StoreKey, open_store

        fetched = unlock.fetch_key(self.home.root)
        if fetched is None:
            return None
        key = StoreKey(*fetched)
        try:
            store = open_store(self.store_location, key=key, retention=self.retention())
        except WrongPasswordError:
            unlock.lock(self.home.root)
            return None
        finally:
            key.wipe()
        self.unlocked_by = "session"
        self._log_opened("session")
        return store

    def opened_password(self) -> str:
        """The password the store was opened with (not when an unlock session opened it)."""
        _ = self.store
        if self._opened_password is None:
            raise PasswordRequiredError(
                "the store was opened with an unlock session's key, not its password; this "
                f"needs the password: give it with {ENV_PASSWORD}, {ENV_PASSWORD_FILE} or at "
                "the prompt"
            )
        return self._opened_password

    # --- the OS keyring ----------------------------------------------------------------------

    @property
    def keyring_account(self) -> str:
        """The home's entry in the OS keyring: service ``vultrino``, this account."""
        return str(self.home.root.resolve())

    def keyring_opted_in(self) -> bool:
        return self.home.keyring_marker.exists()

    def create_store(self, kdf: KdfParams | None, *, set_aside: bool = False) -> Path | None:
        """Create a new, empty store in the home (``vultrino init``) and keep it open. With
        ``set_aside``, a store file already there is first moved, unchanged, into the home's
        ``backups/``; returns where it went (None when there was none)."""
        from vultrino.store import CredentialStore, create_store

        pw = resolve_password(self._password, self._prompt)  # before anything is moved
        self.home.ensure()
        backup: Path | None = None
        location = self.store_location
        if set_aside and self.config.store_url is not None:
            raise StoreError(
                "init --force replaces only a store file; this home's store is in PostgreSQL "
                "([store] url / VULTRINO_STORE_URL), which init never empties"
            )
        if set_aside and CredentialStore.exists(self.home.store):
            backup = CredentialStore.set_aside(self.home.store, self.home.backups)
        try:
            self.loaded_store = create_store(location, pw, kdf, retention=self.retention())
        except VultrinoError as exc:
            if backup is None:
                raise
            raise StoreError(
                f"{exc}; the old store is kept at {backup}: move it back to {self.home.store} "
                "to use it again"
            ) from exc
        return backup

    @property
    def store_location(self) -> Path | str:
        """Where the store lives: the home's credentials.enc, or the configured database
        URL (``[store] url`` / VULTRINO_STORE_URL)."""
        return self.config.store_url or self.home.store

    def shared_rate(self) -> Callable[[str, int, float], float] | None:
        """The store's shared rate-limit buckets, when its backend keeps them (PostgreSQL:
        every replica on the database draws from the same bucket); None: per process."""
        store = self.store
        return store.take_token if store.shares_rate_limits else None

    def retention(self) -> VersionRetention:
        """How long earlier secret versions are kept ([store] in config.toml)."""
        from vultrino.store import VersionRetention

        return VersionRetention(self.config.keep_versions, self.config.keep_versions_days)

    def configured_kdf(self) -> KdfParams | None:
        return kdf_params(self.config.kdf_opslimit, self.config.kdf_memlimit)

    @property
    def runtime(self) -> WasmRuntime:
        if self._runtime is not None:
            return self._runtime
        with self._runtime_lock:
            if self._runtime is None:
                from vultrino.runtime import WasmRuntime

                self._runtime = WasmRuntime(
                    engine=self.config.engine, cache_dir=self.home.cache, limits=self.config.limits
                )
            return self._runtime

    @property
    def registry(self) -> PluginRegistry:
        if self.loaded_registry is not None:
            return self.loaded_registry
        with self._registry_lock:
            if self.loaded_registry is None:
                from vultrino.plugins.http import HttpPlugin
                from vultrino.plugins.registry import PluginRegistry

                http = HttpPlugin(max_response_bytes=self.config.http_max_response_bytes)
                registry = PluginRegistry(
                    self.home.plugins,
                    lambda: self.runtime,
                    builtins=[http],
                    log_for=self.plugin_logs.sink,
                    manifest_cache=self.home.manifest_cache,
                )
                if self.config.store_url is not None:  # the database's plugins first
                    self.sync_shared_plugins()
                    registry.set_refused(self.shared_problems)
                registry.load_all()
                self.plugins_signature = self.scan_plugins_dir()
                if _log.isEnabledFor(logging.INFO):
                    _log.info("plugins loaded: %s", ", ".join(p.name for p in registry.plugins()))
                self.loaded_registry = registry
            # (another thread may have loaded it while this one waited for the lock)
            return self.loaded_registry

    def _sign_audit_head(self, message: bytes) -> tuple[bytes, bytes] | None:
        store = self.loaded_store
        return None if store is None else store.sign_audit_head(message)

    # --- agent profiles ----------------------------------------------------------------------

    def profiles(self) -> tuple[AgentProfile, ...]:
        """The stored profiles, parsed once per store revision (every write, here or in
        another process, changes it), not on every call an agent makes."""
        store = self.store
        revision = store.revision
        cached = self._profiles_cache
        if cached is not None and cached[0] == revision:
            return cached[1]
        profiles = tuple(AgentProfile.from_record(r) for r in store.agent_records())
        self._profiles_cache = (revision, profiles)
        return profiles

    def profile(self, name: str) -> AgentProfile:
        """The stored profile (agent or role) ``name``, else the built-in role of that name
        (AgentNotFoundError if there is neither)."""
        for p in self.profiles():
            if p.name == name:
                return p
        builtin = BUILTIN_ROLES.get(name)
        if builtin is not None:
            return builtin
        raise AgentNotFoundError(
            f"no agent or role named {name!r}; `vultrino agent list` and `vultrino role list` "
            "show them"
        )

    def api_keys(self) -> tuple[ApiKey, ...]:
        """The stored API keys, parsed once per store revision."""
        store = self.store
        revision = store.revision
        cached = self._keys_cache
        if cached is not None and cached[0] == revision:
            return cached[1]
        keys = tuple(ApiKey.from_record(r) for r in store.key_records())
        self._keys_cache = (revision, keys)
        return keys

    # --- the plugins directory ---------------------------------------------------------------

    def plugin_shelf(self) -> PluginShelf | None:
        """Where a PostgreSQL store keeps the shared plugins (None with a file store, whose
        plugins are only the home's directory). Opens the store."""
        if self.config.store_url is None:
            return None
        store = self.store
        if store.backend != "postgresql":
            return None
        if self._shelf is None:
            from vultrino.store.pg_plugins import PluginShelf
            from vultrino.store.postgres import PostgresStore

            assert isinstance(store, PostgresStore)
            self._shelf = PluginShelf(store)
        return self._shelf

    def sync_shared_plugins(self, *, force: bool = False) -> bool:
        """With a PostgreSQL store, make ``plugins/`` hold what the database shares, when the
        store's revision moved since the last time (every install or removal on any replica
        moves it); True when the directory changed. Nothing with a file store."""
        shelf = self.plugin_shelf()
        if shelf is None:
            return False
        from vultrino.plugins.install import shared

        revision = self.store.revision  # before the listing: a later change is seen next time
        if not force and revision == self._shared_at:
            return False
        result = shared.sync(shelf, self.home.plugins)
        self._shared_at = revision
        changed = result.changed or result.problems != self.shared_problems
        self.shared_problems = result.problems
        return changed

    def reload_plugins_if_changed(self) -> None:
        """Load the plugins again when another process installed or removed one (with a
        PostgreSQL store: on any replica, :meth:`sync_shared_plugins`)."""
        problems_changed = self.sync_shared_plugins()
        signature = self.scan_plugins_dir()
        if signature != self.plugins_signature or problems_changed:
            registry = self.registry
            registry.set_refused(self.shared_problems)
            registry.load_all()
            self.plugins_signature = signature

    def scan_plugins_dir(self) -> str:
        parts: list[str] = []
        root = self.home.plugins
        if not root.is_dir():
            return ""
        for entry in sorted(root.iterdir()):
            if entry.name.startswith("."):
                continue
            try:
                files = sorted(entry.iterdir()) if entry.is_dir() else [entry]
                for f in files:
                    st = f.stat()
                    parts.append(f"{entry.name}/{f.name}:{st.st_mtime_ns}:{st.st_size}:{st.st_ino}")
            except OSError:
                parts.append(f"{entry.name}:-")
        return "|".join(parts)

    # --- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close plugins, the runtime, the store and the audit log; idempotent."""
        with self.lock:
            if self.loaded_registry is not None:
                self.loaded_registry.close()
                self.loaded_registry = None
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None
            self.audit.close()  # signs the head while the store is still open
            self.plugin_logs.close()
            if self.loaded_store is not None:
                self.loaded_store.close()
                self.loaded_store = None
            self._profiles_cache = None
            self._shelf = None
            self._shared_at = None
            self._opened_password = None
            self._keys_cache = None
            # the scrubbers hold every form of the secrets they were built for (other open
            # facades of this process just build theirs again)
            clear_scrubbers()
