"""vultrino_pdk — the guest SDK for Vultrino plugins written in Python.

The glue between Vultrino and a plugin's actions; a plugin imports it and need not read it.
Vultrino adds this package to every Python plugin it builds with componentize-py, so a plugin
project holds only its own code.

`run(request_bytes, ACTIONS)` decodes the MessagePack request, calls the action registered under
its name with `(params, fields)` (`fields` is the credential's fields, or None), and encodes the
answer: the action's return value becomes `{"ok": value}`; raising `PluginError` (or a subclass
below) becomes `{"error": {"code", "message"}}`. Any other exception becomes a `failed` error
whose message names the exception and its text ("the action failed (KeyError: 'x')"), with a
`detail` the host shows under `--debug`: the exception, its text and the traceback (module,
file, line and function of each frame). The host scrubs the credential's secrets out of both
before anyone sees them.

World 1.1.0 adds `execute-text` to the handler: `execute` with each byte carried as the
character of the same value (Latin-1), which the component model copies in bulk. Importing this
package gives the generated `Handler` protocol a concrete `execute_text` that converts and calls
the plugin's own `execute`, so a plugin writes `execute` only (as it did for 1.0.0).
"""

from vultrino_pdk import msgpack
from wit_world import exports
from wit_world.imports import host

__all__ = ["InvalidCredential", "InvalidParams", "PluginError", "log", "run"]


class PluginError(Exception):
    """An error the caller sees: `code` is one of the four codes of the plugin ABI."""

    code = "failed"


class InvalidParams(PluginError):
    code = "invalid_params"


class InvalidCredential(PluginError):
    code = "invalid_credential"


_LEVELS = {
    "debug": host.LogLevel.DEBUG,
    "info": host.LogLevel.INFO,
    "warn": host.LogLevel.WARN,
    "error": host.LogLevel.ERROR,
}


def log(level, message):
    """Write one line to the plugin log (never a credential)."""
    host.log(_LEVELS[level], str(message))


def _error(code, message):
    return {"error": {"code": code, "message": message}}


def run(request, actions):
    try:
        req = msgpack.unpackb(request)
    except msgpack.DecodeError:
        return msgpack.packb(_error("invalid_params", "the request is not MessagePack"))
    if not isinstance(req, dict):
        return msgpack.packb(_error("invalid_params", "the request is not a map"))
    name = req.get("action")
    action = actions.get(name)
    if action is None:
        return msgpack.packb(_error("unknown_action", f"this plugin has no action {name!r}"))
    credential = req.get("credential")
    fields = credential.get("fields") if isinstance(credential, dict) else None
    try:
        answer = {"ok": action(req.get("params") or {}, fields)}
    except PluginError as exc:
        answer = _error(exc.code, str(exc))
    except Exception as exc:  # noqa: BLE001 - reported with its traceback; the host scrubs it
        answer = _failed(exc)
    return msgpack.packb(answer)


def _execute_text(self, request):
    """`execute-text`: the request's characters are its bytes; so are the answer's."""
    return self.execute(request.encode("latin-1")).decode("latin-1")


def _provide_execute_text(handler):
    """Make `execute_text` a concrete method of the generated protocol (a no-op for a world
    without it), so every `Handler` subclass has it without writing it."""
    if getattr(handler, "execute_text", None) is None:
        return
    handler.execute_text = _execute_text
    abstract = getattr(handler, "__abstractmethods__", None)
    if abstract is not None and "execute_text" in abstract:
        handler.__abstractmethods__ = frozenset(abstract - {"execute_text"})


_provide_execute_text(exports.Handler)


def _failed(exc):
    """The `failed` answer for an unexpected exception, with its traceback as `detail`."""
    kind = _name(type(exc))
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose str() fails still gets reported
        text = ""
    summary = f"{kind}: {text}" if text else kind
    answer = _error("failed", f"the action failed ({summary})")
    frames = []
    tb = exc.__traceback__
    if tb is not None:
        tb = tb.tb_next  # run() itself is not the author's code
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append({
            "module": str(tb.tb_frame.f_globals.get("__name__", "?")),
            "file": _short(code.co_filename),
            "line": tb.tb_lineno,
            "function": code.co_qualname if hasattr(code, "co_qualname") else code.co_name,
        })
        tb = tb.tb_next
    answer["error"]["detail"] = {"exception": kind, "message": text, "traceback": frames}
    return answer


def _name(cls):
    module = getattr(cls, "__module__", "")
    return cls.__qualname__ if module in ("builtins", "", None) else f"{module}.{cls.__qualname__}"


def _short(path):
    """A frame's file as its author knows it: componentize-py mounts each source directory as
    `/<n>/` and the standard library under `/python/`; those prefixes say nothing."""
    parts = str(path).split("/")
    if len(parts) > 2 and parts[0] == "" and parts[1].isdigit():
        return "/".join(parts[2:])
    if "/lib/python3" in path:
        rest = path.split("/lib/python3", 1)[1].split("/", 1)
        return "<stdlib>/" + rest[1] if len(rest) == 2 else path
    return str(path)
