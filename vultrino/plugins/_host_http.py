"""The host side of a plugin's ``http.send`` (world 1.3.0): a request the host authenticates.

A WebAssembly plugin whose manifest declares ``[http] hosts`` and ``auth`` may ask the host to
send an HTTP request naming one of those auth schemes. The host builds, from the call's
credential, a view of the built-in HTTP plugin's credential type of that name (its fields, by
the same names; the credential's allowlist, or ``https://<host>/*`` for each declared host when
it has none; the calling agent's URL patterns) and runs the built-in plugin's ``request``
action with it: the same allowlist and address checks on every hop, the same caps, decoding
and scrubbing, the same OAuth2 token cache and refresh. There is one way out to the network.

The guest gets only the scrubbed response (or an error code and a scrubbed message); the
credential's secrets never enter it. Documentation: docs/plugins/host-keys.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, Final

from vultrino import _msgpack
from vultrino._allowlist import normalize_url
from vultrino._scrub import Scrubber, scrubber
from vultrino.errors import AccessDeniedError, ParameterError, VultrinoError
from vultrino.plugins.base import CredentialView, HttpSpec, Plugin

__all__ = ["MAX_REQUEST_BYTES", "MAX_REQUEST_VALUES", "HostHttp"]

#: The largest request a guest may hand to ``http.send`` (its body included).
MAX_REQUEST_BYTES: Final = 16 * 1024 * 1024
#: The most values (every map, array, string, number...) a request may hold. A request is read
#: in the host, outside the guest's memory cap and while its deadline cannot fire: 16 MiB of
#: empty maps would be 16 million Python objects. A large document goes as ``body`` text.
MAX_REQUEST_VALUES: Final = 100_000
#: A request's timeout when it gives none (the built-in HTTP plugin's), and the least time
#: left in the plugin's call for which one is still sent.
_DEFAULT_TIMEOUT: Final = 30.0
_LEAST_TIME: Final = 0.05
#: What a request leaves of the call for the guest to handle its answer (or its failure): a
#: fifth of the call's deadline, at least this.
_GUEST_MARGIN: Final = 0.25
#: The keys a request may have; ``auth`` and ``url`` are required.
_KEYS: Final = frozenset(
    {"auth", "method", "url", "headers", "query", "body", "json", "body_base64", "timeout"}
)


class _Refused(Exception):  # noqa: N818 - a refusal answered to the guest, not an error
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _answer_error(code: str, message: str) -> bytes:
    return _msgpack.packb({"error": {"code": code, "message": message}})


class HostHttp:
    """``http.send`` for the calls of one prepared action: ``(request bytes) -> answer bytes``.

    ``sender`` is the built-in HTTP plugin; ``credential`` the call's view of the plugin's
    credential. ``new_state`` is the credential state the last request produced (a fresh
    OAuth2 token), for the action's result to persist; later requests of the same call use it.
    """

    def __init__(
        self,
        plugin: str,
        spec: HttpSpec,
        sender: Plugin,
        credential: CredentialView,
        *,
        deadline: float | None = None,
        call_s: float = 5.0,
    ) -> None:
        #: When the plugin's call must end (``time.monotonic()``): a request's timeout is cut
        #: to what is left, since the guest waits inside the host while it runs.
        self.deadline = deadline
        self._margin = max(_GUEST_MARGIN, call_s / 5)
        self.plugin = plugin
        self.spec = spec
        self.sender = sender
        self.credential = credential
        self.new_state: dict[str, Any] | None = None
        self._views: dict[str, CredentialView] = {}
        self._lock = threading.Lock()
        #: The credential's secret values: its secret and host-only fields, and its state.
        self._secrets = [
            v
            for f in sorted({*credential.secret_fields, *credential.host_fields})
            if isinstance(v := credential.fields.get(f), str) and v
        ]
        values = self._secrets + list(credential.state.values())
        self._scrub: Scrubber = scrubber([v for v in values if isinstance(v, str)])
        #: By scheme: a scrubber of the secret values the scheme's view does not hold (the
        #: built-in plugin scrubs the answer of those it does), or None when there are none.
        self._others: dict[str, Scrubber | None] = {}

    def __call__(self, data: bytes) -> bytes:
        try:
            value = self._send(data)
        except _Refused as exc:
            return _answer_error(exc.code, self._scrub.text(str(exc)))
        except VultrinoError as exc:
            if isinstance(exc, AccessDeniedError):
                code = "denied"
            elif isinstance(exc, ParameterError):
                code = "invalid-request"
            else:
                code = "failed"
            return _answer_error(code, self._scrub.text(str(exc)))
        return _msgpack.packb({"ok": value})

    def _send(self, data: bytes) -> Any:
        try:
            req = _msgpack.unpackb(
                data, max_bytes=MAX_REQUEST_BYTES, max_nodes=MAX_REQUEST_VALUES, max_depth=32
            )
        except _msgpack.LimitError as exc:
            raise _Refused(
                "invalid-request",
                f"the request is too large to read: {exc}; send a large document as body text",
            ) from None
        except _msgpack.DecodeError as exc:
            raise _Refused("invalid-request", f"the request is not MessagePack: {exc}") from None
        if type(req) is not dict or not all(type(k) is str for k in req):
            raise _Refused("invalid-request", "the request must be a map with string keys")
        extra = sorted(set(req) - _KEYS)
        if extra:
            raise _Refused(
                "invalid-request",
                f"unknown key(s) {', '.join(extra)} (keys: {', '.join(sorted(_KEYS))})",
            )
        auth = req.get("auth")
        if auth not in self.spec.auth:
            raise _Refused(
                "unknown-auth",
                f"auth must name one of the schemes plugin {self.plugin!r} declares in [http] "
                f"auth: {', '.join(self.spec.auth)}",
            )
        url = req.get("url")
        if not isinstance(url, str):
            raise _Refused("invalid-request", "url is required: an absolute https URL")
        target = normalize_url(url)  # ParameterError / AccessDeniedError: answered as such
        if not self.spec.admits(target.host):
            raise _Refused(
                "host-not-declared",
                f"plugin {self.plugin!r} may send requests only to the hosts its [http] hosts "
                f"declares ({', '.join(self.spec.hosts)}), not to {target.host}",
            )
        if auth == "oauth2":
            self._check_token_url()
        params: dict[str, Any] = {k: v for k, v in req.items() if k not in ("auth", "json")}
        if "json" in req:
            params["body_json"] = req["json"]
        if self.deadline is not None:
            left = self.deadline - time.monotonic() - self._margin
            if left <= _LEAST_TIME:
                raise _Refused("failed", "the plugin's call has no time left for a request")
            asked = params.get("timeout")
            if asked is None or (isinstance(asked, (int, float)) and not isinstance(asked, bool)):
                params["timeout"] = min(_DEFAULT_TIMEOUT if asked is None else asked, left)
        view = self._view(str(auth))
        result = self.sender.execute("request", params, view)
        if result.new_state is not None:
            with self._lock:
                self.new_state = dict(result.new_state)
                self._views.clear()  # the next request uses the fresh token
        # The API may know, and reflect, another secret of the credential than the scheme's
        # (a webhook secret kept host-only beside the token): the guest must not get it either.
        others = self._others.get(view.type)
        return result.value if others is None else others.in_place(result.value)

    def _check_token_url(self) -> None:
        """The oauth2 token endpoint must be one of the declared hosts too: the client secret
        (and a refresh token) go there. The built-in HTTP plugin trusts a ``token_url`` as the
        user's own setting, but a plugin's manifest can suggest one (a field's default), and
        what the user agreed to at install is ``[http] hosts``."""
        value = self.credential.fields.get("token_url")
        host = normalize_url(value).host if isinstance(value, str) and value else ""
        if not self.spec.admits(host):
            raise _Refused(
                "host-not-declared",
                f"plugin {self.plugin!r} may send the oauth2 client secret only to the hosts its "
                f"[http] hosts declares ({', '.join(self.spec.hosts)}); the credential's "
                f"token_url is at {host or 'no host'}. Set token_url to the API's own token "
                "endpoint (vultrino edit), or add its host to [http] hosts",
            )

    def _view(self, scheme: str) -> CredentialView:
        """The credential as the built-in plugin's type ``scheme`` sees it."""
        with self._lock:
            view = self._views.get(scheme)
            if view is not None:
                return view
            spec = self.sender.manifest.credential_type(scheme)
            names = [f.name for f in spec.fields] if spec is not None else []
            cred = self.credential
            fields = {n: cred.fields[n] for n in names if cred.fields.get(n) is not None}
            secret = tuple(n for n in names if n in cred.secret_fields)
            if spec is not None:
                secret = tuple(dict.fromkeys([*secret, *spec.secret_fields]))
            allow = cred.allow or tuple(f"https://{h}/*" for h in self.spec.hosts)
            state: Mapping[str, Any] = self.new_state if self.new_state is not None else cred.state
            view = CredentialView(
                alias=cred.alias,
                type=scheme,
                fields=fields,
                allow=tuple(allow),
                state=state,
                narrow=cred.narrow,
                narrowed_by=cred.narrowed_by,
                secret_fields=secret,
            )
            self._views[scheme] = view
            held = {v for n in secret if isinstance(v := fields.get(n), str)}
            rest = [v for v in self._secrets if v not in held]
            self._others[scheme] = scrubber(rest) if rest else None
            return view
