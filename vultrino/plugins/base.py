"""What every plugin is, built-in or WebAssembly: the specs a manifest declares and the
:class:`Plugin` protocol the registry holds.

Built-in plugins (the HTTP plugin) describe themselves with the same spec classes a
``plugin.toml`` is parsed into, so both go through the same door.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from vultrino.errors import ActionNotFoundError

if TYPE_CHECKING:
    from vultrino._scrub import Scrubber

FieldKind = Literal[
    "text", "password", "textarea", "select", "checkbox", "number", "file", "hidden"
]
FieldAccess = Literal["guest", "host"]
ParamKind = Literal["string", "integer", "number", "boolean", "object", "array"]

FIELD_KINDS: tuple[str, ...] = (
    "text", "password", "textarea", "select", "checkbox", "number", "file", "hidden"
)  # fmt: skip
PARAM_KINDS: tuple[str, ...] = ("string", "integer", "number", "boolean", "object", "array")

PLUGIN_TYPE_PREFIX = "plugin:"


@dataclass(frozen=True)
class FieldSpec:
    """One field of a credential type (``[[credential_types.fields]]``)."""

    name: str
    label: str = ""
    type: FieldKind = "text"
    required: bool = False
    secret: bool = False
    help_text: str = ""
    placeholder: str = ""
    default: Any = None
    options: tuple[str, ...] = ()
    min_length: int | None = None
    max_length: int | None = None
    validation_pattern: str | None = None
    #: ``"host"``: the value never enters the guest (its request carries the field as nil);
    #: only the host's ``keys`` interface uses it. ``"guest"``: sent as usual.
    access: FieldAccess = "guest"
    #: The name of the host-only field holding this key's passphrase (the ``openpgp`` key
    #: format of the ``keys`` interface unlocks the key with it); None when there is none.
    passphrase_field: str | None = None


@dataclass(frozen=True)
class CredentialTypeSpec:
    """A credential type (``[[credential_types]]``). ``name`` is the short name."""

    name: str
    display_name: str = ""
    description: str = ""
    fields: tuple[FieldSpec, ...] = ()

    def field(self, name: str) -> FieldSpec | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @cached_property  # specs are frozen: computed once (execute reads it on every call)
    def secret_fields(self) -> tuple[str, ...]:
        return tuple(
            f.name for f in self.fields if f.secret or f.type == "password" or f.access == "host"
        )

    @cached_property
    def hidden_fields(self) -> tuple[str, ...]:
        """Fields of kind ``hidden``: never asked for nor shown, set by ``--field`` only."""
        return tuple(f.name for f in self.fields if f.type == "hidden")

    @cached_property
    def host_fields(self) -> tuple[str, ...]:
        """The fields declared ``access = "host"``: the plugin never sees their values."""
        return tuple(f.name for f in self.fields if f.access == "host")


@dataclass(frozen=True)
class ParameterSpec:
    """One action parameter (``[[actions.parameters]]``)."""

    name: str
    type: ParamKind = "string"
    required: bool = False
    description: str = ""
    default: Any = None
    enum_values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ActionSpec:
    """An action (``[[actions]]``). ``credential_type`` is the short type name, or None when the
    action needs no credential (see ``accepted_types``)."""

    name: str
    description: str = ""
    credential_type: str | None = None
    parameters: tuple[ParameterSpec, ...] = ()
    # Built-in plugins may act on several of their types (the HTTP plugin's `request` takes
    # api_key, bearer, basic_auth and oauth2); manifests name one type per action.
    credential_types: tuple[str, ...] = ()
    # Parameters whose value every audit record of a call holds (the HTTP plugin's method and
    # URL): never a credential's field, and scrubbed of its secrets like anything recorded.
    audited: tuple[str, ...] = ()
    # Whether the action can take its body as a stream and hand its answer back as one
    # (:class:`Streaming`): the built-in HTTP plugin's `request`, for the forward proxy.
    # Manifests cannot declare it.
    streams: bool = False

    @cached_property  # specs are frozen: computed once (execute reads it on every call)
    def accepted_types(self) -> tuple[str, ...]:
        """The short type names this action runs with; empty when it needs no credential."""
        single = (self.credential_type,) if self.credential_type is not None else ()
        return single + tuple(t for t in self.credential_types if t != self.credential_type)

    @property
    def needs_credential(self) -> bool:
        return bool(self.accepted_types)

    def accepts(self, type_name: str) -> bool:
        """Whether a credential of short type ``type_name`` may be used with this action."""
        return type_name in self.accepted_types

    @cached_property
    def plain_strings(self) -> tuple[frozenset[str], frozenset[str]] | None:
        """For parameter validation's fast path: the names of the string parameters without
        choices, and those of them that must be given (required, or filled by a default); None
        when the action has a parameter of another kind or with choices."""
        if any(p.type != "string" or p.enum_values for p in self.parameters):
            return None
        return (
            frozenset(p.name for p in self.parameters),
            frozenset(p.name for p in self.parameters if p.required or p.default is not None),
        )

    def parameter(self, name: str) -> ParameterSpec | None:
        for p in self.parameters:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True)
class ToolSpec:
    """An MCP tool (``[[mcp_tools]]``) bound to one of the plugin's actions.

    The four behaviour hints become the tool's MCP annotations (``readOnlyHint``,
    ``destructiveHint``, ``idempotentHint``, ``openWorldHint``); None means not declared, and
    the hint is left out so clients apply the protocol's defaults.
    """

    name: str
    action: str
    description: str = ""
    read_only: bool | None = None
    destructive: bool | None = None
    idempotent: bool | None = None
    open_world: bool | None = None
    #: ``input_schema`` as compact JSON text (checked against the action's parameters at
    #: parse time); None: the schema is generated from the parameters
    input_schema: str | None = None
    #: ``parameter_mappings``: (tool argument, action parameter) pairs, a rename each
    parameter_mappings: tuple[tuple[str, str], ...] = ()

    def annotations(self) -> dict[str, bool]:
        """The declared hints under their MCP names."""
        hints = {
            "readOnlyHint": self.read_only,
            "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent,
            "openWorldHint": self.open_world,
        }
        return {k: v for k, v in hints.items() if v is not None}


#: The authentication schemes the host adds to a plugin's ``http.send`` request (world 1.3.0),
#: each with the credential fields it needs: the built-in HTTP plugin's credential types of the
#: same names, which read those fields (and their optional ones) by the same names.
HTTP_AUTH_SCHEMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "api_key": ("key",),
        "bearer": ("token",),
        "basic_auth": ("username", "password"),
        "oauth2": ("token_url", "client_id"),
        "hmac_api_key": ("api_key", "api_secret"),
    }
)


@dataclass(frozen=True)
class HttpSpec:
    """The ``[http]`` table: the hosts a plugin may send requests to through the host
    (``http.send``) and the auth schemes it may ask the host to add."""

    hosts: tuple[str, ...]
    auth: tuple[str, ...]

    def admits(self, host: str) -> bool:
        """Whether ``host`` (as a URL names it, lowercase) is one of :attr:`hosts`."""
        return host.lower() in self.hosts


@dataclass(frozen=True)
class PluginInfo:
    """The ``[plugin]`` table."""

    name: str
    version: str
    description: str = ""
    author: str = ""
    license: str = ""
    homepage: str = ""
    repository: str = ""
    format: str = "wasm"
    wasm_module: str | None = None
    min_vultrino_version: str | None = None


@dataclass(frozen=True)
class PluginManifest:
    """A parsed and validated ``plugin.toml`` (or a built-in plugin's self-description)."""

    plugin: PluginInfo
    credential_types: tuple[CredentialTypeSpec, ...] = ()
    actions: tuple[ActionSpec, ...] = ()
    mcp_tools: tuple[ToolSpec, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)
    #: ``[http]``: None when the plugin sends no requests through the host
    http: HttpSpec | None = None

    @property
    def name(self) -> str:
        return self.plugin.name

    def credential_type(self, name: str) -> CredentialTypeSpec | None:
        for t in self.credential_types:
            if t.name == name:
                return t
        return None

    def action(self, name: str) -> ActionSpec | None:
        for a in self.actions:
            if a.name == name:
                return a
        return None

    def require_action(self, name: str) -> ActionSpec:
        """The action ``name``; ActionNotFoundError naming the actions there are."""
        act = self.action(name)
        if act is None:
            known = ", ".join(a.name for a in self.actions) or "none"
            raise ActionNotFoundError(
                f"plugin {self.name!r} has no action {name!r} (actions: {known})",
                plugin=self.name,
            )
        return act


def qualified_type(plugin: str, type_name: str) -> str:
    """``plugin:<plugin>:<type>``, the credential type as users write it."""
    return f"{PLUGIN_TYPE_PREFIX}{plugin}:{type_name}"


@dataclass(frozen=True)
class CredentialView:
    """What a plugin receives for one call: the alias, the short type name, and field values.

    ``state`` is plugin-managed secret state kept in the store (e.g. a cached oauth2 token);
    a plugin that changes it returns the new state through :class:`ActionResult`.
    ``narrow`` holds URL patterns that narrow ``allow`` for this call (a request must match
    both; empty = no narrowing), and ``narrowed_by`` says whose patterns they are, for error
    messages (the call pipeline fills both from the policy decision). ``secret_fields`` names
    the fields whose values are secret (the stored credential's and its type's);
    ``host_fields`` those the credential was stored with as host-only (``access = "host"``),
    which stay out of the guest whatever the plugin's manifest says now.

    The facade hands the same read-only view to every call of a credential while it is
    unchanged: a plugin reads it and never changes it.
    """

    alias: str
    type: str
    fields: Mapping[str, Any]
    allow: tuple[str, ...] = ()
    state: Mapping[str, Any] = field(default_factory=dict)
    narrow: tuple[str, ...] = ()
    narrowed_by: str = ""
    secret_fields: tuple[str, ...] = ()
    host_fields: tuple[str, ...] = ()


@dataclass(slots=True)
class ActionResult:
    """A plugin's answer. ``new_state`` (when not None) is persisted for the credential.

    ``value`` is the caller's own (built for this call, shared with nothing): the facade
    scrubs it in place. ``scrubbed`` is a built-in plugin's word that it already scrubbed
    ``value`` with that scrubber: the pipeline then skips its own pass when that scrubber
    covers every form its own would replace (a large HTTP body is scanned once, not twice).
    Only host code makes an ActionResult, so a guest cannot claim it.
    """

    value: Any
    new_state: dict[str, Any] | None = None
    scrubbed: Scrubber | None = None


#: An action bound to a credential (:meth:`Plugin.prepare`): called with validated parameters.
PreparedAction = Callable[[dict[str, Any]], ActionResult]


class Plugin(Protocol):
    """A loaded plugin. The registry holds these; the core facade calls ``execute``.

    ``validate_credential`` is the door every new credential goes through (``Vultrino.
    add_credential`` calls it before storing anything): it checks ``fields`` against the
    manifest's field specs, then anything deeper the plugin knows, and returns the fields to
    store (defaults filled in). It raises CredentialValidationError naming the field, never its
    value. ``validate_allow`` returns the allowlist patterns to store (canonical spellings) or
    raises CredentialValidationError naming the first bad one.

    ``execute`` receives parameters already validated against the manifest and a credential
    already checked to be of one of this plugin's types. It raises :class:`ActionFailedError`
    (with the plugin's code) when the plugin answers with an error, and EngineError subclasses
    when the guest misbehaves. ``prepare`` binds an action to a credential once and returns
    what runs it with each call's parameters (the facade keeps it while the credential and the
    plugin are unchanged); calling it is ``execute`` with that action and credential.
    """

    manifest: PluginManifest
    builtin: bool

    @property
    def name(self) -> str: ...

    def validate_credential(self, type_name: str, fields: Mapping[str, Any]) -> dict[str, Any]: ...

    def validate_allow(self, patterns: list[str]) -> list[str]: ...

    def execute(
        self, action: str, params: Mapping[str, Any], credential: CredentialView | None
    ) -> ActionResult: ...

    def prepare(self, action: str, credential: CredentialView | None) -> PreparedAction: ...

    def describe(self, action: str, params: Mapping[str, Any]) -> str | None:
        """What a person approving this call must see of it (lines of text, no secret), or
        None for the generic summary of its parameters. Raises what ``execute`` would for
        parameters it cannot parse."""
        ...

    def close(self) -> None: ...


#: The key under which the pipeline hands a streaming call's :class:`Streaming` to the plugin,
#: beside the validated parameters: no parameter can have this name (validation refuses
#: unknown names), so no caller can put it there but the pipeline.
STREAM_PARAM = "\x00stream"


@dataclass(frozen=True)
class Streaming:
    """What makes a call stream: the request body as chunks (None: the parameters say the
    body, or there is none) with its length when declared, and the answer handed back as a
    :class:`StreamedBody` instead of a value holding the whole body."""

    body: Iterable[bytes] | None = None
    length: int | None = None


class StreamedBody:
    """An answer whose body is read as it comes: ``status``, ``headers`` (pairs, scrubbed)
    and ``url`` are known; :meth:`chunks` yields the body, scrubbed as it passes
    (:class:`vultrino._scrub.StreamScrubber`). The reader calls :meth:`close` when done, read
    to the end or not. ``on_close(outcome, error, size)`` is called once then: the pipeline
    writes the call's audit record there, so the record says whether the body went through."""

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]],
        url: str,
        chunks: Iterator[bytes],
        close: Callable[[], None],
    ) -> None:
        self.status = status
        self.headers = headers
        self.url = url
        self._chunks = chunks
        self._close = close
        self._size = 0
        self._done = False
        self._error: str | None = None
        self._closed = False
        self.on_close: Callable[[str, str | None, int], None] | None = None

    @property
    def size(self) -> int:
        """Bytes of body handed out so far."""
        return self._size

    def chunks(self) -> Iterator[bytes]:
        try:
            for chunk in self._chunks:
                self._size += len(chunk)
                yield chunk
        except Exception as exc:  # not GeneratorExit: a reader that stopped is BodyNotRead
            self._error = type(exc).__name__
            raise
        self._done = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._close()
        finally:
            hook, self.on_close = self.on_close, None
            if hook is not None:
                if self._done:
                    hook("ok", None, self._size)
                else:
                    hook("error", self._error or "BodyNotRead", self._size)
