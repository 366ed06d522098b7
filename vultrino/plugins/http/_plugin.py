"""The built-in HTTP plugin: authenticated requests an agent cannot turn against the user.

An agent names a credential and a URL; this plugin adds the secret (a header, a query
parameter, HTTP basic auth or an oauth2 access token) and sends the request — but only to URLs
the credential's allowlist admits (:mod:`vultrino._allowlist`), checked before any
network I/O. Redirects are followed by hand so every hop is checked too, and the secret only
ever goes to the origin the agent asked for. Secret values are scrubbed from what comes back.

User documentation: docs/http.md. Network access goes through :mod:`vultrino._net`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import ipaddress
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, quote_plus, unquote_plus, urlencode, urljoin

from vultrino._allowlist import (
    METHODS,
    Allowlist,
    NormalizedURL,
    normalize_url,
    validate_patterns,
)
from vultrino._scrub import Scrubber, StreamScrubber, scrub_error, scrubber
from vultrino._version import __version__
from vultrino.errors import (
    AccessDeniedError,
    ActionFailedError,
    ActionNotFoundError,
    CredentialMismatchError,
    CredentialValidationError,
    ParameterError,
    VultrinoError,
)
from vultrino.plugins.base import (
    HTTP_AUTH_SCHEMES,
    ActionResult,
    ActionSpec,
    CredentialTypeSpec,
    CredentialView,
    FieldSpec,
    ParameterSpec,
    PluginInfo,
    PluginManifest,
    PreparedAction,
    StreamedBody,
    Streaming,
    ToolSpec,
)
from vultrino.plugins.base import STREAM_PARAM as _STREAM

if TYPE_CHECKING:  # vultrino._net (and httpx, ~0.5 s to import) loads on the first request
    from collections.abc import Iterable, Iterator

    from vultrino._net import HttpClient, NetError, OpenResponse, Response, UrlParts

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "MANIFEST", "HttpPlugin"]

PLUGIN_NAME = "http"
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 600.0
DEFAULT_MAX_REDIRECTS = 5
TOKEN_REFRESH_MARGIN = 300.0  # the original Vultrino's; per credential: refresh_margin
MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_OAUTH_FETCH = "oauth2 token request"
HMAC_KEY_HEADER = "X-MBX-APIKEY"  # Binance's; the original Vultrino's default
HMAC_RECV_WINDOW = 5000
HMAC_MAX_RECV_WINDOW = 60000
_HMAC_PARAMS = ("timestamp", "recvWindow", "signature")

_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_QUERY_NAME_RE = re.compile(r"[^\s&=#]+")
_CHARSET_RE = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9._:\-]+)", re.IGNORECASE)
_FRAMING = (
    "the URL decides the host, and the client frames the request and picks the encodings "
    "(gzip, deflate) itself"
)
_FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "proxy-authorization",
        "proxy-connection",
        "accept-encoding",
    }
)
"""Headers nobody may set, agent or extra_headers: they would pick another virtual host than
the URL's (Host), change how the request is framed on the wire, or ask for a body encoding
Vultrino cannot decode and so cannot scrub (Accept-Encoding)."""
_OVERRIDE = "it would let the server run another method than the one the allowlist checked"
_REWRITE = "it would let the server serve another path than the one the allowlist checked"
_PROXY = "it would tell the server the request came through another host or client"
_PARTIAL = "a partial response could hand back a secret piece by piece, past the scrubber"
_AGENT_REFUSED_HEADERS: dict[str, str] = {
    "x-http-method-override": _OVERRIDE,
    "x-http-method": _OVERRIDE,
    "x-method-override": _OVERRIDE,
    "x-original-url": _REWRITE,
    "x-rewrite-url": _REWRITE,
    "x-original-uri": _REWRITE,
    "forwarded": _PROXY,
    "x-host": _PROXY,
    "x-original-host": _PROXY,
    "range": _PARTIAL,
    "if-range": _PARTIAL,
}
"""Headers an agent may not set (case-insensitive), with why; ``X-Forwarded-*`` too. Checked
before any network I/O."""
_AGENT_REFUSED_PREFIX = "x-forwarded-"
_CROSS_ORIGIN_DROP = frozenset({"authorization", "cookie", "proxy-authorization"})
_LOOPBACK_HOSTS = frozenset({"localhost", "::1"})

# --- manifest --------------------------------------------------------------------------------

_EXTRA_HEADERS = FieldSpec(
    name="extra_headers",
    label="Extra headers",
    type="textarea",
    secret=True,
    help_text="Additional headers sent with every request, one 'Name: value' per line "
    "(treated as secret; blank lines and lines starting with # are ignored)",
    placeholder="X-Org-Id: 1234",
)


def _manifest() -> PluginManifest:
    types = (
        CredentialTypeSpec(
            name="api_key",
            display_name="API key",
            description="A key sent in a header (by default 'Authorization: Bearer <key>') or "
            "in a query parameter",
            fields=(
                FieldSpec("key", "API key", "password", required=True, secret=True),
                FieldSpec(
                    "header",
                    "Header",
                    default="Authorization",
                    help_text="Header that carries the key",
                    validation_pattern=_TOKEN_RE.pattern,
                ),
                FieldSpec(
                    "prefix",
                    "Prefix",
                    help_text="Text before the key in the header; when not given, 'Bearer ' "
                    "for the Authorization header and nothing for any other header",
                    placeholder="Bearer ",
                ),
                FieldSpec(
                    "query_param",
                    "Query parameter",
                    help_text="Send the key in this query parameter instead of a header",
                    placeholder="api_key",
                    validation_pattern=_QUERY_NAME_RE.pattern,
                ),
                _EXTRA_HEADERS,
            ),
        ),
        CredentialTypeSpec(
            name="bearer",
            display_name="Bearer token",
            description="A token sent as 'Authorization: Bearer <token>'",
            fields=(
                FieldSpec("token", "Token", "password", required=True, secret=True),
                _EXTRA_HEADERS,
            ),
        ),
        CredentialTypeSpec(
            name="basic_auth",
            display_name="HTTP basic auth",
            description="A username and password sent as 'Authorization: Basic ...'",
            fields=(
                FieldSpec("username", "Username", required=True),
                FieldSpec("password", "Password", "password", required=True, secret=True),
                _EXTRA_HEADERS,
            ),
        ),
        CredentialTypeSpec(
            name="oauth2",
            display_name="OAuth 2.0 client",
            description="An oauth2 client; Vultrino obtains, caches and refreshes the access "
            "token (client_credentials or refresh_token grant)",
            fields=(
                FieldSpec(
                    "token_url",
                    "Token URL",
                    required=True,
                    help_text="The token endpoint (https; plain http only on loopback)",
                    placeholder="https://auth.example.com/oauth/token",
                ),
                FieldSpec("client_id", "Client ID", required=True),
                FieldSpec(
                    "client_secret",
                    "Client secret",
                    "password",
                    secret=True,
                    help_text="Required for the client_credentials grant",
                ),
                FieldSpec(
                    "refresh_token",
                    "Refresh token",
                    "password",
                    secret=True,
                    help_text="Required for the refresh_token grant",
                ),
                FieldSpec("scope", "Scope", help_text="Space-separated scopes to ask for"),
                FieldSpec(
                    "grant_type",
                    "Grant type",
                    "select",
                    default="client_credentials",
                    options=("client_credentials", "refresh_token"),
                ),
                FieldSpec(
                    "refresh_margin",
                    "Refresh margin (s)",
                    "number",
                    help_text="Seconds before its expiry an access token is renewed "
                    f"(default {TOKEN_REFRESH_MARGIN:g}, as the original Vultrino)",
                ),
                FieldSpec(
                    "client_auth",
                    "Client authentication",
                    "select",
                    default="basic",
                    options=("basic", "body"),
                    help_text="How the client secret reaches the token endpoint: HTTP basic "
                    "auth (RFC 6749's default) or client_id/client_secret form fields",
                ),
                _EXTRA_HEADERS,
            ),
        ),
        CredentialTypeSpec(
            name="hmac_api_key",
            display_name="Exchange API key (HMAC-signed)",
            description="An exchange-style key pair (Binance and alike): each request gets "
            "timestamp and recvWindow, its query sorted and signed with HMAC-SHA256 of the "
            "secret (signature=), and the key in a header. HTTPS only",
            fields=(
                FieldSpec("api_key", "API key", "password", required=True, secret=True),
                FieldSpec("api_secret", "API secret", "password", required=True, secret=True),
                FieldSpec(
                    "header_name",
                    "Key header",
                    default=HMAC_KEY_HEADER,
                    help_text="Header that carries the API key",
                    validation_pattern=_TOKEN_RE.pattern,
                ),
                FieldSpec(
                    "recv_window",
                    "recvWindow (ms)",
                    "number",
                    default=HMAC_RECV_WINDOW,
                    help_text="How many milliseconds after its timestamp the server accepts "
                    f"a request (1 to {HMAC_MAX_RECV_WINDOW})",
                ),
                _EXTRA_HEADERS,
            ),
        ),
    )
    request = ActionSpec(
        name="request",
        description="Send an HTTP request authenticated with the credential. Only URLs in the "
        "credential's allowlist are allowed (an hmac_api_key credential: HTTPS only, its query "
        "signed). Returns {status, headers, body, body_encoding ('text' or 'base64'), "
        "elapsed_ms, url}.",
        credential_type=None,
        credential_types=tuple(t.name for t in types),
        audited=("method", "url"),
        streams=True,
        parameters=(
            ParameterSpec(
                "method",
                "string",
                description="HTTP method",
                default="GET",
                enum_values=METHODS,
            ),
            ParameterSpec("url", "string", required=True, description="Absolute http(s) URL"),
            ParameterSpec("headers", "object", description="Extra request headers, name -> value"),
            ParameterSpec(
                "query",
                "object",
                description="Query parameters added to the URL, name -> value (or list)",
            ),
            ParameterSpec("body", "string", description="Request body as text (UTF-8)"),
            ParameterSpec(
                "body_json",
                "object",
                description="Request body as a JSON object (sets Content-Type: "
                "application/json unless given)",
            ),
            ParameterSpec(
                "body_base64", "string", description="Request body as base64-encoded bytes"
            ),
            ParameterSpec(
                "timeout",
                "number",
                description=f"Seconds for the whole request, redirects included "
                f"(max {MAX_TIMEOUT:g})",
                default=DEFAULT_TIMEOUT,
            ),
        ),
    )
    tool = ToolSpec(
        name="http_request",
        action="request",
        description="Make an HTTP request with a stored credential (API key, bearer token, "
        "basic auth or oauth2) without seeing the secret. The URL must match the "
        "credential's allowlist.",
        # Per tool, not per call: any method may be asked for, so the hints cover the worst.
        read_only=False,
        destructive=True,
        idempotent=False,
        open_world=True,
    )
    return PluginManifest(
        plugin=PluginInfo(
            name=PLUGIN_NAME,
            version=__version__,
            description="Authenticated HTTP requests bound to per-credential URL allowlists",
            format="builtin",
        ),
        credential_types=types,
        actions=(request,),
        mcp_tools=(tool,),
    )


MANIFEST = _manifest()
_TYPES = frozenset(t.name for t in MANIFEST.credential_types)
assert set(HTTP_AUTH_SCHEMES) == _TYPES

# --- request model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    method: str
    url: NormalizedURL
    headers: list[tuple[str, str]]
    body: bytes | None
    timeout: float


@dataclass
class _Auth:
    """What the credential adds to a request sent to its original origin."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    query: list[tuple[str, str]] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    cached_token: bool = False
    new_state: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Bound:
    """What a request depends on that only its credential decides, worked out once per
    pipeline plan (:meth:`HttpPlugin.prepare`): the parsed allowlist (None when parsing it
    failed: then it is parsed again, and fails, on each call), whether the fields pass
    :func:`_check_credential_fields`, and the secret values the pipeline scrubs (the view's
    secret fields and its state)."""

    view: CredentialView
    allow: Allowlist | None
    fields_ok: bool
    secrets: tuple[str, ...]

    @classmethod
    def of(cls, view: CredentialView) -> _Bound:
        try:
            allow: Allowlist | None = _allowlist(view)
        except VultrinoError:
            allow = None
        try:
            _check_credential_fields(view.type, view.fields)
            fields_ok = True
        except VultrinoError:
            fields_ok = False
        values = [view.fields.get(f) for f in view.secret_fields]
        values += view.state.values()
        return cls(view, allow, fields_ok, tuple(v for v in values if isinstance(v, str)))

    def allowlist(self) -> Allowlist:
        return self.allow if self.allow is not None else _allowlist(self.view)


def _allowlist(view: CredentialView) -> Allowlist:
    return Allowlist(view.allow, alias=view.alias, narrow=view.narrow, narrowed_by=view.narrowed_by)


class HttpPlugin:
    """The ``http`` plugin. One instance holds one connection pool for its whole life.

    ``max_response_bytes`` caps a response body (decoded); ``max_redirects`` caps redirect
    hops; ``client`` injects a transport (tests, proxies); ``clock`` is wall-clock time, used
    for oauth2 token expiry (which is persisted, so it must survive a restart).
    """

    builtin = True
    manifest = MANIFEST

    def __init__(
        self,
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        client: HttpClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_response_bytes <= 0:
            raise ValueError("max_response_bytes must be positive")
        self.max_response_bytes = max_response_bytes
        self.max_redirects = max_redirects
        self._client = client  # created on first use: building a TLS context costs ~0.2 s
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], dict[str, Any]] = {}
        self._closed = False

    @property
    def name(self) -> str:
        return PLUGIN_NAME

    # --- helpers for the add-time checks -------------------------------------------------------

    def validate_allow(self, patterns: list[str]) -> list[str]:
        """Canonical spellings of allowlist ``patterns`` (duplicates dropped).

        Raises CredentialValidationError naming the first bad pattern.
        """
        return validate_patterns(patterns)

    def validate_credential(self, type_name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The manifest's field checks, then deeper ones the manifest cannot express (header
        names and values, extra_headers lines, the token URL, what each oauth2 grant needs).

        Returns the fields to store; raises CredentialValidationError naming the field, never
        its value.
        """
        from vultrino.plugins.validation import validate_fields

        spec = MANIFEST.credential_type(type_name)
        if spec is None:
            raise _invalid(
                f"the http plugin has no credential type {type_name!r} "
                f"(types: {', '.join(sorted(_TYPES))})"
            )
        clean = validate_fields(spec, fields)
        _check_credential_fields(type_name, clean)
        return clean

    # --- the action ----------------------------------------------------------------------------

    def prepare(self, action: str, credential: CredentialView | None) -> PreparedAction:
        """``execute`` of ``action`` with ``credential``. What depends on the credential alone
        is worked out once here, for every call of the plan: its parsed allowlist, whether its
        fields pass the checks, and the secret values the pipeline scrubs. The checks still
        fail each call in the same order as :meth:`execute`'s."""
        bound = _Bound.of(credential) if action == "request" and credential else None

        def run(params: dict[str, Any]) -> ActionResult:
            return self._execute(action, params, credential, bound)

        return run

    def describe(self, action: str, params: Mapping[str, Any]) -> str | None:
        """The request exactly as it would be sent, for an approval prompt: the method and the
        final URL (query parameters merged), every header the caller set, and the whole body
        (text quoted, anything else in base64) with its size and digest. The credential's own
        authentication is not shown. A prompt too long to show whole is refused upstream."""
        if action != "request":
            return None
        req = _parse_params(params)
        lines = [f"{req.method} {req.url.url}"]
        lines += [f"header {name}: {value}" for name, value in req.headers]
        if req.body is not None:
            digest = hashlib.sha256(req.body).hexdigest()
            try:
                text = repr(req.body.decode("utf-8"))
            except UnicodeDecodeError:
                text = "base64 " + base64.b64encode(req.body).decode("ascii")
            lines.append(f"body: {len(req.body)} bytes, sha256 {digest}: {text}")
        return "\n".join(lines)

    def execute(
        self, action: str, params: Mapping[str, Any], credential: CredentialView | None
    ) -> ActionResult:
        return self._execute(action, params, credential, None)

    def _execute(
        self,
        action: str,
        params: Mapping[str, Any],
        credential: CredentialView | None,
        bound: _Bound | None,
    ) -> ActionResult:
        if action != "request":
            raise ActionNotFoundError(
                f"plugin 'http' has no action {action!r} (actions: request)", plugin=PLUGIN_NAME
            )
        if credential is None:
            raise ParameterError(
                "the http plugin's request action needs a credential (its alias)",
                plugin=PLUGIN_NAME,
            )
        if credential.type not in _TYPES:
            raise CredentialMismatchError(
                f"credential {credential.alias!r} is of type {credential.type!r}, which the http "
                f"plugin does not handle (types: {', '.join(sorted(_TYPES))})",
                plugin=PLUGIN_NAME,
            )
        started = time.monotonic()
        req = _parse_params(params)
        stream = params.get(_STREAM)
        if stream is not None and not isinstance(stream, Streaming):
            raise TypeError("the stream parameter is the pipeline's Streaming")  # never a caller's
        if stream is not None and stream.body is not None and req.body is not None:
            raise _param_error("a streamed body and a body parameter cannot both be given")
        if credential.type == "hmac_api_key":
            req = _hmac_query(req, credential.fields, self._clock())
        if bound is None or bound.view is not credential:
            bound = _Bound.of(credential)
        allow = bound.allowlist()
        allow.check(req.method, req.url)  # before any network I/O, token requests included
        if not bound.fields_ok:
            _check_credential_fields(credential.type, credential.fields)  # raises
        deadline = started + req.timeout
        key = self._pending_key(credential)
        state, new_state = self._current_state(credential, key)
        try:
            auth = self._authenticate(credential, state, deadline, allow, force=False)
            if credential.type == "hmac_api_key":
                auth.query.append(("signature", _hmac_signature(req, credential.fields)))
            new_state = auth.new_state or new_state
            response, final = self._exchange(req, auth, allow, deadline, stream)
            replayable = stream is None or stream.body is None
            if (
                response.status == 401
                and credential.type == "oauth2"
                and auth.cached_token
                and replayable
            ):
                # The cached token was revoked or expired early: refresh once and retry.
                if stream is not None:
                    cast("OpenResponse", response).close()
                auth = self._authenticate(
                    credential, new_state or state, deadline, allow, force=True
                )
                new_state = auth.new_state or new_state
                response, final = self._exchange(req, auth, allow, deadline, stream)
        except VultrinoError:
            if new_state is not None:
                self._remember(key, new_state)
            raise
        self._forget(key)
        # One scrubber for the whole result: what this request sent (a derived secret such as
        # basic auth's user:password pair, a fresh token) and every secret the pipeline would
        # scrub (the credential's secret fields and state), so its own pass can be skipped.
        extra = [] if new_state is None else list(new_state.values())
        scrub = scrubber([*bound.secrets, *auth.secrets, *extra])
        if stream is not None:
            value: Any = self._streamed(cast("OpenResponse", response), req, final, scrub)
        else:
            value = _result(cast("Response", response), final, scrub, started)
        return ActionResult(value, new_state=new_state, scrubbed=scrub)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._closed = True
        if client is not None:
            client.close()

    def _http(self) -> HttpClient:
        with self._lock:
            if self._closed:
                raise ActionFailedError("the http plugin has been closed", plugin=PLUGIN_NAME)
            if self._client is None:
                from vultrino._net import make_client

                self._client = make_client()
            return self._client

    # --- redirects -----------------------------------------------------------------------------

    def _exchange(
        self,
        req: _Request,
        auth: _Auth,
        allow: Allowlist,
        deadline: float,
        stream: Streaming | None = None,
    ) -> tuple[Response | OpenResponse, NormalizedURL]:
        """Send ``req``, following redirects by hand.

        Every hop must match the allowlist, and its host must resolve to public addresses
        unless a pattern admitting the hop names that host exactly (checked on the addresses
        actually connected to, in vultrino._net). The credential goes only to the original
        origin; once a redirect leaves it, the rest of the chain is sent without the
        credential, and a hop whose URL itself carries a secret is refused.

        With ``stream`` the same hops are taken, each opened with :meth:`HttpClient.open`
        (the body of a redirect is never read) and the last one returned open; a streamed
        request body is sent once, so a redirect that keeps the method (307, 308) after it
        went out is refused with the URL to ask for directly.
        """
        origin = req.url.origin
        forms = scrubber(auth.secrets)
        method, url, headers = req.method, req.url, list(req.headers)
        body: bytes | Iterable[bytes] | None = req.body
        length: int | None = None
        if stream is not None and stream.body is not None:
            body, length = stream.body, stream.length
        with_credential = True
        for hop in range(self.max_redirects + 1):
            if hop:
                allow.check(method, url, what="redirect to")
            if url.origin != origin:
                with_credential = False
            if with_credential:
                names = {n.lower() for n, _ in auth.headers}
                send_headers = [(n, v) for n, v in headers if n.lower() not in names]
                send_headers += auth.headers
                send_url = _with_query(url, auth.query)
            else:
                send_headers = [(n, v) for n, v in headers if n.lower() not in _CROSS_ORIGIN_DROP]
                send_url = url
                if forms.holds(send_url.url):
                    raise AccessDeniedError(
                        f"refused to follow a redirect to {send_url.display}: its URL carries "
                        "the credential's secret to another origin",
                        plugin=PLUGIN_NAME,
                    )
            parsed = _check_client_agrees(send_url)
            private_ok = allow.names_host(method, url)
            response: Response | OpenResponse
            if stream is None:
                assert body is None or isinstance(body, bytes)
                response = self._send(
                    method,
                    send_url,
                    send_headers,
                    body,
                    deadline,
                    private_ok=private_ok,
                    parsed=parsed,
                )
            else:
                response = self._open(
                    method, send_url, send_headers, body, length, deadline, private_ok, parsed
                )
            location = response.header("location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response, send_url
            if stream is not None:
                cast("OpenResponse", response).close()
            url = _redirect_target(send_url, location, forms)
            if _becomes_get(response.status, method):
                method, body, length = "GET", None, None
                headers = [(n, v) for n, v in headers if n.lower() != "content-type"]
            elif body is not None and not isinstance(body, bytes):
                raise ActionFailedError(
                    f"{req.method} {req.url.display} was redirected (HTTP {response.status}) to "
                    f"{url.display}, which needs the body again, and a streamed body is sent "
                    "only once; send the request to that URL directly",
                    plugin=PLUGIN_NAME,
                )
        raise ActionFailedError(
            f"{req.method} {req.url.display} was redirected more than {self.max_redirects} "
            "times; request the final URL directly",
            plugin=PLUGIN_NAME,
        )

    def _send(
        self,
        method: str,
        url: NormalizedURL,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        deadline: float,
        *,
        max_bytes: int | None = None,
        what: str = "HTTP request",
        private_ok: bool = False,
        parsed: UrlParts | None = None,
    ) -> Response:
        from vultrino._net import NetError

        remaining = deadline - time.monotonic()
        cap = self.max_response_bytes if max_bytes is None else max_bytes
        if remaining <= 0:
            raise ActionFailedError(
                f"{what} {method} {url.display} timed out before it was sent (a redirect or "
                "token request used the time up); "
                "raise the timeout parameter",
                plugin=PLUGIN_NAME,
            )
        try:
            return self._http().send(
                method,
                url.url if parsed is None else parsed,
                headers=headers,
                content=body,
                timeout=remaining,
                max_bytes=cap,
                private_ok=private_ok,
            )
        except NetError as exc:
            raise _net_failure(exc, what, method, url, cap) from None

    def _open(  # noqa: PLR0917 - one hop of _exchange
        self,
        method: str,
        url: NormalizedURL,
        headers: Sequence[tuple[str, str]],
        body: bytes | Iterable[bytes] | None,
        length: int | None,
        deadline: float,
        private_ok: bool,
        parsed: UrlParts,
    ) -> OpenResponse:
        """One hop of a streaming exchange: :meth:`_send`, returning when the head arrives."""
        from vultrino._net import NetError

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ActionFailedError(
                f"HTTP request {method} {url.display} timed out before it was sent; raise the "
                "timeout",
                plugin=PLUGIN_NAME,
            )
        try:
            return self._http().open(
                method,
                parsed,
                headers=headers,
                content=body,
                length=length,
                timeout=remaining,
                private_ok=private_ok,
            )
        except NetError as exc:
            raise _net_failure(exc, "HTTP request", method, url, 0) from None

    def _streamed(
        self, response: OpenResponse, req: _Request, url: NormalizedURL, scrub: Scrubber
    ) -> StreamedBody:
        """The answer of a streaming request: its head scrubbed now, its body scrubbed as it
        passes (:class:`StreamScrubber`: a secret split between two chunks is caught). The
        body is decoded (gzip, deflate), so Content-Encoding and Content-Length are left out
        of the headers. A body in a charset whose bytes are not ASCII's for ASCII text (UTF-16,
        UTF-32) could hide a secret from the byte-wise scrubber, so it is refused."""
        charset = _CHARSET_RE.search(response.header("content-type") or "")
        if charset is not None and not _ascii_compatible(charset.group(1)):
            response.close()
            raise ActionFailedError(
                f"{req.method} {url.display} answered in charset {charset.group(1)[:40]!r}, "
                "which the streaming scrubber cannot read (it needs an ASCII-compatible one, "
                "such as UTF-8); use the http_request tool or `vultrino request`, which decode it",
                plugin=PLUGIN_NAME,
            )
        pairs = [
            (name.lower(), value)
            for name, value in response.headers
            if name.lower() not in ("content-encoding", "content-length")
        ]
        if scrub.holds("\n".join(f"{n}\n{v}" for n, v in pairs)):
            pairs = [(scrub.text(n), scrub.text(v)) for n, v in pairs]
        return StreamedBody(
            response.status,
            pairs,
            scrub.text(url.url),
            _scrubbed_chunks(response, scrub, req.method, url),
            response.close,
        )

    # --- authentication ------------------------------------------------------------------------

    def _authenticate(
        self,
        cred: CredentialView,
        state: Mapping[str, Any],
        deadline: float,
        allow: Allowlist,
        *,
        force: bool,
    ) -> _Auth:
        fields = cred.fields
        auth = _Auth()
        extra = _parse_extra_headers(fields.get("extra_headers"))
        auth.secrets.extend(v for _, v in extra)
        own: list[tuple[str, str]] = []
        if cred.type == "api_key":
            key = _text(fields, "key")
            auth.secrets.append(key)
            param = _text(fields, "query_param")
            if param:
                auth.query.append((param, key))
            else:
                header = _text(fields, "header") or "Authorization"
                prefix = fields.get("prefix")
                if not isinstance(prefix, str):
                    prefix = "Bearer " if header.lower() == "authorization" else ""
                own.append((header, prefix + key))
        elif cred.type == "bearer":
            token = _text(fields, "token")
            auth.secrets.append(token)
            own.append(("Authorization", f"Bearer {token}"))
        elif cred.type == "hmac_api_key":
            key = _text(fields, "api_key")
            auth.secrets += [key, _text(fields, "api_secret")]
            own.append((_text(fields, "header_name") or HMAC_KEY_HEADER, key))
        elif cred.type == "basic_auth":
            user, password = _text(fields, "username"), _text(fields, "password")
            pair = f"{user}:{password}"
            auth.secrets += [password, pair]
            encoded = base64.b64encode(pair.encode("utf-8")).decode("ascii")
            own.append(("Authorization", f"Basic {encoded}"))
        else:
            auth.secrets += _oauth_field_secrets(fields)
            token, fresh = self._access_token(cred, state, deadline, allow, force=force)
            auth.secrets.append(token)
            auth.cached_token = fresh is None
            auth.new_state = fresh
            own.append(("Authorization", f"Bearer {token}"))
        # Extra headers never override the credential's own header.
        names = {n.lower() for n, _ in own}
        auth.headers = [(n, v) for n, v in extra if n.lower() not in names] + own
        return auth

    def _access_token(
        self,
        cred: CredentialView,
        state: Mapping[str, Any],
        deadline: float,
        allow: Allowlist,
        *,
        force: bool,
    ) -> tuple[str, dict[str, Any] | None]:
        """The cached access token, or a new one (then also the new state to persist)."""
        binding = _binding(cred)
        token = state.get("access_token")
        expires_at = state.get("expires_at")
        usable = (
            not force
            and state.get("binding") == binding
            and isinstance(token, str)
            and token
            and (
                expires_at is None
                or (
                    isinstance(expires_at, (int, float))
                    and expires_at - _refresh_margin(cred.fields) > self._clock()
                )
            )
        )
        if usable:
            return str(token), None
        known = state if state.get("binding") == binding else {}
        fresh = self._fetch_token(cred, known, deadline, allow)
        return fresh["access_token"], fresh

    def _fetch_token(
        self, cred: CredentialView, state: Mapping[str, Any], deadline: float, allow: Allowlist
    ) -> dict[str, Any]:
        """A new access token. A refused refresh_token grant (HTTP 4xx: the refresh token
        expired or was revoked) falls back to the client_credentials grant when the credential
        also has a client secret, as the original Vultrino did; the stale refresh token is
        then forgotten."""
        grant = _text(cred.fields, "grant_type") or "client_credentials"
        try:
            return self._fetch_token_with(cred, state, deadline, allow, grant)
        except ActionFailedError as exc:
            if not (
                grant == "refresh_token"
                and exc.code == "invalid_credential"
                and _text(cred.fields, "client_secret")
            ):
                raise
            try:
                return self._fetch_token_with(cred, {}, deadline, allow, "client_credentials")
            except ActionFailedError as second:
                raise ActionFailedError(
                    f"{exc}; the client_credentials grant tried after it failed too: {second}",
                    plugin=PLUGIN_NAME,
                    code=second.code,
                ) from None

    def _fetch_token_with(
        self,
        cred: CredentialView,
        state: Mapping[str, Any],
        deadline: float,
        allow: Allowlist,
        grant: str,
    ) -> dict[str, Any]:
        fields = cred.fields
        token_url = _token_url(fields)
        client_id = _text(fields, "client_id")
        secret = _text(fields, "client_secret")
        form: list[tuple[str, str]] = [("grant_type", grant)]
        refresh = ""
        if grant == "refresh_token":
            stored = state.get("refresh_token")
            refresh = (
                stored if isinstance(stored, str) and stored else _text(fields, "refresh_token")
            )
            form.append(("refresh_token", refresh))
        scope = _text(fields, "scope")
        if scope:
            form.append(("scope", scope))
        headers = [
            ("Accept", "application/json"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ]
        if secret and (_text(fields, "client_auth") or "basic") == "basic":
            pair = f"{quote_plus(client_id)}:{quote_plus(secret)}"
            headers.append(("Authorization", "Basic " + base64.b64encode(pair.encode()).decode()))
        else:
            form.append(("client_id", client_id))
            if secret:
                form.append(("client_secret", secret))
        response = self._send(
            "POST",
            token_url,
            headers,
            urlencode(form).encode("ascii"),
            deadline,
            max_bytes=MAX_TOKEN_RESPONSE_BYTES,
            what=_OAUTH_FETCH,
            private_ok=_token_host_named(token_url, allow),
        )
        forms = scrubber([*_oauth_field_secrets(fields), refresh])
        data = _token_response(cred.alias, token_url, response, forms)
        now = self._clock()
        expires_in = data.get("expires_in")
        if isinstance(expires_in, str) and expires_in.strip().isdigit():
            expires_in = int(expires_in)
        new_state: dict[str, Any] = {
            "access_token": data["access_token"],
            "expires_at": (
                now + float(expires_in)
                if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool)
                else None
            ),
            "obtained_at": now,
            "binding": _binding(cred),
        }
        rotated = data.get("refresh_token")
        if isinstance(rotated, str) and rotated:
            new_state["refresh_token"] = rotated
        elif refresh and refresh != _text(fields, "refresh_token"):
            new_state["refresh_token"] = refresh  # keep the last rotated one
        return new_state

    # --- state that could not be returned ------------------------------------------------------

    @staticmethod
    def _pending_key(cred: CredentialView) -> tuple[str, str]:
        return (cred.alias, _binding(cred) if cred.type == "oauth2" else "")

    def _current_state(
        self, cred: CredentialView, key: tuple[str, str]
    ) -> tuple[Mapping[str, Any], dict[str, Any] | None]:
        """The credential's state, or a newer one this process obtained but could not hand back
        (the request after a token refresh failed). Rotated refresh tokens are not lost."""
        with self._lock:
            pending = self._pending.get(key)
        stored = cred.state or {}
        if pending is None:
            return stored, None
        mine, theirs = pending.get("obtained_at"), stored.get("obtained_at")
        if isinstance(theirs, (int, float)) and isinstance(mine, (int, float)) and theirs >= mine:
            return stored, None
        return pending, dict(pending)

    def _remember(self, key: tuple[str, str], state: dict[str, Any]) -> None:
        with self._lock:
            self._pending[key] = dict(state)

    def _forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._pending.pop(key, None)


# --- parameters ------------------------------------------------------------------------------


def _param_error(message: str) -> ParameterError:
    return ParameterError(message, plugin=PLUGIN_NAME)


def _parse_params(params: Mapping[str, Any]) -> _Request:
    method = params.get("method")
    method = "GET" if method is None else method
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise _param_error(f"method must be one of {', '.join(METHODS)}")
    method = method.upper()
    url = params.get("url")
    if not isinstance(url, str) or not url:
        raise _param_error("url is required: an absolute http(s) URL")
    target = normalize_url(url)
    query = _query_pairs(params.get("query"))
    if query:
        extra = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
        target = target.with_query(f"{target.query}&{extra}" if target.query else extra)
    headers = _header_pairs(params.get("headers"))
    body, content_type = _body(params)
    if content_type and not any(n.lower() == "content-type" for n, _ in headers):
        headers.append(("Content-Type", content_type))
    timeout = params.get("timeout")
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        raise _param_error(
            f"timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}"
        )
    return _Request(method, target, headers, body, float(timeout))


def _query_pairs(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise _param_error("query must be an object mapping names to values")
    pairs: list[tuple[str, str]] = []
    for name, item in value.items():
        items = item if isinstance(item, list) else [item]
        for v in items:
            if v is None:
                continue
            if isinstance(v, bool):
                pairs.append((str(name), "true" if v else "false"))
            elif isinstance(v, (str, int, float)):
                pairs.append((str(name), str(v)))
            else:
                raise _param_error(
                    f"query parameter {name!r} must be a string, number, boolean or a list of them"
                )
    return pairs


def _header_pairs(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise _param_error("headers must be an object mapping header names to values")
    pairs: list[tuple[str, str]] = []
    for name, item in value.items():
        if not isinstance(name, str) or not _TOKEN_RE.fullmatch(name):
            raise _param_error(f"{str(name)[:60]!r} is not a valid header name")
        lname = name.lower()
        if lname in _FORBIDDEN_HEADERS:
            raise _param_error(f"header {name!r} cannot be set: {_FRAMING}")
        why = _AGENT_REFUSED_HEADERS.get(lname)
        if why is None and lname.startswith(_AGENT_REFUSED_PREFIX):
            why = _PROXY
        if why is not None:
            raise _param_error(f"header {name!r} is refused: {why}; remove it from headers")
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise _param_error(f"header {name!r} must have a string value")
        text = str(item)
        problem = _header_value_problem(text)
        if problem:
            raise _param_error(f"header {name!r}: {problem}")
        pairs.append((name, text))
    return pairs


def _header_value_problem(text: str) -> str | None:
    if any(c in text for c in "\r\n\0"):
        return "the value contains a line break or NUL"
    if not text.isascii():
        return "the value must be ASCII (percent- or base64-encode anything else)"
    return None


def _body(params: Mapping[str, Any]) -> tuple[bytes | None, str | None]:
    given = [k for k in ("body", "body_json", "body_base64") if params.get(k) is not None]
    if len(given) > 1:
        raise _param_error(f"give at most one of body, body_json, body_base64 (got {given})")
    if not given:
        return None, None
    kind = given[0]
    value = params[kind]
    if kind == "body":
        if not isinstance(value, str):
            raise _param_error("body must be a string (use body_json or body_base64 otherwise)")
        return value.encode("utf-8", "surrogatepass"), None
    if kind == "body_json":
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise _param_error(f"body_json cannot be encoded as JSON: {exc}") from None
        return text.encode("utf-8", "surrogatepass"), "application/json"
    if not isinstance(value, str):
        raise _param_error("body_base64 must be a base64 string")
    try:
        return base64.b64decode("".join(value.split()), validate=True), None
    except (binascii.Error, ValueError):
        raise _param_error("body_base64 is not valid base64") from None


def _with_query(url: NormalizedURL, extra: list[tuple[str, str]]) -> NormalizedURL:
    """``url`` with ``extra`` query parameters set (any same-named ones in the URL removed)."""
    if not extra:
        return url
    names = {name for name, _ in extra}
    kept = [piece for piece in url.query.split("&") if piece and _query_name(piece) not in names]
    kept += [f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in extra]
    return url.with_query("&".join(kept))


def _query_name(piece: str) -> str:
    return unquote_plus(piece.split("=", 1)[0])


def _redirect_target(current: NormalizedURL, location: str, forms: Scrubber) -> NormalizedURL:
    """The next hop's URL. The error quotes the Location, scrubbed: a server may have put the
    credential's secret in it."""
    try:
        return normalize_url(urljoin(current.url, location.strip()))
    except (ParameterError, AccessDeniedError, ValueError) as exc:
        raise AccessDeniedError(
            f"refused to follow a redirect from {current.display} to an unusable URL: "
            f"{forms.text(_first_line(str(exc)))}",
            plugin=PLUGIN_NAME,
        ) from None


def _becomes_get(status: int, method: str) -> bool:
    """Browser (and httpx) behaviour: 303 turns anything but HEAD into GET; so do 301/302 for
    POST. 307 and 308 keep the method and body."""
    if status == 303:
        return method != "HEAD"
    return status in (301, 302) and method == "POST"


def _check_client_agrees(url: NormalizedURL) -> UrlParts:
    """Refuse a URL the HTTP client would read differently from the allowlist (a parser
    differential is exactly how allowlists get bypassed). Returns the client's reading, which
    the request is then sent with (so the URL is parsed once)."""
    from vultrino._net import NetError, url_parts

    try:
        parts = url_parts(url.url)
    except NetError as exc:
        raise AccessDeniedError(f"refused {url.display}: {exc}", plugin=PLUGIN_NAME) from None
    if (parts.scheme, parts.host, parts.port, parts.path, parts.userinfo) != (
        url.scheme,
        url.host,
        url.port,
        url.path,
        "",
    ):
        raise AccessDeniedError(
            f"refused {url.display}: the HTTP client reads this URL differently from the "
            "allowlist check",
            plugin=PLUGIN_NAME,
        )
    return parts


def _net_failure(
    exc: NetError, what: str, method: str, url: NormalizedURL, cap: int
) -> VultrinoError:
    target = f"{what} {method} {url.display}"
    if exc.kind == "timeout":
        return ActionFailedError(
            f"{target} timed out ({exc}); raise the timeout parameter (max {MAX_TIMEOUT:g} s) "
            "or try again later",
            plugin=PLUGIN_NAME,
        )
    if exc.kind == "too_large":
        return ActionFailedError(
            f"{target}: {exc}; the limit is {cap} bytes. Ask for less (a page) or raise "
            "[http] max_response_mb in config.toml",
            plugin=PLUGIN_NAME,
        )
    if exc.kind == "invalid":
        return AccessDeniedError(f"{target} refused: {exc}", plugin=PLUGIN_NAME)
    if exc.kind == "blocked":
        return _blocked(exc, what, target, url)
    if exc.kind == "encoding":
        return ActionFailedError(
            f"{target}: {exc}. The server must answer uncompressed, gzip or deflate",
            plugin=PLUGIN_NAME,
        )
    return ActionFailedError(f"{target} failed: {exc}", plugin=PLUGIN_NAME)


def _blocked(exc: NetError, what: str, target: str, url: NormalizedURL) -> AccessDeniedError:
    """The refusal of a connection to a non-public address: which host, which address, which
    range (``exc``), and the exact pattern that would allow it."""
    exact = f"{url.scheme}://{url.netloc}/*"
    if what == _OAUTH_FETCH:
        how = (
            f"If the token endpoint really is there, write the token_url with the IP address, "
            f"or add a pattern naming the host exactly: --allow '{exact}'"
        )
    else:
        how = f"If this host is meant to be reached, name it exactly: --allow '{exact}'"
    return AccessDeniedError(
        f"{target} refused: {exc}. Nothing was sent: Vultrino connects to loopback, private, "
        "link-local and other non-public addresses only for a host an allowlist pattern names "
        f"exactly, never through '*' or a '*.' wildcard. {how}",
        plugin=PLUGIN_NAME,
    )


# --- credential fields -----------------------------------------------------------------------


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    return value if isinstance(value, str) else ""


def _invalid(message: str, *, needs: tuple[str, ...] = ()) -> CredentialValidationError:
    return CredentialValidationError(message, needs=needs)


def _parse_extra_headers(value: Any) -> list[tuple[str, str]]:
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        raise _invalid("extra_headers must be text: one 'Name: value' per line")
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(value.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, header_value = stripped.partition(":")
        name = name.strip()
        if not sep or not _TOKEN_RE.fullmatch(name):
            raise _invalid(f"extra_headers line {number}: expected 'Name: value'")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise _invalid(f"extra_headers line {number}: header {name!r} cannot be set")
        header_value = header_value.strip()
        if _header_value_problem(header_value):
            raise _invalid(f"extra_headers line {number}: the value must be ASCII on one line")
        pairs.append((name, header_value))
    return pairs


def _check_credential_fields(type_name: str, fields: Mapping[str, Any]) -> None:
    if type_name not in _TYPES:
        raise _invalid(f"the http plugin has no credential type {type_name!r}")
    _parse_extra_headers(fields.get("extra_headers"))
    required = HTTP_AUTH_SCHEMES[type_name]
    for name in required:
        if not _text(fields, name):
            raise _invalid(f"{type_name} credential: field {name!r} is required")
    for name in (
        "key",
        "token",
        "password",
        "prefix",
        "client_id",
        "client_secret",
        "api_key",
        "api_secret",
    ):
        if _header_value_problem(_text(fields, name)):
            raise _invalid(f"{type_name} credential: field {name!r} must be ASCII on one line")
    if type_name == "api_key":
        header = _text(fields, "header")
        if header and (not _TOKEN_RE.fullmatch(header) or header.lower() in _FORBIDDEN_HEADERS):
            raise _invalid(f"api_key credential: {header!r} is not a usable header name")
        param = _text(fields, "query_param")
        if param and not _QUERY_NAME_RE.fullmatch(param):
            raise _invalid(f"api_key credential: {param!r} is not a usable query parameter name")
    if type_name == "hmac_api_key":
        header = _text(fields, "header_name")
        if header and (not _TOKEN_RE.fullmatch(header) or header.lower() in _FORBIDDEN_HEADERS):
            raise _invalid(f"hmac_api_key credential: {header!r} is not a usable header name")
        _recv_window(fields)
    if type_name == "basic_auth" and ":" in _text(fields, "username"):
        raise _invalid("basic_auth credential: the username cannot contain ':'")
    if type_name == "oauth2":
        _token_url(fields)
        grant = _text(fields, "grant_type") or "client_credentials"
        if grant not in ("client_credentials", "refresh_token"):
            raise _invalid(
                f"oauth2 credential: grant_type {grant!r} is not supported "
                "(client_credentials or refresh_token)"
            )
        if (_text(fields, "client_auth") or "basic") not in ("basic", "body"):
            raise _invalid("oauth2 credential: client_auth must be 'basic' or 'body'")
        if grant == "client_credentials" and not _text(fields, "client_secret"):
            raise _invalid(
                "oauth2 credential: the client_credentials grant needs client_secret",
                needs=("client_secret",),
            )
        if grant == "refresh_token" and not _text(fields, "refresh_token"):
            raise _invalid(
                "oauth2 credential: the refresh_token grant needs refresh_token",
                needs=("refresh_token",),
            )
        margin = fields.get("refresh_margin")
        if margin is not None and not (
            isinstance(margin, (int, float))
            and not isinstance(margin, bool)
            and 0 <= margin <= 86400
        ):
            raise _invalid(
                "oauth2 credential: refresh_margin is the seconds before expiry a token is "
                "renewed: a number from 0 to 86400"
            )


def _recv_window(fields: Mapping[str, Any]) -> int:
    """The credential's recvWindow in milliseconds (default :data:`HMAC_RECV_WINDOW`)."""
    value = fields.get("recv_window")
    if value is None or value == "":
        return HMAC_RECV_WINDOW
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value != int(value)
        or not 1 <= value <= HMAC_MAX_RECV_WINDOW
    ):
        raise _invalid(
            "hmac_api_key credential: recv_window is the milliseconds a signed request stays "
            f"valid: a whole number from 1 to {HMAC_MAX_RECV_WINDOW}"
        )
    return int(value)


def _hmac_query(req: _Request, fields: Mapping[str, Any], now: float) -> _Request:
    """``req`` as an exchange-signed request is sent, but for its signature: HTTPS (plain
    http only to loopback), and a query of every parameter (the URL's and ``query``'s) plus
    ``timestamp`` (milliseconds) and ``recvWindow``, sorted by name and percent-encoded. The
    signature is computed over exactly that string (:func:`_hmac_signature`)."""
    url = req.url
    if url.scheme != "https" and not _is_loopback(url.host):
        raise AccessDeniedError(
            f"refused {url.display}: an hmac_api_key credential signs requests over https "
            "only (plain http only to localhost / 127.0.0.1 / ::1)",
            plugin=PLUGIN_NAME,
        )
    pairs: list[tuple[str, str]] = []
    for piece in url.query.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            pairs.append((unquote_plus(name), unquote_plus(value)))
    taken = sorted({n for n, _ in pairs} & set(_HMAC_PARAMS))
    if taken:
        raise _param_error(
            f"query parameter {taken[0]!r} is set by Vultrino for an hmac_api_key credential "
            "(timestamp, recvWindow and signature); remove it"
        )
    pairs += [("timestamp", str(int(now * 1000))), ("recvWindow", str(_recv_window(fields)))]
    pairs.sort(key=lambda p: p[0])  # stable: repeated names keep their order
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    return _Request(req.method, url.with_query(query), req.headers, req.body, req.timeout)


def _hmac_signature(req: _Request, fields: Mapping[str, Any]) -> str:
    """HMAC-SHA256 (hex) of the query string followed by the body, as Binance documents it
    (``totalParams`` is the query string concatenated with the request body)."""
    import hmac

    total = req.url.query.encode("ascii") + (req.body or b"")
    return hmac.new(_text(fields, "api_secret").encode("utf-8"), total, "sha256").hexdigest()


def _token_url(fields: Mapping[str, Any]) -> NormalizedURL:
    """The token endpoint. It is configured by the user at add time, so it is trusted and not
    subject to the allowlist; but the client secret never travels over plain http off-host."""
    try:
        url = normalize_url(_text(fields, "token_url"))
    except VultrinoError as exc:
        raise _invalid(
            f"oauth2 credential: token_url is not usable: {_first_line(str(exc))}"
        ) from None
    if url.scheme != "https" and not _is_loopback(url.host):
        raise _invalid(
            "oauth2 credential: token_url must use https (plain http is allowed only for "
            "localhost / 127.0.0.1 / ::1)"
        )
    return url


def _is_loopback(host: str) -> bool:
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


def _token_host_named(url: NormalizedURL, allow: Allowlist) -> bool:
    """Whether the token endpoint may be at a non-public address: the user wrote it as an IP
    address or ``localhost`` (nothing to rebind), or an allowlist pattern names its host
    exactly. A DNS name otherwise must resolve to public addresses, like any request."""
    if url.host == "localhost" or allow.names_host_of(url.host):
        return True
    try:
        ipaddress.ip_address(url.host)
    except ValueError:
        return False
    return True


def _binding(cred: CredentialView) -> str:
    """Which oauth2 client a cached token belongs to (so a replaced credential starts over)."""
    fields = cred.fields
    parts = [_text(fields, n) for n in ("token_url", "client_id", "scope", "grant_type")]
    import hashlib  # here: listing plugins never needs it

    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _oauth_field_secrets(fields: Mapping[str, Any]) -> list[str]:
    client_id, secret = _text(fields, "client_id"), _text(fields, "client_secret")
    out = [secret, _text(fields, "refresh_token")]
    if secret:
        out += [f"{client_id}:{secret}", f"{quote_plus(client_id)}:{quote_plus(secret)}"]
    return out


def _state_secrets(state: Mapping[str, Any] | None) -> list[str]:
    if not state:
        return []
    return [
        v for k, v in state.items() if k in ("access_token", "refresh_token") and isinstance(v, str)
    ]


def _refresh_margin(fields: Mapping[str, Any]) -> float:
    """Seconds before expiry a cached access token is renewed: the credential's
    ``refresh_margin``, else :data:`TOKEN_REFRESH_MARGIN`."""
    value = fields.get("refresh_margin")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return TOKEN_REFRESH_MARGIN


def _token_response(
    alias: str, url: NormalizedURL, response: Response, forms: Scrubber
) -> dict[str, Any]:
    where = f"oauth2 token request for credential {alias!r} to {url.display}"
    try:
        data = json.loads(response.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    if response.status in REDIRECT_STATUSES:
        raise ActionFailedError(
            f"{where} was answered with a redirect (HTTP {response.status}); set token_url to "
            "the final token endpoint",
            plugin=PLUGIN_NAME,
            code="invalid_credential",
        )
    if not 200 <= response.status < 300:
        detail = ""
        if isinstance(data, dict):
            bits = [str(data.get(k)) for k in ("error", "error_description") if data.get(k)]
            detail = forms.text(": ".join(bits))[:300]
        raise ActionFailedError(
            f"{where} failed: HTTP {response.status}{' (' + detail + ')' if detail else ''}; "
            "check the credential's client_id, client_secret, refresh_token and scope",
            plugin=PLUGIN_NAME,
            code="invalid_credential" if 400 <= response.status < 500 else "failed",
        )
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token or _header_value_problem(token):
        raise ActionFailedError(
            f"{where} answered without a usable access_token (expected a JSON object)",
            plugin=PLUGIN_NAME,
        )
    token_type = (data.get("token_type") if isinstance(data, dict) else None) or "bearer"
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise ActionFailedError(
            f"{where} issued a token of type {str(token_type)[:40]!r}; only bearer tokens are "
            "supported",
            plugin=PLUGIN_NAME,
        )
    return data if isinstance(data, dict) else {}


# --- results and scrubbing -------------------------------------------------------------------


def _decode_text(body: bytes, content_type: str | None) -> tuple[str | None, str]:
    """The body as text in its declared charset (or UTF-8), and the charset that decoded it;
    (None, "") when it does not decode."""
    candidates = ["utf-8"]
    m = _CHARSET_RE.search(content_type or "")
    if m:
        try:
            declared = codecs.lookup(m.group(1)).name
        except LookupError:
            declared = None
        if declared and declared not in candidates:
            candidates.insert(0, declared)
    for charset in candidates:
        try:
            return body.decode(charset), charset
        except (UnicodeDecodeError, LookupError):
            continue
    return None, ""


def _result(
    response: Response, url: NormalizedURL, scrub: Scrubber, started: float
) -> dict[str, Any]:
    """The action's answer, scrubbed with ``scrub`` in one pass over the body.

    The body's bytes are scrubbed, then decoded. A UTF-8 text needs no second look: a form is
    in valid UTF-8 bytes exactly where it is in their text, so the bytes' pass found every
    form the text holds (unless a replacement made a new one next to ``[REDACTED]``, which is
    why a body that had something replaced is looked at again). Text in another charset and
    the base64 of a binary body are scanned as text too, as are headers and the URL.
    """
    raw = response.body
    body = scrub.data(raw)
    text, charset = _decode_text(body, response.header("content-type"))
    if text is not None:
        if charset != "utf-8" or body is not raw:
            text = scrub.text(text)
        out_body, encoding = text, "text"
    else:
        out_body, encoding = scrub.text(base64.b64encode(body).decode("ascii")), "base64"
    pairs = [(name.lower(), value) for name, value in response.headers]
    # One search over all of them first: a form in any name or value is in the joined text
    # too (the separator can only add a match, which then sends every one through the
    # scrubber).
    if scrub.holds("\n".join(f"{n}\n{v}" for n, v in pairs)):
        pairs = [(scrub.text(n), scrub.text(v)) for n, v in pairs]
    headers: dict[str, str] = {}
    for key, clean in pairs:
        headers[key] = f"{headers[key]}, {clean}" if key in headers else clean
    return {
        "status": response.status,
        "headers": headers,
        "body": out_body,
        "body_encoding": encoding,
        "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
        "url": scrub.text(url.url),
    }


def _scrubbed_chunks(
    response: OpenResponse, scrub: Scrubber, method: str, url: NormalizedURL
) -> Iterator[bytes]:
    from vultrino._net import NetError

    stream = StreamScrubber(scrub)
    try:
        for chunk in response.chunks():
            out = stream.feed(chunk)
            if out:
                yield out
    except NetError as exc:
        raise scrub_error(_net_failure(exc, "HTTP request", method, url, 0), scrub) from None
    rest = stream.finish()
    if rest:
        yield rest


def _ascii_compatible(charset: str) -> bool:
    """Whether ASCII text is the same bytes in ``charset`` (an unknown one: no)."""
    try:
        return "Az09:-".encode(charset) == b"Az09:-" and not codecs.lookup(charset).name.startswith(
            ("utf-16", "utf-32", "utf-7")
        )
    except (LookupError, UnicodeError):
        return False


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else text
