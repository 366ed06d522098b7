"""HTTP requests the host authenticates (world 1.3.0, `interface http` of
wit/vultrino-plugin.wit).

The plugin names one of the auth schemes its plugin.toml declares under `[http] auth`; Vultrino
adds the credential (a bearer token, an API key header, basic auth, an OAuth2 token it obtains
and refreshes, an HMAC signature) and sends the request only to a host `[http] hosts` lists,
within the credential's allowlist. The plugin gets the response, scrubbed of the credential's
secrets, and never holds the credential itself. See docs/plugins/host-keys.md.

    from vultrino_pdk import http

    resp = http.post("https://api.github.com/repos/o/r/issues", auth="bearer",
                     json={"title": "Found a bug"})
    if resp.status != 201: ...
    issue = resp.json()

A refusal (a host the manifest does not declare, a URL outside the allowlist, a network
failure) raises `http.HttpError` (a `vultrino_pdk.PluginError`) whose `code` is the WIT's
(`no-credential`, `unknown-auth`, `host-not-declared`, `denied`, `invalid-request`, `failed`).
Any HTTP status is a `Response`.
"""

import base64
import json as _json

from wit_world.imports import http as _host

from vultrino_pdk import InvalidCredential, InvalidParams, PluginError, msgpack

__all__ = ["HttpError", "Response", "get", "post", "request"]


class HttpError(PluginError):
    """The host refused or could not send the request; `code` names why."""

    def __init__(self, code, message):
        super().__init__(f"{message} ({code})")
        self.code = code


class _InvalidRequest(HttpError, InvalidParams):
    code = "invalid_params"


class _NoCredential(HttpError, InvalidCredential):
    code = "invalid_credential"


class Response:
    """What came back: `status`, `headers` (lowercase names), `body` (text) and `url`."""

    def __init__(self, data):
        self.status = data.get("status", 0)
        self.headers = data.get("headers") or {}
        self.url = data.get("url", "")
        body = data.get("body") or ""
        if data.get("body_encoding") == "base64":
            self.content = base64.b64decode(body)
            self.body = self.content.decode("utf-8", "replace")
        else:
            self.body = body
            self.content = body.encode("utf-8")

    @property
    def ok(self):
        return 200 <= self.status < 300

    def json(self):
        return _json.loads(self.body)


def _error(code, message):
    if code == "invalid-request":
        err = _InvalidRequest(code, message)
    elif code == "no-credential":
        err = _NoCredential(code, message)
    else:
        err = HttpError(code, message)
    err.code = code
    return err


def request(method, url, *, auth, headers=None, query=None, body=None, json=None, timeout=None):
    """Send `method url` through the host with the `auth` scheme; a `Response`."""
    req = {"auth": auth, "method": method.upper(), "url": url}
    if headers:
        req["headers"] = dict(headers)
    if query:
        req["query"] = dict(query)
    if body is not None:
        if isinstance(body, (bytes, bytearray)):
            req["body_base64"] = base64.b64encode(bytes(body)).decode("ascii")
        else:
            req["body"] = str(body)
    if json is not None:
        req["json"] = json
    if timeout is not None:
        req["timeout"] = timeout
    answer = msgpack.unpackb(bytes(_host.send(msgpack.packb(req))))
    if isinstance(answer, dict) and isinstance(answer.get("ok"), dict):
        return Response(answer["ok"])
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict):
        raise _error(str(error.get("code", "failed")), str(error.get("message", "")))
    raise HttpError("failed", "the host's answer could not be read")


def get(url, **kw):
    return request("GET", url, **kw)


def post(url, **kw):
    return request("POST", url, **kw)
