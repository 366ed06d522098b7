"""The Vultrino facade: the one object the CLI, the MCP server and scripts call.

::

    from vultrino import Vultrino

    with Vultrino.open() as v:
        v.add_credential("github", "api_key", {"key": token}, allow=["https://api.github.com/*"])
        v.execute("github", "request", {"url": "https://api.github.com/user"})

Opening is cheap: nothing is decrypted and no engine is imported until a method needs it. The
store key is derived once, on first use, and reused for the life of the object. Plugins stay
instantiated, so repeated calls on one ``Vultrino`` cost microseconds, not a compile.

The facade is thin. Calls (``execute``, ``run_action``, ``call_tool``) and what a caller may see
go through the call pipeline (:mod:`vultrino.pipeline`) and its policy gate; the facade itself
administers the home: credentials, plugins, agent profiles, the audit log. The store, the
registry and the runtime (:mod:`vultrino.services`) are not public.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vultrino import _keyuse as key_use
from vultrino import audit
from vultrino.audit import Verdict
from vultrino.config import ENGINE_NAMES, Config, load_config
from vultrino.errors import (
    AgentExistsError,
    AgentNotFoundError,
    AgentValidationError,
    ConfigError,
    CredentialNotFoundError,
    CredentialValidationError,
    InvalidApiKeyError,
    KeyNotFoundError,
    PasswordRequiredError,
    StoreError,
)
from vultrino.info import (
    CredentialInfo,
    CredentialVersion,
    ToolInfo,
    TypeInfo,
    canonical_type,
    credential_info,
    credential_versions,
    replace_drops,
)
from vultrino.paths import Home, resolve_home
from vultrino.pipeline import Pipeline
from vultrino.plugins.validation import check_field_names
from vultrino.policy.access import (
    BUILTIN_ROLES,
    ApiKey,
    KeyInfo,
    RoleInfo,
    find_key,
    parse_expiry,
    role_info,
)
from vultrino.policy.profile import AgentInfo, AgentProfile, hash_token, new_token, stamped
from vultrino.services import (
    ENV_PASSWORD,
    ENV_PASSWORD_FILE,
    Prompt,
    Services,
    kdf_params,
    resolve_password,
)

if TYPE_CHECKING:
    from vultrino._rust_import import ImportReport
    from vultrino.agents import AgentScope
    from vultrino.plugins.base import CredentialTypeSpec, Plugin, Streaming
    from vultrino.plugins.install.installer import InstallResult
    from vultrino.plugins.logs import LogLine
    from vultrino.policy.approval import ApprovalRequest, Approver
    from vultrino.runtime import WasmRuntime
    from vultrino.store import Credential, KdfParams
    from vultrino.unlock import Session

__all__ = [
    "ADMIN_PASSWORD_MIN",
    "ENV_PASSWORD",
    "ENV_PASSWORD_FILE",
    "CredentialInfo",
    "CredentialVersion",
    "Prompt",
    "ToolInfo",
    "TypeInfo",
    "Vultrino",
    "kdf_params",
    "resolve_password",
]

ADMIN_PASSWORD_MIN = 8
"""The shortest web UI admin password accepted."""


#: What a decision's signature starts with (an audit head's starts otherwise), so a signature
#: of one can never be taken for the other.
_APPROVAL_PREFIX = b"vultrino approval decision v1\n"


class Vultrino:
    """The facade over one home: its store, plugins, agent profiles and audit log."""

    def __init__(
        self,
        home: Home,
        *,
        password: str | None = None,
        prompt: Prompt | None = None,
        config: Config | None = None,
        runtime: WasmRuntime | None = None,
        use_session: bool = True,
    ) -> None:
        self.home = home
        self.config = (
            config
            if config is not None
            else load_config(home.config, required=home.config_file is not None)
        )
        self._s = Services(
            home,
            self.config,
            password=password,
            prompt=prompt,
            runtime=runtime,
            use_session=use_session,
        )
        self._pipeline = Pipeline(self._s)
        self._build_cache = home.build_cache
        self._scratch: Path | None = None  # the temporary home of a scratch facade
        #: where `init(force=True)` moved the old store file (None: there was none)
        self.set_aside: Path | None = None
        self._key_use = key_use.KeyUse()

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        home: str | os.PathLike[str] | None = None,
        password: str | None = None,
        *,
        prompt: Prompt | None = None,
        engine: str | None = None,
        use_session: bool = True,
    ) -> Vultrino:
        """Open the home (``VULTRINO_HOME`` by default). Nothing is decrypted yet.

        Without a password (argument or environment), the store opens with the key of the
        home's unlock session when one runs (``use_session=False`` skips it), then with the
        password kept in the OS keyring when the owner opted in, then ``prompt``."""
        h = resolve_home(home)
        config = load_config(h.config, required=h.config_file is not None)
        if engine is not None:
            if engine not in ENGINE_NAMES:
                raise ConfigError(f"unknown engine {engine!r}; expected one of {ENGINE_NAMES}")
            config = replace(config, engine=engine)
        return cls(h, password=password, prompt=prompt, config=config, use_session=use_session)

    @classmethod
    def init(
        cls,
        home: str | os.PathLike[str] | None = None,
        password: str | None = None,
        *,
        kdf: KdfParams | None = None,
        prompt: Prompt | None = None,
        force: bool = False,
    ) -> Vultrino:
        """Create a new, empty store in the home and return the opened facade.

        ``force`` re-initialises a home that has a store file: the old file is moved,
        unchanged and still sealed under its old password, into the home's ``backups/``
        (``v.set_aside`` says where), then the new store is created; the unlock session ends
        and a password kept in the OS keyring is no longer used (it opens the old store).
        Everything else in the home stays: config.toml, plugins, the audit log (which gets a
        ``store.reinit`` record), caches and plugin logs."""
        v = cls.open(home, password, prompt=prompt)
        try:
            if force:
                from vultrino import unlock

                unlock.lock(v.home.root)  # the session holds the old store's key
            v.set_aside = v._s.create_store(kdf or v._s.configured_kdf(), set_aside=force)
            if v.set_aside is not None:
                v.home.keyring_marker.unlink(missing_ok=True)
                v._changed("store.reinit", subject=str(v.set_aside))
        except BaseException:
            v.close()
            raise
        return v

    @classmethod
    def scratch(
        cls, home: str | os.PathLike[str] | None = None, *, engine: str | None = None
    ) -> Vultrino:
        """A throwaway facade for trying plugins that are not installed (``plugin call``).

        Its home is a new private temporary directory holding an empty store, sealed under a
        random password that exists only in this object; ``close()`` deletes it all. Plugins
        installed into it and calls made with it take the same paths as in a real home (the
        installer's checks, the pipeline, the runtime, the scrubbing); of the real ``home``
        (default: ``VULTRINO_HOME``) it uses only config.toml and the build cache, so a build
        is as incremental as ``install --build``."""
        import secrets
        import shutil
        import tempfile

        from vultrino.store import KdfParams

        real = resolve_home(home)
        config = load_config(real.config, required=real.config_file is not None)
        if engine is not None:
            if engine not in ENGINE_NAMES:
                raise ConfigError(f"unknown engine {engine!r}; expected one of {ENGINE_NAMES}")
            config = replace(config, engine=engine)
        root = Path(tempfile.mkdtemp(prefix="vultrino-scratch-"))
        try:
            v = cls(Home(root), password=secrets.token_urlsafe(32), config=config)
            v._build_cache = real.build_cache
            v._scratch = root
            # The password is 256 random bits that never leave this object, so the key
            # derivation adds nothing: the cheapest parameters keep `plugin call` quick.
            v._s.create_store(KdfParams.minimal())
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return v

    def close(self) -> None:
        """Close plugins, the runtime and the store; idempotent. A scratch facade's home is
        deleted."""
        with self._s.lock:
            self._pipeline.forget()
            self._s.close()
        if self._scratch is not None:
            import shutil

            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> Vultrino:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_approver(self, approver: Approver | None) -> None:
        """Who approves the user's own calls that a ``prompt`` policy gates (the CLI asks on
        its terminal; `vultrino serve` puts them in its approvals inbox). None: refused."""
        self._pipeline.user_approver = approver

    def unlock(self) -> None:
        """Derive the store key now (the MCP server does this once at start; the CLI before
        it asks for anything else, so a wrong password costs no typing)."""
        _ = self._s.store

    # --- unlock sessions and the OS keyring ---------------------------------------------------

    def start_session(self, seconds: int) -> Session:
        """Open the store with its password, then start the home's unlock agent with the
        derived key for ``seconds`` (replacing a running one): later opens of this home by the
        same user need no password until it locks (docs/security.md#unlock-sessions)."""
        from vultrino import unlock

        s = self._s
        _ = s.store
        if s.unlocked_by == "session":
            raise PasswordRequiredError(
                "an unlock session starts only with the store password, not with another "
                "session's key; open the home with use_session=False"
            )
        if s.store.backend != "file":
            from vultrino.errors import UnlockSessionError

            raise UnlockSessionError(
                f"unlock sessions keep the key of a store file; this home's store is in "
                f"{s.store.location}, so give the password with VULTRINO_PASSWORD_FILE instead "
                "(docs/scaling.md)"
            )
        key = s.store.session_key()
        try:
            session = unlock.start(self.home.root, self.home.store, key.key, key.binding, seconds)
        finally:
            key.wipe()
        self._changed("session.unlock")
        return session

    def session(self) -> Session | None:
        """The home's running unlock session, or None when it is locked. Needs no password."""
        from vultrino import unlock

        return unlock.status(self.home.root)

    def lock(self) -> bool:
        """End the home's unlock session (the agent forgets the key); whether one ran."""
        from vultrino import unlock

        locked = unlock.lock(self.home.root)
        if locked:
            self._changed("session.lock")
        return locked

    @property
    def password_remembered(self) -> bool:
        """Whether the owner opted in to the OS keyring for this home."""
        return self._s.keyring_opted_in()

    def remember_password(self) -> str:
        """Keep the password that opened the store in the OS keyring, and use it from now on
        when no other source gives one; returns the keyring backend's name. KeyringError when
        there is no usable keyring."""
        from vultrino import _keyring
        from vultrino._fs import atomic_write

        s = self._s
        password = s.opened_password()
        backend = _keyring.set_password(s.keyring_account, password)
        marker = {"service": _keyring.SERVICE, "account": s.keyring_account, "backend": backend}
        try:
            atomic_write(self.home.keyring_marker, json.dumps(marker).encode() + b"\n")
        except OSError as exc:
            raise StoreError(
                f"cannot write {self.home.keyring_marker} ({exc.strerror}); the password is in "
                "the keyring but will not be used"
            ) from exc
        self._changed("keyring.remember")
        return backend

    def forget_password(self) -> bool:
        """Remove the password from the OS keyring and stop using it; whether it was kept."""
        from vultrino import _keyring
        from vultrino.errors import KeyringError

        s = self._s
        opted_in = s.keyring_opted_in()
        try:
            removed = _keyring.delete_password(s.keyring_account)
        except KeyringError as exc:
            if not opted_in:
                raise
            self.home.keyring_marker.unlink(missing_ok=True)
            raise KeyringError(
                f"Vultrino no longer reads the password from the OS keyring, but its entry "
                f"could not be removed: {exc}"
            ) from exc
        self.home.keyring_marker.unlink(missing_ok=True)
        if removed or opted_in:
            self._changed("keyring.forget")
        return removed or opted_in

    @property
    def engine(self) -> tuple[str, str]:
        """The engine plugins run on: (name, version)."""
        runtime = self._s.runtime
        return runtime.engine_name, runtime.engine_version

    # --- credentials -------------------------------------------------------------------------

    def credentials(self) -> list[CredentialInfo]:
        """Metadata of every credential, sorted by alias. Never a secret value."""
        return self._pipeline.credentials()

    def credential_count(self) -> int:
        """How many credentials :meth:`credentials` would list, without building them."""
        return self._s.store.count()

    def credential_info(self, alias: str) -> CredentialInfo:
        return self._pipeline.credential_info(alias)

    def add_credential(
        self,
        alias: str,
        type: str,
        fields: Mapping[str, Any],
        description: str | None = None,
        allow: Sequence[str] | None = None,
        *,
        replace: bool = False,
    ) -> CredentialInfo:
        """Validate ``fields`` (the plugin's checks: the manifest's, then its own) and store the
        credential. Nothing is stored when a check fails.

        ``allow`` is the URL allowlist used by the built-in HTTP plugin (``["*"]`` allows any
        URL, and must be asked for explicitly).
        """
        from vultrino.store import Credential
        from vultrino.store.credentials import refuse_id_shaped_alias

        s = self._s
        refuse_id_shaped_alias(alias)
        plugin, spec = s.registry.resolve_type(type)
        clean = plugin.validate_credential(spec.name, fields)
        patterns = plugin.validate_allow(list(allow)) if allow else []
        cred = Credential(
            alias=alias,
            type=canonical_type(plugin, spec),
            fields=clean,
            description=description or "",
            allow=patterns,
            secret_fields=list(spec.secret_fields),
            host_fields=list(spec.host_fields),
        )
        with s.lock:
            live = s.store.kept(alias) if replace and self._exists(alias) else []
            stored, old = s.store.put(cred, replace=replace)
        info = credential_info(stored, s.registry)
        if old is None:
            self._changed("credential.add", alias=alias)
            return info
        given = [k for k, v in fields.items() if v is not None and v != ""]
        drops = replace_drops(old, stored, given, bool(description), len(live))
        self._changed("credential.replace", alias=alias, fields=sorted(drops.fields))
        return dataclasses.replace(info, dropped=drops)

    def edit(
        self,
        alias: str,
        fields: Mapping[str, Any] | None = None,
        add_allow: Sequence[str] = (),
        remove_allow: Sequence[str] = (),
        description: str | None = None,
    ) -> CredentialInfo:
        """Change some of a credential and keep everything not named: non-secret ``fields``
        (an empty value clears an optional field back to its default), allowlist patterns
        added and removed, the description. Secret fields change with :meth:`rotate`.

        Checked as :meth:`add_credential` checks (unknown names come with a suggestion); when
        a check fails nothing changes. Returns the credential, ``changed`` naming what this
        edit changed (empty, and nothing written, when it changed nothing)."""
        given = dict(fields or {})
        if not (given or add_allow or remove_allow or description is not None):
            raise CredentialValidationError(
                f"nothing to edit in {alias!r}: give fields, allowlist patterns to add or "
                "remove, or a description"
            )
        s = self._s
        changed: list[str] = []

        def change(cred: Credential) -> Credential | None:
            plugin, spec = self._type_of(cred)
            check_field_names(spec, given)
            secret = sorted(set(given) & (set(spec.secret_fields) | set(cred.secret_fields)))
            if secret:
                raise CredentialValidationError(
                    f"{', '.join(secret)} of {alias!r} {'is a' if len(secret) == 1 else 'are'} "
                    f"secret field{'s' if len(secret) > 1 else ''}: change secrets with "
                    f"`vultrino rotate {alias} --field NAME=@FILE` (rotate() in Python), which "
                    "keeps the previous value for `vultrino rollback`"
                )
            clean = plugin.validate_credential(spec.name, {**cred.fields, **given})
            allow = self._edited_allow(plugin, alias, cred.allow, add_allow, remove_allow)
            changed[:] = sorted(
                k for k in set(cred.fields) | set(clean) if cred.fields.get(k) != clean.get(k)
            )
            if allow != cred.allow:
                changed.append("allow")
            if description is not None and description != cred.description:
                changed.append("description")
            if not changed:
                return None
            cred.fields, cred.allow = clean, allow
            cred.secret_fields = sorted(set(cred.secret_fields) | set(spec.secret_fields))
            cred.host_fields = sorted(set(cred.host_fields) | set(spec.host_fields))
            if description is not None:
                cred.description = description
            return cred

        with s.lock:
            _, after = s.store.modify(alias, change)
        if changed:
            self._changed("credential.edit", alias=after.alias, fields=changed)
        return dataclasses.replace(credential_info(after, s.registry), changed=tuple(changed))

    def rotate(self, alias: str, fields: Mapping[str, Any]) -> CredentialInfo:
        """Give secret ``fields`` of ``alias`` new values and keep everything else. The values
        they replace are kept sealed in the store, for :meth:`rollback`, as long as the
        retention says (``[store] keep_versions`` / ``keep_versions_days``; the last one for
        7 days by default); cached plugin state (an OAuth access token) starts over. Only
        secret fields rotate: other changes go through :meth:`edit`."""
        given = dict(fields)
        s = self._s

        def change(cred: Credential) -> Credential:
            plugin, spec = self._type_of(cred)
            check_field_names(spec, given)
            secret = set(spec.secret_fields) | set(cred.secret_fields)
            if not given:
                raise CredentialValidationError(
                    f"nothing to rotate in {alias!r}: give new values for its secret fields "
                    f"({', '.join(sorted(secret)) or 'it has none'})"
                )
            plain = sorted(set(given) - secret)
            if plain:
                what = "is not a secret field" if len(plain) == 1 else "are not secret fields"
                raise CredentialValidationError(
                    f"{', '.join(plain)} of {alias!r} {what}; only secrets rotate: change "
                    f"it with `vultrino edit {alias} --field {plain[0]}=VALUE` (edit() in "
                    "Python)"
                )
            cred.fields = plugin.validate_credential(spec.name, {**cred.fields, **given})
            cred.secret_fields = sorted(set(cred.secret_fields) | set(spec.secret_fields))
            cred.host_fields = sorted(set(cred.host_fields) | set(spec.host_fields))
            return cred

        with s.lock:
            _, after = s.store.modify(alias, change, rotate=True)
        changed = list(after.version_changed)
        self._changed("credential.rotate", alias=after.alias, fields=changed)
        return dataclasses.replace(credential_info(after, s.registry), changed=tuple(changed))

    def rollback(self, alias: str) -> CredentialInfo:
        """Swap ``alias``'s secret fields back to the newest kept version (see :meth:`rotate`).
        The values swapped out are kept in turn, so a second rollback rolls forward again.
        CredentialValidationError when no earlier version is kept (never rotated, or past the
        retention), or when the restored values fail the type's checks; then nothing changes."""
        s = self._s

        def check(cred: Credential) -> Credential:
            plugin, spec = self._type_of(cred)
            cred.fields = plugin.validate_credential(spec.name, cred.fields)
            return cred

        with s.lock:
            before, after = s.store.rollback(alias, check)
        names = set(before.secret_fields) | set(after.secret_fields)
        changed = sorted(k for k in names if before.fields.get(k) != after.fields.get(k))
        self._changed("credential.rollback", alias=after.alias, fields=changed)
        return dataclasses.replace(credential_info(after, s.registry), changed=tuple(changed))

    def versions(self, alias: str) -> list[CredentialVersion]:
        """The versions of ``alias``'s secret fields: the current one, then each kept one,
        newest first. Numbers, times and field names only, never a value."""
        s = self._s
        with s.lock:
            cred = s.store.get(alias)
            kept = s.store.kept(alias)
        return credential_versions(cred, kept, s.store.retention)

    def _exists(self, alias: str) -> bool:
        try:
            self._s.store.get(alias)
        except CredentialNotFoundError:
            return False
        return True

    def _type_of(self, cred: Credential) -> tuple[Plugin, CredentialTypeSpec]:
        """The plugin and type declaration of a stored credential (its plugin must be
        installed to check a change)."""
        return self._s.registry.resolve_type(cred.type)

    @staticmethod
    def _edited_allow(
        plugin: Plugin,
        alias: str,
        current: list[str],
        add: Sequence[str],
        remove: Sequence[str],
    ) -> list[str]:
        allow = list(current)
        for pattern in remove:
            if pattern in allow:
                allow.remove(pattern)
                continue
            canonical = plugin.validate_allow([pattern])
            if canonical and canonical[0] in allow:
                allow.remove(canonical[0])
                continue
            held = ", ".join(current) if current else "none"
            raise CredentialValidationError(
                f"{pattern!r} is not in the allowlist of {alias!r} (it holds: {held}); "
                "nothing was changed"
            )
        if add:
            allow = plugin.validate_allow(allow + list(add))
        return allow

    def remove_credential(self, alias: str) -> CredentialInfo:
        s = self._s
        with s.lock:
            removed = credential_info(s.store.remove(alias), s.registry)
        self._changed("credential.remove", alias=removed.alias)
        return removed

    def store_info(self) -> dict[str, Any]:
        """Which backend holds the store and where (never a password), its revision and how
        many records of each kind it holds (`vultrino store info`)."""
        store = self._s.store
        return {
            "backend": store.backend,
            "location": store.location,
            "revision": store.revision,
            "credentials": len(store.credentials()),
            "profiles": len(store.agent_records()),
            "api_keys": len(store.key_records()),
            "shared_rate_limits": store.shares_rate_limits,
        }

    def migrate_store(self, to: str | Path) -> dict[str, Any]:
        """Copy the whole store into a new one at ``to`` (a new file, or a
        ``postgresql://`` URL of an empty database), sealed with the same password and KDF
        parameters, then open the copy afresh and check it record by record. The source is
        left as it was. A mismatch is a StoreCorruptError naming the record."""
        from vultrino.errors import StoreCorruptError
        from vultrino.store import create_store, open_store

        s = self._s
        source = s.store
        password = s.opened_password()
        with s.lock:
            target = create_store(to, password, source.kdf, retention=s.retention())
            try:
                copied = target.copy_from(source)
            finally:
                target.close()
            check = open_store(to, password, retention=s.retention())
            try:
                pairs: list[tuple[str, object, object]] = [
                    (f"credential {c.alias!r}", c, d)
                    for c, d in zip(source.credentials(), check.credentials(), strict=False)
                ]
                pairs += [
                    (f"kept versions of {c.alias!r}", source.kept(c.alias), check.kept(c.alias))
                    for c in source.credentials()
                ]
                pairs += [
                    (f"profile {a.get('name')!r}", a, b)
                    for a, b in zip(source.agent_records(), check.agent_records(), strict=False)
                ]
                pairs += [
                    (f"API key {a.get('id')!r}", a, b)
                    for a, b in zip(source.key_records(), check.key_records(), strict=False)
                ]
                pairs.append(
                    ("the audit signing key", source.audit_public_key(), check.audit_public_key())
                )
                pairs.append(
                    (
                        "the web admin password",
                        source.admin_password_digest(),
                        check.admin_password_digest(),
                    )
                )
                counts = [
                    ("credentials", len(source.credentials()), len(check.credentials())),
                    ("profiles", len(source.agent_records()), len(check.agent_records())),
                    ("API keys", len(source.key_records()), len(check.key_records())),
                ]
                for what, count, copy in counts:
                    if count != copy:
                        raise StoreCorruptError(
                            f"the copy at {check.location} holds {copy} {what}, the source "
                            f"{count}; it is not complete - remove it and migrate again"
                        )
                for what, want, got in pairs:
                    if want != got:
                        raise StoreCorruptError(
                            f"{what} differs in the copy at {check.location}; it is not "
                            "complete - remove it and migrate again"
                        )
                location = check.location
                backend = check.backend
            finally:
                check.close()
        self._changed("store.migrate")
        return {"from": source.location, "to": location, "backend": backend, "records": copied}

    def rekey(self, new_password: str, kdf: KdfParams | None = None) -> None:
        """Re-seal the store under a new password (and KDF parameters), atomically.

        The home's unlock session ends (its key no longer fits), and a password kept in the
        OS keyring is replaced by the new one."""
        from vultrino import unlock

        s = self._s
        with s.lock:
            s.store.rekey(new_password, kdf or s.configured_kdf())
        self._changed("store.rekey")
        unlock.lock(self.home.root)
        if s.keyring_opted_in():
            from vultrino import _keyring
            from vultrino.errors import KeyringError

            try:
                _keyring.set_password(s.keyring_account, new_password)
            except KeyringError as exc:
                raise KeyringError(
                    f"the store was re-sealed, but the OS keyring still holds the old "
                    f"password: {exc}; run `vultrino unlock --remember` with the new one"
                ) from exc

    def types(self) -> list[TypeInfo]:
        """Every credential type that can be added: built-in first, then plugin types."""
        return [TypeInfo(name, p.name, spec) for name, p, spec in self._s.registry.types()]

    def credential_type(self, type: str) -> tuple[Plugin, CredentialTypeSpec]:
        """The plugin that owns credential type ``type`` and the type's declaration
        (UnknownCredentialTypeError names the types there are)."""
        return self._s.registry.resolve_type(type)

    # --- actions: through the call pipeline --------------------------------------------------

    def execute(
        self,
        alias: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        from_cli: bool = False,
        plugin: str | None = None,
        source: str = "api",
        stream: Streaming | None = None,
    ) -> Any:
        """Run ``action`` of the plugin that owns ``alias``'s type; return its (scrubbed) result.

        ``plugin``, when given, must own the credential's type (MCP tools pass their plugin).
        An agent's calls go through :meth:`as_agent` instead. ``stream``: the call streams its
        body both ways (the forward proxy; see :meth:`vultrino.pipeline.Pipeline.call`).
        """
        return self._pipeline.call(
            alias, plugin, action, params, None, None, None, source, from_cli, stream=stream
        )

    def run_action(
        self,
        plugin: str,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        from_cli: bool = False,
        source: str = "api",
    ) -> Any:
        """Run an action that needs no credential (``requires_credential = false``)."""
        return self._pipeline.call(None, plugin, action, params, None, None, None, source, from_cli)

    def tools(self) -> list[ToolInfo]:
        """Every MCP tool: ``list_credentials`` then one per plugin ``[[mcp_tools]]`` entry."""
        return self._pipeline.tools()

    def call_tool(self, name: str, arguments: Mapping[str, Any], *, source: str = "mcp") -> Any:
        """Run an MCP tool by name with JSON arguments (validated before anything runs)."""
        return self._pipeline.call_tool(name, arguments, source=source)

    # --- plugins -----------------------------------------------------------------------------

    def plugins(self) -> list[Plugin]:
        return self._s.registry.plugins()

    def broken_plugins(self) -> dict[str, str]:
        return self._s.registry.broken()

    def plugin(self, name: str) -> Plugin:
        return self._s.registry.get(name)

    def install_plugin(
        self,
        source: str,
        *,
        subdir: str | None = None,
        force: bool = False,
        build: bool = False,
        build_output: Callable[[str], None] | None = None,
        build_sandbox: str | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        fast_build: bool = False,
        dry_run: bool = False,
        module: str | os.PathLike[str] | None = None,
    ) -> InstallResult:
        """Install a plugin (see :func:`vultrino.plugins.install.installer.install`).

        ``build=True`` allows building a source without a prebuilt module, which runs its
        build scripts; without it such a source raises ``BuildRequiredError``. The build
        runs in a sandbox as ``build_sandbox`` says (``auto``, ``require``, ``off``; default:
        config.toml's ``[build] sandbox``, else ``auto``), in the home's persistent build
        cache; ``fast_build`` uses cargo's quick profile (``plugin dev``).

        ``dry_run=True`` checks everything an install checks and installs nothing
        (``plugin check``); ``module`` names the module file to use instead of the
        manifest's (``plugin call X.wasm``).
        """
        from vultrino.plugins.install import installer, shared

        s = self._s
        if not dry_run:
            s.home.ensure()
        plugins_dir = s.home.plugins
        shelf = None if dry_run else s.plugin_shelf()  # a PostgreSQL store shares plugins
        with s.lock:
            if shelf is not None:
                s.reload_plugins_if_changed()  # conflicts: against what the replicas share
            result = installer.install(
                source,
                plugins_dir=plugins_dir,
                runtime=s.runtime,
                registry=s.registry,
                subdir=subdir,
                force=force,
                build=build,
                build_output=build_output,
                build_sandbox=build_sandbox or self.config.build_sandbox,
                progress=progress,
                build_cache=self._build_cache,
                fast_build=fast_build,
                dry_run=dry_run,
                module=Path(module) if module is not None else None,
                publish=None if shelf is None else shared.publisher(shelf, plugins_dir),
            )
            if result.dry_run:
                return result
            if result.replaced:
                s.registry.reload(result.name)
            else:
                s.registry.load_one(result.name)
            s.plugins_signature = s.scan_plugins_dir()
        self._changed("plugin.install", plugin=result.name)
        return result

    def remove_plugin(self, name: str) -> Path:
        """Remove an installed plugin; with a PostgreSQL store, from every replica (its row
        goes first, so no replica fetches it again)."""
        from vultrino.errors import PluginNotFoundError
        from vultrino.plugins.install import installer, shared

        s = self._s
        shelf = s.plugin_shelf()
        with s.lock:
            withdrawn = shelf is not None and shared.withdraw(shelf, s.home.plugins, name)
            if name in self._plugin_names():
                s.registry.unload(name)
            try:
                path = installer.remove(name, plugins_dir=s.home.plugins, runtime=s.runtime)
            except PluginNotFoundError:
                if not withdrawn:  # neither here nor shared
                    raise
                path = s.home.plugins / name  # shared, not yet fetched by this home
            s.plugins_signature = s.scan_plugins_dir()
        self._changed("plugin.remove", plugin=name)
        return path

    def set_plugin_enabled(self, name: str, enabled: bool) -> bool:
        """Enable or disable an installed plugin (``vultrino plugin enable|disable``); whether
        that changed anything. A disabled plugin stays installed and its credential types
        stay known, but its MCP tools are not listed and every call of its actions is refused
        by the pipeline (PluginDisabledError); the state is kept in its directory, so it
        outlives restarts and reaches running servers. With a PostgreSQL store a shared
        plugin's state is shared too (its files are published again), so every replica
        turns it off or on."""
        from vultrino.plugins.install import shared

        s = self._s
        shelf = s.plugin_shelf()  # a PostgreSQL store: the state is every replica's
        with s.lock:
            if shelf is not None:
                s.reload_plugins_if_changed()  # the replicas' current copy, not a stale one
            changed = s.registry.set_enabled(name, enabled)
            if changed and shelf is not None:
                try:
                    shared.republish(shelf, s.home.plugins, name)
                except BaseException:
                    s.registry.set_enabled(name, not enabled)  # not shared: not changed here
                    raise
            s.plugins_signature = s.scan_plugins_dir()
        if changed:
            self._changed("plugin.enable" if enabled else "plugin.disable", plugin=name)
        return changed

    def plugin_enabled(self, name: str) -> bool:
        """Whether plugin ``name`` is enabled (built-in plugins always are)."""
        return not self._s.registry.is_disabled(name)

    def reload_plugin(self, name: str) -> Plugin:
        """Re-read and re-validate an installed plugin (its module is instantiated now)."""
        s = self._s
        with s.lock:
            s.registry.reload(name)
            plugin = s.registry.get(name)
            ensure = getattr(plugin, "ensure_loaded", None)
            if ensure is not None:
                ensure()
            return plugin

    def plugin_logs(self, name: str, *, limit: int = 50) -> list[LogLine]:
        """The last ``limit`` lines plugin ``name`` logged (scrubbed before they were written),
        oldest first. :class:`PluginNotFoundError` for a name that is neither installed nor
        has logs left from an earlier install."""
        self._log_owner(name)
        return self._s.plugin_logs.tail(name, limit)

    def follow_plugin_logs(
        self, name: str, *, last: int = 0, stop: Callable[[], bool] = lambda: False
    ) -> Iterator[LogLine]:
        """The last ``last`` lines plugin ``name`` logged, then each line it logs from then on
        (from any process), until ``stop()`` is true."""
        self._log_owner(name)
        return self._s.plugin_logs.follow(name, last=last, stop=stop)

    def _log_owner(self, name: str) -> None:
        from vultrino.errors import PluginNotFoundError
        from vultrino.plugins.manifest import PLUGIN_NAME_RE

        if not isinstance(name, str) or not PLUGIN_NAME_RE.fullmatch(name):
            raise PluginNotFoundError(f"{str(name)[:64]!r} is not a plugin name", plugin=None)
        if name in self._plugin_names() or self._s.plugin_logs.exists(name):
            return
        self._s.registry.get(name)  # raises the registry's own not-found error

    def _plugin_names(self) -> set[str]:
        registry = self._s.registry
        return {p.name for p in registry.plugins()} | set(registry.broken())

    # --- agents ------------------------------------------------------------------------------

    def agents(self) -> list[AgentInfo]:
        """Every agent profile, sorted by name (never the token); roles are not agents."""
        return [p.info() for p in self._s.profiles() if p.kind == "agent"]

    def agent_info(self, name: str) -> AgentInfo:
        return self._s.profile(name).info()

    def agent_profile(self, name: str) -> AgentProfile:
        """The stored profile of agent ``name`` (AgentNotFoundError if there is none)."""
        return self._s.profile(name)

    def add_agent(
        self,
        name: str,
        *,
        credentials: Sequence[str] = (),
        tools: Sequence[str] = (),
        actions: Sequence[str] | None = None,
        allow: Sequence[str] = (),
        approve: Sequence[str] = (),
        rate: str | None = None,
        description: str = "",
        replace: bool = False,
    ) -> tuple[AgentInfo, str]:
        """Create (or with ``replace`` overwrite) an agent profile, sealed in the store.

        Returns the profile and its new HTTP bearer token. The token is not stored (only its
        SHA-256), so this is the only time it can be read; replacing a profile issues a new one.
        """
        token = new_token()
        profile = AgentProfile.build(
            name,
            credentials=credentials,
            tools=tools,
            actions=actions,
            allow=allow,
            approve=approve,
            rate=rate,
            description=description,
            token_hash=hash_token(token),
        )
        profile = stamped(profile, self._replacing(name, "agent", replace))
        with self._s.lock:
            self._s.store.put_agent(profile.to_record(), replace=replace)
        self._changed("agent.replace" if replace else "agent.add", subject=name)
        return profile.info(), token

    def _replacing(self, name: str, kind: str, replace: bool) -> str | None:
        """The creation time a replaced profile keeps (None for a new one); refuses the name
        of a built-in role, and a profile of the other kind (an agent is not replaced by a
        role, nor a role by an agent)."""
        if name in BUILTIN_ROLES:
            raise AgentValidationError(
                f"{name!r} is a built-in role ({', '.join(BUILTIN_ROLES)}); pick another name"
            )
        try:
            old = self._s.profile(name)
        except AgentNotFoundError:
            return None
        if old.kind != kind:
            raise AgentExistsError(
                f"{name!r} is already the name of {'an agent' if old.kind == 'agent' else 'a role'}"
                f"; pick another name (`vultrino {old.kind} list` shows them)"
            )
        return old.created_at if replace else None

    def remove_agent(self, name: str) -> AgentInfo:
        """Delete an agent profile; its token stops working on the next request."""
        if self._s.profile(name).kind != "agent":
            raise AgentNotFoundError(
                f"no agent named {name!r} ({name!r} is a role: `vultrino role delete`)"
            )
        with self._s.lock:
            removed = AgentProfile.from_record(self._s.store.remove_agent(name)).info()
        self._changed("agent.remove", subject=name)
        return removed

    def agent_for_token(self, token: str) -> str | None:
        """The name of the agent whose bearer token this is, else None (every profile is
        compared, each in constant time)."""
        found = None
        for p in self._s.profiles():
            if p.verify_token(token) and found is None:
                found = p.name
        return found

    def as_agent(
        self,
        name: str,
        *,
        approver: Approver | None = None,
        key: str | None = None,
        client: str | None = None,
    ) -> AgentScope:
        """Vultrino as agent (or role) ``name`` may use it (see :mod:`vultrino.agents`): every
        call goes through the same pipeline, decided by the profile.

        ``approver`` asks a person about calls the profile marks ``approve``; without one they
        are refused. ``key`` and ``client`` (the API key and the address of a REST call) go
        into each call's audit record."""
        from vultrino.agents import AgentScope

        return AgentScope(self._pipeline, name, approver=approver, key=key, client=client)

    # --- roles and API keys -----------------------------------------------------------------

    def roles(self) -> list[RoleInfo]:
        """The built-in roles, then the stored ones, by name (agents are listed by
        :meth:`agents`, though keys can be issued for them too)."""
        stored = [role_info(p) for p in self._s.profiles() if p.kind == "role"]
        return [role_info(p) for p in BUILTIN_ROLES.values()] + stored

    def role_info(self, name: str) -> RoleInfo:
        """A role, built in or stored, or an agent profile seen as one."""
        return role_info(self._s.profile(name))

    def add_role(
        self,
        name: str,
        *,
        permissions: Sequence[str],
        credentials: Sequence[str] = (),
        tools: Sequence[str] = (),
        actions: Sequence[str] | None = None,
        allow: Sequence[str] = (),
        approve: Sequence[str] = (),
        rate: str | None = None,
        description: str = "",
        replace: bool = False,
    ) -> RoleInfo:
        """Create (or with ``replace`` overwrite) a role, sealed in the store. A role has no
        token of its own: callers use it through API keys (:meth:`create_key`)."""
        profile = AgentProfile.build(
            name,
            credentials=credentials,
            tools=tools,
            actions=actions,
            allow=allow,
            approve=approve,
            rate=rate,
            description=description,
            kind="role",
            permissions=permissions,
        )
        profile = stamped(profile, self._replacing(name, "role", replace))
        with self._s.lock:
            self._s.store.put_agent(profile.to_record(), replace=replace)
        self._changed("role.replace" if replace else "role.add", subject=name)
        return role_info(profile)

    def remove_role(self, name: str) -> RoleInfo:
        """Delete a stored role. Built-in roles cannot be deleted, nor a role that keys still
        use (revoke them first: nothing is left pointing at nothing)."""
        if name in BUILTIN_ROLES:
            raise AgentValidationError(f"{name!r} is a built-in role; it cannot be deleted")
        profile = self._s.profile(name)
        if profile.kind != "role":
            raise AgentNotFoundError(
                f"no role named {name!r} ({name!r} is an agent: `vultrino agent remove`)"
            )
        users = sorted(k.name for k in self._s.api_keys() if k.role == name)
        if users:
            raise AgentValidationError(
                f"role {name!r} is used by {len(users)} API key(s) ({', '.join(users[:5])}); "
                "revoke them first (`vultrino key revoke NAME`)"
            )
        with self._s.lock:
            self._s.store.remove_agent(name)
        self._changed("role.remove", subject=name)
        return role_info(profile)

    def create_key(self, name: str, *, role: str, expires: str = "never") -> tuple[KeyInfo, str]:
        """Issue an API key acting as ``role`` (a role or an agent profile). ``expires`` is
        ``never``, a span (``30d``, ``12h``) or an ISO-8601 time. Returns the key's listing
        and the key itself, which is not stored (only its SHA-256): this is the only time it
        can be read."""
        self._s.profile(role)  # an unknown role fails before anything is stored
        now = datetime.now(timezone.utc)
        record, secret = ApiKey.make(name, role, parse_expiry(expires, now), now)
        with self._s.lock:
            self._s.store.put_key(record.to_record(), unique=("name", "prefix"))
        self._changed("key.create", subject=f"{name} ({record.prefix}..., role {role})")
        return record.info(), secret

    def keys(self) -> list[KeyInfo]:
        """Every API key (never the key or its digest), by creation time, with when each was
        last used (as the server last recorded it)."""
        used = key_use.read(self.home.root)
        keys = sorted(self._s.api_keys(), key=lambda k: (k.created_at, k.id))
        return [k.info(used.get(k.id)) for k in keys]

    def revoke_key(self, ref: str) -> KeyInfo:
        """Delete the API key whose id, prefix (``vk_`` and 8 characters) or name is ``ref``;
        it stops working on the server's next request."""
        ref = ref.strip().removesuffix("...")
        found = [k for k in self._s.api_keys() if ref in (k.id, k.prefix, k.name)]
        if not found:
            raise KeyNotFoundError(
                f"no API key with id, prefix or name {ref[:40]!r}; `vultrino key list` shows them"
            )
        key = found[0]
        with self._s.lock:
            self._s.store.remove_key(key.id)
        self._changed("key.revoke", subject=f"{key.name} ({key.prefix}...)")
        return key.info()

    def key_identity(self, presented: str) -> ApiKey:
        """The key a bearer secret is (InvalidApiKeyError, ExpiredApiKeyError); its role must
        still exist. Nothing is written: :meth:`note_key_use` records the use."""
        key = find_key(self._s.api_keys(), presented, datetime.now(timezone.utc))
        try:
            self._s.profile(key.role)
        except AgentNotFoundError:
            raise InvalidApiKeyError(
                f"API key {key.prefix}... acts as {key.role!r}, which no longer exists; "
                "create a key for another role"
            ) from None
        return key

    # --- the web UI's admin password ----------------------------------------------------------

    def set_admin_password(self, password: str) -> None:
        """Set the password of the web admin UI (`vultrino serve`): kept as an Argon2id hash in
        the sealed store, never in clear. PasswordRequiredError when it is shorter than
        :data:`ADMIN_PASSWORD_MIN` characters."""
        if len(password) < ADMIN_PASSWORD_MIN:
            raise PasswordRequiredError(
                f"the admin password must be at least {ADMIN_PASSWORD_MIN} characters; "
                "nothing was changed"
            )
        with self._s.lock:
            self._s.store.set_admin_password(password)
        self._changed("admin.password")

    def check_admin_password(self, password: str) -> bool:
        """Whether ``password`` is the web UI's admin password (False while none is set)."""
        return self._s.store.check_admin_password(password)

    def admin_password_set(self) -> bool:
        return self._s.store.has_admin_password()

    def note_key_use(self, key_id: str) -> None:
        """Remember that a key was used now (in memory; :meth:`flush_key_use` writes it)."""
        self._key_use.note(key_id)

    def flush_key_use(self) -> None:
        """Write the remembered last uses to the home's side file (never the store: a call
        is not a store write)."""
        self._key_use.flush(self.home.root)

    # --- importing the original Vultrino's store ---------------------------------------------

    def import_rust(self, path: Path, password: str, *, dry_run: bool = False) -> ImportReport:
        """Read the original (Rust) Vultrino's ``credentials.enc`` at ``path`` with its
        ``password`` and bring what maps into this home: credentials (built-in types to the
        HTTP plugin's, plugin credentials to ``plugin:<plugin>:<type>``), roles and API keys
        (their SHA-256 digests carry over, so keys already handed out keep working).

        Each credential is checked as :meth:`add_credential` checks it; one that fails, whose
        alias exists here, or whose plugin is not installed is skipped with the reason, and
        the rest are written in one atomic store write. Roles and keys are written after
        them. With ``dry_run`` nothing is written. WrongPasswordError, StoreCorruptError or
        StoreFormatError when the file does not open: then nothing is written either."""
        from vultrino import _rust_import as rmap
        from vultrino.errors import UnknownCredentialTypeError, VultrinoError
        from vultrino.store import Credential
        from vultrino.store.credentials import (
            is_credential_id,
            refuse_id_shaped_alias,
            validate_alias,
        )
        from vultrino.store.rust_vault import read_rust_vault

        vault = read_rust_vault(Path(path), password)
        s = self._s
        items: list[rmap.ImportItem] = []
        done = "would import" if dry_run else "imported"
        creds: list[Credential] = []
        creds_items: list[rmap.ImportItem] = []
        taken = {c.alias for c in s.store.credentials()}
        for record in sorted(vault.credentials.values(), key=lambda r: str(r.get("alias"))):
            source = rmap.original_type(record)
            name = str(record.get("alias", ""))[:128]
            mapped = rmap.map_credential(record)
            if isinstance(mapped, str):
                items.append(rmap.ImportItem("credential", name, source, "", "skipped", mapped))
                continue
            target = mapped.type
            try:
                validate_alias(mapped.alias)
                refuse_id_shaped_alias(mapped.alias)
                if mapped.alias in taken:
                    raise CredentialValidationError(
                        f"a credential named {mapped.alias!r} already exists here; remove or "
                        "rename it and import again"
                    )
                plugin, spec = s.registry.resolve_type(mapped.type)
                target = canonical_type(plugin, spec)
                clean = plugin.validate_credential(spec.name, mapped.fields)
            except VultrinoError as exc:
                reason = str(exc)
                if isinstance(exc, UnknownCredentialTypeError) and target.startswith("plugin:"):
                    reason += (
                        f"; install the plugin (`vultrino plugin install {target.split(':')[1]}`"
                        " or its source) and import again"
                    )
                items.append(rmap.ImportItem("credential", name, source, target, "skipped", reason))
                continue
            taken.add(mapped.alias)
            creds.append(
                Credential(
                    alias=mapped.alias,
                    type=target,
                    fields=clean,
                    description=mapped.description,
                    secret_fields=list(spec.secret_fields),
                    host_fields=list(spec.host_fields),
                    created_at=mapped.created_at,
                    id=mapped.id.lower() if is_credential_id(mapped.id.lower()) else "",
                )
            )
            creds_items.append(
                rmap.ImportItem("credential", name, source, target, done, note=mapped.note)
            )
        if creds and not dry_run:
            with s.lock:
                s.store.add_many(creds)
            for cred in creds:
                self._changed("credential.import", alias=cred.alias)
        items.extend(creds_items)

        role_names: dict[str, str] = {}  # the original's role id -> the name here
        for rid, record in sorted(vault.roles.items(), key=lambda kv: str(kv[1].get("name"))):
            raw = str(record.get("name", ""))
            if rmap.builtin_role(raw):
                role_names[rid] = raw
                items.append(rmap.ImportItem("role", raw, "role", raw, "built-in"))
                continue
            role = rmap.map_role(record)
            if isinstance(role, str):
                items.append(rmap.ImportItem("role", raw[:64], "role", "", "skipped", role))
                continue
            name = rmap.slug_name(role.name)
            notes = [role.note] if role.note else []
            if name != role.name:
                notes.append(f"renamed from {role.name[:64]!r}")
            try:
                if self._profile_exists(name):
                    raise AgentExistsError(
                        f"a role or agent named {name!r} already exists here; keys of this "
                        "role were not imported"
                    )
                if dry_run:
                    AgentProfile.build(
                        name,
                        credentials=role.credentials,
                        tools=("*",),
                        kind="role",
                        permissions=role.permissions,
                    )
                else:
                    self.add_role(
                        name,
                        permissions=role.permissions,
                        credentials=role.credentials,
                        tools=("*",),
                        description=role.description,
                    )
            except VultrinoError as exc:
                items.append(rmap.ImportItem("role", raw[:64], "role", name, "skipped", str(exc)))
                continue
            role_names[rid] = name
            items.append(
                rmap.ImportItem("role", raw[:64], "role", name, done, note="; ".join(notes))
            )
        for rid in ("admin", "executor", "read-only"):  # predefined: their ids are their names
            role_names.setdefault(rid, rid)

        known = {(k.name, k.prefix) for k in s.api_keys()}
        now = datetime.now(timezone.utc)
        for record in sorted(vault.api_keys.values(), key=lambda r: str(r.get("name"))):
            raw = str(record.get("name", ""))[:64]
            key = rmap.map_key(record)
            if isinstance(key, str):
                items.append(rmap.ImportItem("key", raw, "api_key", "", "skipped", key))
                continue
            key_role = role_names.get(key.role_id)
            if key_role is None:
                items.append(
                    rmap.ImportItem(
                        "key",
                        raw,
                        key.prefix,
                        "",
                        "skipped",
                        "its role was not imported (see the roles above)",
                    )
                )
                continue
            name = rmap.slug_name(key.name)
            record_here = ApiKey(
                id=os.urandom(6).hex(),
                name=name,
                prefix=key.prefix,
                digest=key.digest,
                role=key_role,
                expires_at=key.expires_at,
                created_at=key.created_at or now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            note = f"renamed from {key.name[:64]!r}" if name != key.name else ""
            if record_here.expired(now):
                items.append(
                    rmap.ImportItem("key", raw, key.prefix, key_role, "skipped", "it has expired")
                )
                continue
            if any(name == n or key.prefix == p for n, p in known):
                items.append(
                    rmap.ImportItem(
                        "key",
                        raw,
                        key.prefix,
                        key_role,
                        "skipped",
                        f"an API key named {name!r} or with prefix {key.prefix} exists here",
                    )
                )
                continue
            if not dry_run:
                with s.lock:
                    s.store.put_key(record_here.to_record(), unique=("name", "prefix"))
                self._changed("key.import", subject=f"{name} ({key.prefix}..., role {key_role})")
            known.add((name, key.prefix))
            items.append(rmap.ImportItem("key", raw, key.prefix, key_role, done, note=note))
        return rmap.ImportReport(str(path), dry_run, tuple(items))

    def _profile_exists(self, name: str) -> bool:
        try:
            self._s.profile(name)
        except AgentNotFoundError:
            return False
        return True

    # --- audit and refresh -------------------------------------------------------------------

    def record_approval(
        self, request: ApprovalRequest, approval_id: str, outcome: str, decided_by: str
    ) -> None:
        """The audit record of a person's decision on a waiting call (``approval.granted`` or
        ``approval.declined``), naming who decided; the call's own record follows it."""
        record: dict[str, Any] = {
            "alias": request.alias,
            "plugin": request.plugin,
            "action": f"approval.{outcome}",
            "agent": request.agent or None,
            "subject": approval_id,
            "decided_by": decided_by,
            "outcome": "ok",
            "duration_ms": 0.0,
            "source": "admin",
        }
        self._s.audit.write(record)

    def sign_approval(self, message: bytes) -> bytes:
        """Sign a person's decision on a call held in the shared approvals table with the
        store's Ed25519 key (the audit head's key, under its own prefix), so the replica
        where the call waits can tell a decision a replica made from a row anyone wrote."""
        return self._s.store.sign_audit_head(_APPROVAL_PREFIX + message)[0]

    def approval_signed(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is the store key's signature of the decision ``message``."""
        from vultrino.store import verify_signature

        key = self._s.store.audit_public_key()
        return key is not None and verify_signature(key, _APPROVAL_PREFIX + message, signature)

    def _changed(
        self,
        what: str,
        *,
        alias: str | None = None,
        plugin: str | None = None,
        subject: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> None:
        """The audit record of a change to the home (never a value): ``action`` says which
        (``credential.add``, ``credential.rotate``, ``agent.remove``, ``plugin.install``,
        ``store.rekey``, ...), ``subject`` names the agent profile changed, ``fields`` the
        names of what a credential change changed (or a replace dropped), ``source`` is
        ``admin``."""
        record: dict[str, Any] = {"alias": alias, "plugin": plugin, "action": what, "agent": None}
        if subject is not None:
            record["subject"] = subject
        if fields is not None:
            record["fields"] = list(fields)
        record.update(outcome="ok", duration_ms=0.0, source="admin")
        self._s.audit.write(record)

    def audit(
        self,
        *,
        agent: str | None = None,
        alias: str | None = None,
        outcome: str | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Audit records, oldest first, filtered (see :func:`vultrino.audit.query`): the
        home's log file, or the audit table when the store is in PostgreSQL."""
        log = self._s.audit
        if not isinstance(log, audit.AuditLog):
            match = audit.Filter(agent=agent, alias=alias, outcome=outcome, since=since)
            return log.query_from(match, limit)[0]
        return audit.query(
            self.home.audit_log,
            agent=agent,
            alias=alias,
            outcome=outcome,
            since=since,
            limit=limit,
        )

    def audit_page(
        self,
        *,
        agent: str | None = None,
        alias: str | None = None,
        outcome: str | None = None,
        since: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of audit records, newest first: the ``limit`` matches after the
        ``offset`` newest, and whether older ones remain (see :func:`vultrino.audit.tail`:
        the log is read from its end, only as far back as the page)."""
        match = audit.Filter(agent=agent, alias=alias, outcome=outcome, since=since)
        log = self._s.audit
        if not isinstance(log, audit.AuditLog):
            return log.tail(match, limit, skip=offset)
        return audit.tail(self.home.audit_log, match, limit, skip=offset)

    def audit_verify(self, *, strict: bool = False, check_key: bool = False) -> Verdict:
        """Check the audit log's hash chain and its signed head (see :func:`vultrino.audit.verify`).

        Needs no password, unless ``check_key``: then the store is unlocked and the head must
        be signed by the store's own key (not just by the key it names). ``strict`` also
        refuses records past the signed head. The PostgreSQL audit table's chain is checked
        the same way, and every row's signature (:func:`vultrino.audit.verify_rows`; with
        ``check_key``, by the store's own key); it has no signed head, so ``strict`` is
        refused there."""
        from vultrino.store import verify_signature

        log = self._s.audit
        if not isinstance(log, audit.AuditLog):
            if strict:
                raise ConfigError(
                    "the audit log is the PostgreSQL table, which has no signed head "
                    "(--strict); every row is signed instead: run `vultrino audit verify` "
                    "without --strict"
                )
            rows = log.signed_lines()
            table_key = (self._s.store.audit_public_key() or b"") if check_key else None
            return audit.verify_rows(rows, verify_signature, key=table_key)
        key = None
        if check_key:
            key = self._s.store.audit_public_key() or b""
        return audit.verify(self.home.audit_log, verify_signature, key=key, strict=strict)

    def refresh(self) -> bool:
        """Pick up plugins and credentials changed by other processes.

        Returns True when the tool list changed (an MCP server then notifies its client).
        """
        return self._pipeline.refresh()
