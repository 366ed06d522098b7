"""An installed WebAssembly plugin: its manifest, its directory, and — once called — its module.

The module is read and compiled lazily, on the first ``execute`` (or an explicit
``ensure_loaded()``), so listing plugins never pays for a compile and nothing imports an engine
until a plugin actually runs. The runtime is injected, as an object or a zero-argument factory,
which keeps this module free of engine imports and lets the registry share one runtime.

What the guest sees is DESIGN.md 5.1's request map; what it answers is mapped onto the error
tree here: ``{"ok": v}`` is the result, ``{"error": {...}}`` an :class:`ActionFailedError`
(``unknown_action`` an :class:`ActionNotFoundError`), anything else a :class:`PluginABIError`.

**Scrubbing across credentials.** Guest instances are pooled and keep their memory between
calls, so a plugin handed credential A in one call could answer a later call made with
credential B with A's secret. So results, error messages and log lines are scrubbed of the
secrets of *every* credential this plugin has been handed since its module was loaded (a
superset of what any one instance has seen), not only of the call's own. Closing the module
(``close``, ``reload``) drops every instance, and with them the set.

**Log lines** are also scrubbed of the forms a secret takes on its way to the log: its control
characters escaped (``\x0a`` for a newline, as the runtime writes them) and, for a secret that
spans several lines, each of its lines (a guest's stdout is split into lines before it is
logged).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, MutableSequence
from pathlib import Path
from typing import Any, NoReturn, Protocol, runtime_checkable

from vultrino._allowlist import validate_patterns
from vultrino._scrub import (
    MIN_SECRET_LEN,
    Scrubber,
    scrub,
    scrub_error,
    scrubber,
    secret_forms,
)
from vultrino.errors import (
    ActionFailedError,
    ActionNotFoundError,
    CredentialMismatchError,
    CredentialValidationError,
    EngineError,
    ModuleError,
    PluginError,
)
from vultrino.plugins.base import (
    ActionResult,
    CredentialView,
    Plugin,
    PluginManifest,
    PreparedAction,
)
from vultrino.runtime import KeyRing
from vultrino.runtime._logtext import escape_control

__all__ = ["ModuleLike", "RuntimeLike", "RuntimeSource", "WasmPlugin", "scrub"]


@runtime_checkable
class ModuleLike(Protocol):
    """What this module needs of ``vultrino.runtime.PluginModule``."""

    def execute(
        self,
        request: dict[str, Any],
        keys: KeyRing | None = None,
        *,
        capture: MutableSequence[tuple[str, str]] | None = None,
    ) -> dict[str, Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class RuntimeLike(Protocol):
    """What this module needs of ``vultrino.runtime.WasmRuntime``."""

    def load(
        self, wasm: bytes, *, plugin: str, log: Any = None, log_enabled: Any = None
    ) -> Any: ...


#: A runtime, or a zero-argument callable returning one (called at each module load; pass a
#: memoizing one to share a runtime).
RuntimeSource = RuntimeLike | Callable[[], RuntimeLike]


def resolve_runtime(source: RuntimeSource) -> RuntimeLike:
    """The runtime itself, calling ``source`` first when it is a factory."""
    if isinstance(source, RuntimeLike):
        return source
    return source()


# The logging module's levels (DEBUG, INFO, WARNING, ERROR); logging itself is imported when
# a guest first logs, so listing plugins does not pay for it.
_LOG_LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40}
_NO_FORMS = Scrubber(())
#: A failed call's ``detail`` keeps at most this many of the call's last log lines ...
DETAIL_LOG_LINES = 100
#: ... and of the innermost frames of the traceback the guest reported.
DETAIL_FRAMES = 64
_DETAIL_TEXT = 4096  # one text of a guest's detail is cut to this many characters


class WasmPlugin:
    """A plugin installed as ``<plugins>/<name>/`` with a ``plugin.toml`` and a wasm module.

    Implements the :class:`~vultrino.plugins.base.Plugin` protocol. Thread-safe: loading is
    serialized; concurrent calls go to the runtime's module, which pools guest instances.
    """

    builtin: bool = False

    def __init__(
        self,
        directory: Path,
        manifest: PluginManifest,
        runtime: RuntimeSource,
        *,
        log: Any = None,
        expected_sha256: str | None = None,
        http: Plugin | None = None,
    ) -> None:
        if manifest.plugin.wasm_module is None:
            raise PluginError(
                f"plugin {manifest.name} has no wasm_module in its manifest",
                plugin=manifest.name,
            )
        self.directory = Path(directory)
        self.manifest = manifest
        #: The built-in HTTP plugin, which sends this plugin's ``http.send`` requests (only
        #: for a manifest that declares ``[http]``).
        self._http = http if manifest.http is not None else None
        self._call_s: float | None = None  # the runtime's per-call deadline, once loaded
        self._runtime = runtime
        self._log = log
        self._expected_sha256 = expected_sha256
        self._logger: Any = None  # the plugin's logging.Logger, made on its first log line
        self._module: ModuleLike | None = None
        self._lock = threading.RLock()
        self._secret_names: dict[str, frozenset[str]] = {}  # per type; the manifest is fixed
        # Every secret handed to the loaded module, and the scrubbers derived from them. The
        # set only grows while this object lives.
        self._seen: set[str] = set()
        self._forms: Scrubber = scrubber(())  # error messages
        self._log_forms: Scrubber = scrubber(())  # log lines

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return f"<WasmPlugin {self.name} {self.manifest.plugin.version} ({state})>"

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def module_path(self) -> Path:
        """The wasm file named by ``[plugin].wasm_module``."""
        return self.directory / str(self.manifest.plugin.wasm_module)

    @property
    def loaded(self) -> bool:
        """Whether the module has been compiled and instantiated."""
        return self._module is not None

    @property
    def module(self) -> ModuleLike | None:
        """The loaded ``PluginModule`` (its ``abi``, ``sha256``), or None before the first call."""
        return self._module

    def ensure_loaded(self) -> ModuleLike:
        """Load the module now (idempotent) and return it.

        The installer and ``reload`` call this to validate a plugin before they accept it.
        Raises :class:`ModuleError` when the file cannot be read or no longer has the sha256
        recorded at install time, and whatever the runtime
        raises (``ModuleError`` for bad wasm, imports or exports).
        """
        with self._lock:
            if self._module is None:
                try:
                    wasm = self.module_path.read_bytes()
                except OSError as exc:
                    raise ModuleError(
                        f"plugin {self.name}: cannot read its module "
                        f"{self.manifest.plugin.wasm_module}: {exc.strerror or exc}; "
                        f"reinstall the plugin",
                        plugin=self.name,
                    ) from exc
                if self._expected_sha256 is not None:
                    import hashlib

                    actual = hashlib.sha256(wasm).hexdigest()
                    if actual != self._expected_sha256:
                        raise ModuleError(
                            f"plugin {self.name}: its module "
                            f"{self.manifest.plugin.wasm_module} changed after it was installed "
                            f"(sha256 {actual[:12]}…, {self._expected_sha256[:12]}… when "
                            "installed); reinstall the plugin",
                            plugin=self.name,
                        )
                runtime = resolve_runtime(self._runtime)
                # the call's deadline, which http.send requests are cut to (a fake runtime in a
                # test may have no limits)
                limits = getattr(runtime, "limits", None)
                call_s = getattr(limits, "deadline_s", None)
                self._call_s = float(call_s) if isinstance(call_s, (int, float)) else None
                module: ModuleLike = runtime.load(
                    wasm, plugin=self.name, log=self._plugin_log, log_enabled=self._log_enabled()
                )
                self._module = module
            return self._module

    def validate_credential(self, type_name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """``fields`` checked against the manifest's field specs for ``type_name`` (required,
        kinds, options, lengths, patterns); the fields to store, defaults filled in."""
        from vultrino.plugins.validation import validate_fields

        spec = self.manifest.credential_type(type_name)
        if spec is None:
            known = ", ".join(t.name for t in self.manifest.credential_types) or "none"
            raise CredentialValidationError(
                f"plugin {self.name} has no credential type {type_name!r} (types: {known})"
            )
        return validate_fields(spec, fields)

    def validate_allow(self, patterns: list[str]) -> list[str]:
        """Stored as given for a plugin that makes no network requests; for one that declares
        ``[http]`` (its requests go through the host), checked and canonical as the built-in
        HTTP plugin's."""
        if self.manifest.http is None:
            return list(patterns)
        return validate_patterns(patterns)

    def execute(
        self, action: str, params: Mapping[str, Any], credential: CredentialView | None
    ) -> ActionResult:
        """Run ``action`` in the guest. ``params`` are already validated against the manifest."""
        return self.prepare(action, credential)(dict(params))

    def prepare(self, action: str, credential: CredentialView | None) -> PreparedAction:
        """``action`` bound to ``credential``, to run with each call's validated parameters.

        The credential is passed only when the action declares a credential type, and only if
        it is of that type: a plugin never sees a credential that is not its own. Its secrets
        (the manifest's secret fields and the view's) join those the module has seen before
        the first call, since a guest may log one at once.
        """
        spec = self.manifest.require_action(action)
        payload: dict[str, Any] | None = None
        ring: KeyRing | None = None
        secrets: list[str] = []
        if spec.credential_type is not None:
            if credential is None:
                raise CredentialMismatchError(
                    f"action {action} of plugin {self.name} needs a credential of type "
                    f"plugin:{self.name}:{spec.credential_type}",
                    plugin=self.name,
                )
            if credential.type != spec.credential_type:
                raise CredentialMismatchError(
                    f"credential {credential.alias!r} is of type {credential.type!r}; action "
                    f"{action} of plugin {self.name} acts on {spec.credential_type!r}",
                    plugin=self.name,
                )
            payload, ring, secrets = self._payload(credential)
            self._remember(secrets)
        # The scrubber of the other secrets this module has seen, with the size of that set
        # when it was made: redone when the set has grown.
        others: list[tuple[int, Scrubber]] = [(-1, _NO_FORMS)]
        http_spec, sender = self.manifest.http, self._http

        def run(params: dict[str, Any]) -> ActionResult:
            seen, forms = others[0]
            if seen != len(self._seen):
                seen = len(self._seen)  # before reading the set: a race only redoes it
                rest = self._seen.difference(secrets)
                forms = scrubber(sorted(rest)) if rest else _NO_FORMS
                others[0] = (seen, forms)
            # The module pools guest instances and is safe to call from several threads, so
            # only loading is serialized (and a closed plugin loads its module again).
            module = self._module
            if module is None:
                module = self.ensure_loaded()
            capture: deque[tuple[str, str]] = deque(maxlen=DETAIL_LOG_LINES)
            try:
                request = {"action": action, "params": params, "credential": payload}
                host_http = None
                call_ring = ring
                if ring is not None and http_spec is not None and sender is not None:
                    assert credential is not None
                    call_s = self._call_s
                    # MessagePack loads with the first plugin that sends requests, not with
                    # every `vultrino plugin list`
                    from vultrino.plugins._host_http import HostHttp

                    host_http = HostHttp(
                        self.name,
                        http_spec,
                        sender,
                        credential,
                        deadline=None if call_s is None else time.monotonic() + call_s,
                        call_s=call_s or 5.0,
                    )
                    call_ring = ring.with_http(host_http)  # this call's own requests
                response = module.execute(request, call_ring, capture=capture)
            except EngineError as exc:  # its message may quote what the guest wrote
                exc.detail = self._detail(capture, None)
                if not self._forms:
                    raise
                raise scrub_error(exc, self._forms) from None
            # The call's own secrets are scrubbed from the result by the caller (the facade),
            # as for every plugin; the other credentials' secrets this module has seen, here.
            if type(response) is dict and len(response) == 1 and "ok" in response:
                value = forms.in_place(response["ok"])  # freshly decoded
                state = host_http.new_state if host_http is not None else None
                return ActionResult(value, new_state=state)
            self._fail(action, response, self._forms, capture)

        return run

    def _payload(self, credential: CredentialView) -> tuple[dict[str, Any], KeyRing, list[str]]:
        """The credential as the guest gets it, what its ``keys`` calls may use, and its
        secret values.

        A field declared ``access = "host"`` is in the request as nil: the guest learns that
        it exists, never its value. The key ring holds the declared fields (only those), which
        the host's ``keys`` interface resolves names against for this call.
        """
        ctype = self.manifest.credential_type(credential.type)
        secret_names = self._secret_names.get(credential.type)
        if secret_names is None:
            secret_names = frozenset(ctype.secret_fields if ctype is not None else ())
            self._secret_names[credential.type] = secret_names
        fields = credential.fields
        names = secret_names.union(credential.secret_fields)
        secrets = [v for k in sorted(names) if isinstance(v := fields.get(k), str)]
        guest = dict(fields)
        declared: dict[str, str] = {}
        # host-only for the guest: what the manifest says now, and what the credential was
        # stored with (a plugin re-installed without `access = "host"` gets neither)
        for name in credential.host_fields:
            if name in guest:
                guest[name] = None
        passphrases: dict[str, str] = {}
        if ctype is not None:
            for f in ctype.fields:
                value = fields.get(f.name)
                if isinstance(value, str):
                    declared[f.name] = value
                if f.access == "host" and f.name in guest:
                    guest[f.name] = None
                if f.passphrase_field is not None:
                    passphrases[f.name] = f.passphrase_field
        payload = {"alias": credential.alias, "type": credential.type, "fields": guest}
        return payload, KeyRing(declared, passphrases), secrets

    def _remember(self, secrets: list[str]) -> None:
        """Add this call's secrets to those the module has seen (see the module docstring)."""
        if not secrets or self._seen.issuperset(secrets):
            return
        with self._lock:
            self._seen.update(secrets)
            seen = sorted(self._seen)
            self._forms = scrubber(seen)
            self._log_forms = Scrubber(secret_forms(_log_values(seen)))

    def _plugin_log(self, level: str, text: str) -> None:
        """The guest's log lines (and WASI stdout/stderr), scrubbed of every secret the module
        has been handed, in the forms they take in a log line."""
        forms = self._log_forms
        if forms:
            text = forms.text(text)
        if self._log is not None:
            self._log(level, text)
        else:
            if self._logger is None:
                import logging

                self._logger = logging.getLogger(f"vultrino.plugin.{self.manifest.name}")
            self._logger.log(_LOG_LEVELS.get(level, 20), "%s", text)

    def _log_enabled(self) -> Callable[[str], bool] | None:
        """Whether :meth:`_plugin_log` would write a line of a level anywhere (None: always,
        to a ``log`` callable); to the plugin's logger, when it is enabled for the level (a line
        it would drop is then neither decoded nor scrubbed). Asked per line: the logger's level
        may change at any time."""
        if self._log is not None:
            return None
        logger = self._logger
        if logger is None:
            import logging

            logger = self._logger = logging.getLogger(f"vultrino.plugin.{self.manifest.name}")
        enabled_for = logger.isEnabledFor
        numbers = _LOG_LEVELS

        def enabled(level: str) -> bool:
            return bool(enabled_for(numbers.get(level, 20)))

        return enabled

    def describe(self, action: str, params: Mapping[str, Any]) -> str | None:
        """None: an approval prompt shows the parameters as they are."""
        return None

    def _fail(
        self, action: str, response: Any, forms: Scrubber, capture: deque[tuple[str, str]]
    ) -> NoReturn:
        """Raise the plugin's error. The runtime hands over only ``{"ok": ...}`` or a
        well-formed ``{"error": {"code", "message"[, "detail"]}}`` (it checks the shape once, in
        :func:`vultrino.runtime.abi.check_response`), so this only reads it."""
        error = response["error"]
        code: str = error["code"]
        message = forms.text(error["message"])
        if code == "unknown_action":
            raise ActionNotFoundError(
                f"plugin {self.name} does not handle action {action}: {message}",
                plugin=self.name,
            )
        exc = ActionFailedError(
            f"plugin {self.name}, action {action} failed ({code}): {message}",
            plugin=self.name,
            code=code,
        )
        exc.detail = self._detail(capture, error.get("detail"))
        raise exc

    def _detail(
        self, capture: deque[tuple[str, str]], reported: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """A failed call's ``detail`` (errors.py): its log lines, and the parts of what the
        guest ``reported`` that Vultrino knows (its exception and traceback), every text cut,
        made safe to print and scrubbed of every secret this module has been handed."""
        forms = self._log_forms
        out: dict[str, Any] = {}
        if capture:
            out["log"] = [{"level": lv, "message": forms.text(t)} for lv, t in capture]
        if reported:
            out.update(_reported(reported, forms))
        return out or None

    def close(self) -> None:
        """Release the module (idempotent); the next call loads it again."""
        with self._lock:
            module, self._module = self._module, None
        if module is not None:
            module.close()
        # Instances still busy keep what they saw until their call ends: keep scrubbing it.
        # The set is dropped only when no instance can remain (a new WasmPlugin on reload).


def _log_values(secrets: list[str]) -> list[str]:
    """Each secret, plus the forms it takes in a log line: control characters escaped, and,
    when it spans lines, each line long enough to scrub (alone and escaped)."""
    out: list[str] = []
    for secret in secrets:
        out.append(secret)
        out.append(escape_control(secret))
        lines = secret.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if len(lines) > 1:
            for line in lines:
                if len(line.strip()) >= MIN_SECRET_LEN:
                    out.append(line)
                    out.append(escape_control(line))
    return list(dict.fromkeys(out))


def _text(value: Any, forms: Scrubber) -> str | None:
    """A guest's text, cut, its control characters escaped and its secrets scrubbed."""
    if type(value) is not str:
        return None
    if len(value) > _DETAIL_TEXT:
        value = value[:_DETAIL_TEXT] + " [...]"
    return forms.text(escape_control(value))


def _reported(reported: dict[str, Any], forms: Scrubber) -> dict[str, Any]:
    """What Vultrino keeps of a guest's ``detail``: ``exception`` and ``message`` (text) and
    ``traceback``, the innermost :data:`DETAIL_FRAMES` frames, each ``module``, ``file``,
    ``function`` (text) and ``line`` (an integer). Anything else is dropped."""
    out: dict[str, Any] = {}
    for key in ("exception", "message"):
        text = _text(reported.get(key), forms)
        if text is not None:
            out[key] = text
    frames = reported.get("traceback")
    if type(frames) is list:
        kept: list[dict[str, Any]] = []
        for frame in frames[-DETAIL_FRAMES:]:
            if type(frame) is not dict:
                continue
            line = frame.get("line")
            kept.append(
                {
                    "module": _text(frame.get("module"), forms) or "?",
                    "file": _text(frame.get("file"), forms) or "?",
                    "line": line if type(line) is int else None,
                    "function": _text(frame.get("function"), forms) or "?",
                }
            )
        out["traceback"] = kept
    return out
