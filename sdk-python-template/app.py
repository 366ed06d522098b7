"""my-plugin — a Vultrino plugin written in Python.

Write each action as a plain function `action(params, fields)` and register it in `ACTIONS`
under the name it has in `plugin.toml`. `params` is the dict of parameters (already checked
against plugin.toml by the host); `fields` is the credential's fields (a dict) or None. Return
any MessagePack-able value (it becomes the result the agent sees), or raise `InvalidParams`,
`InvalidCredential` or `PluginError`.

`vultrino plugin install --build .` turns this directory into a WebAssembly component with
componentize-py (`pip install componentize-py`). The glue is the `vultrino_pdk` package,
which Vultrino adds to the build.
"""

import hmac

from wit_world import exports

from vultrino_pdk import InvalidParams, log, run


def greet(params, fields):
    """`greet`: greets `name` with the credential's greeting."""
    name = str(params.get("name", "")).strip()
    if not name:
        raise InvalidParams("name must not be empty")
    log("debug", f"greeting someone ({len(name)} characters)")
    greeting = (fields or {}).get("greeting") or "Hello"
    end = "!" if params.get("excited") else "."
    return {"message": f"{greeting}, {name}{end}"}


def check_token(params, fields):
    """`check_token`: does `token` equal the stored secret? Answers yes/no, never the secret."""
    given = str(params.get("token", "")).encode()
    stored = str((fields or {}).get("token", "")).encode()
    return {"matches": hmac.compare_digest(given, stored)}


# A key the plugin never holds: declare the field `access = "host"` in plugin.toml (the request
# then carries it as None) and let Vultrino use it for you (docs/plugins/host-keys.md):
#
#     from vultrino_pdk import keys
#
#     def sign(params, fields):
#         """`sign`: HMAC-SHA256 of `message` with the `token` field, computed by the host."""
#         return {"signature": keys.hmac_sha256("token", params["message"].encode()).hex()}
#
# An API the plugin calls without holding its token: declare the hosts and the auth scheme in
# plugin.toml (`[http] hosts = ["api.example.com"]`, `auth = ["bearer"]`, and a `token` field)
# and let Vultrino add the token to each request (docs/plugins/host-keys.md):
#
#     from vultrino_pdk import http
#
#     def whoami(params, fields):
#         """`whoami`: the account the token belongs to, as the API reports it."""
#         resp = http.get("https://api.example.com/user", auth="bearer")
#         if not resp.ok:
#             raise PluginError(f"the API answered HTTP {resp.status}")
#         return {"login": resp.json().get("login")}


ACTIONS = {
    "greet": greet,
    "check_token": check_token,
}


class Handler(exports.Handler):
    def execute(self, request: bytes) -> bytes:
        return run(request, ACTIONS)
