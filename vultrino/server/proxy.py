"""The forward proxy of `vultrino serve --proxy`: unmodified tools use stored credentials.

::

    curl -H 'X-Vultrino-Credential: github' -H 'Proxy-Authorization: Bearer vk_…' \\
         http://127.0.0.1:7878/https://api.github.com/user

The target URL is the request's path (its query too); the credential is named by
``X-Vultrino-Credential`` (its alias or id); who is calling is an API key, agent token or the
server token, given as ``Proxy-Authorization: Bearer …``, ``X-Vultrino-Key: …``, or — the
original Vultrino's form, and what an SDK's ``api_key`` setting sends — ``Authorization:
Bearer vk_…`` / ``vagent_…``. Identity is settled here, at the edge, exactly as the REST API
settles it (:mod:`vultrino.server.auth`).

Every request is then **one** call of the built-in HTTP plugin's ``request`` action through
the call pipeline (:meth:`vultrino.pipeline.Pipeline.call`), as the key's profile, with the
approvals inbox as approver and ``source: "proxy"`` in the audit record: the credential's
allowlist, the profile's URL patterns, the address check on every redirect hop, rate limits,
approvals, scrubbing and audit are the ``http_request`` tool's, never a second path. The call
streams (:class:`~vultrino.plugins.base.Streaming`): a request body over
:data:`SMALL_BODY` is sent upstream as it arrives, and the response body comes back as it
arrives, scrubbed chunk by chunk; neither is held whole.

Vultrino's own headers (``X-Vultrino-*``), the proxy key (wherever it is repeated), a
``Bearer vk_…``/``vagent_…`` Authorization, hop-by-hop headers (RFC 9110
§7.6.1: ``Connection`` and those it names, ``Keep-Alive``, ``TE``, ``Trailer``,
``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``), ``Host``, ``Content-Length``, ``Expect`` and
``Accept-Encoding`` are not forwarded; every other header goes as the plugin's ``headers``
parameter, so its rules apply (``Range`` and ``X-Forwarded-*`` are refused, for instance).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from starlette.types import Message, Receive, Scope, Send

from vultrino._net import NetError
from vultrino.core import Vultrino
from vultrino.errors import (
    ActionFailedError,
    AuthenticationError,
    MissingApiKeyError,
    RequestError,
    VultrinoError,
)
from vultrino.plugins.base import StreamedBody, Streaming
from vultrino.server.api import error_status
from vultrino.server.auth import Authenticator, Identity
from vultrino.server.inbox import Inbox

__all__ = ["HOP_BY_HOP", "PROXY_THREADS", "SMALL_BODY", "Proxy"]

logger = logging.getLogger("vultrino.server.proxy")

#: A request body up to this size is read whole and sent as the call's ``body_base64``
#: parameter (so an approval prompt can show it, and a redirect can send it again); a longer
#: one is streamed upstream as it arrives.
SMALL_BODY = 64 * 1024

#: How many of the proxy's requests may run a call or read a body at once (each in a worker
#: thread); more wait for a thread.
PROXY_THREADS = 64

#: Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded either way.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
#: Request headers the proxy itself consumes or the HTTP client sets.
_NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "expect", "accept-encoding"}
_OWN_HEADERS = "x-vultrino-"
_CREDENTIAL_HEADER = "x-vultrino-credential"
_KEY_HEADER = "x-vultrino-key"
_TIMEOUT_HEADER = "x-vultrino-timeout"
_KEY_PREFIXES = ("vk_", "vagent_")
_USAGE = (
    "send the target URL as the path (http://PROXY/https://api.example.com/path), the "
    "credential's alias in X-Vultrino-Credential and your key in Proxy-Authorization: "
    "Bearer KEY (docs/proxy.md)"
)


def _error(
    status: int, code: str, message: str, kind: str, extra: dict[str, str] | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"error": message, "code": code, "type": kind}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    for name, value in (extra or {}).items():
        headers.append((name.encode(), value.encode("latin-1")))
    return status, headers, body


def refusal(exc: VultrinoError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The proxy's answer to an error: the REST API's table (:data:`vultrino.server.api.
    ERRORS`), except that a missing or refused key is 407 (Proxy Authentication Required)
    and a failure upstream (no connection, a timeout, a broken body) is 502."""
    status, code, message = error_status(exc)
    extra: dict[str, str] = {}
    if isinstance(exc, AuthenticationError):
        status = 407
        extra["Proxy-Authenticate"] = 'Bearer realm="vultrino"'
        message = f"{message}; {_USAGE}"
    elif isinstance(exc, ActionFailedError):
        status, code = 502, "upstream_error"
    retry = getattr(exc, "retry_after", None)
    if isinstance(retry, (int, float)) and status == 429:
        extra["Retry-After"] = str(max(1, int(retry + 0.999)))
    return _error(status, code, message, type(exc).__name__, extra)


class Proxy:
    """The ASGI application of the proxy's port, over one facade, its authenticator and the
    approvals inbox (shared with the REST API in the same process)."""

    def __init__(self, v: Vultrino, auth: Authenticator, inbox: Inbox) -> None:
        self.v = v
        self.auth = auth
        self.inbox = inbox
        # A streamed upload holds a worker thread for as long as it lasts: the proxy's calls
        # take their threads from a limiter of their own, so slow uploads can never starve
        # the REST API's and the web UI's calls of the shared default one.
        self.limiter = anyio.CapacityLimiter(PROXY_THREADS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, headers, body = await self._handle(scope, receive, send)
        except VultrinoError as exc:
            status, headers, body = refusal(exc)
        if status == 0:  # streamed already
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        pairs = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        given = dict(pairs)
        url = _target(scope)
        key, key_header = _proxy_key(given)
        alias = given.get(_CREDENTIAL_HEADER, "").strip()
        timeout = given.get(_TIMEOUT_HEADER)
        if key is None:
            raise MissingApiKeyError("the proxy needs a key to say who is calling")
        who = await anyio.to_thread.run_sync(self.auth.identify, f"Bearer {key}")
        if not alias:
            return _error(
                400,
                "missing_credential",
                f"X-Vultrino-Credential header is required: the alias (or id) of the credential "
                f"to use; {_USAGE}",
                "RequestError",
            )
        params: dict[str, Any] = {
            "method": scope["method"],
            "url": url,
            "headers": _forwarded(pairs, key_header, key),
        }
        if timeout is not None:
            try:
                params["timeout"] = float(timeout)
            except ValueError:
                raise RequestError(
                    f"X-Vultrino-Timeout must be a number of seconds, not {timeout[:40]!r}"
                ) from None
        first, more = await _read_some(receive)
        body_done = not more
        stream = Streaming()
        if more:
            length = given.get("content-length")
            stream = Streaming(
                body=_body_chunks(first, receive),
                length=int(length) if length and length.isdigit() else None,
            )
            body_done = False
        elif first:
            params["body_base64"] = base64.b64encode(first).decode("ascii")
        client = scope.get("client")
        answer = await anyio.to_thread.run_sync(
            self._call,
            who,
            alias,
            params,
            stream,
            client[0] if client else None,
            limiter=self.limiter,
        )
        await _relay(answer, receive, send, watch=body_done, limiter=self.limiter)
        return 0, [], b""

    def _call(
        self,
        who: Identity,
        alias: str,
        params: dict[str, Any],
        stream: Streaming,
        client: str | None,
    ) -> StreamedBody:
        if who.profile is None:
            result = self.v.execute(
                alias, "request", params, plugin="http", source="proxy", stream=stream
            )
        else:
            scope = self.v.as_agent(
                who.profile,
                approver=self.inbox.approver(who.name if who.kind == "key" else None, who.key_id),
                key=who.label if who.kind == "key" else None,
                client=client,
            )
            result = scope.execute(
                alias, "request", params, plugin="http", source="proxy", stream=stream
            )
        assert isinstance(result, StreamedBody)
        return result


def _target(scope: Scope) -> str:
    """The target URL: the path as sent (not percent-decoded), its query, with a ``//``
    some clients fold to ``/`` put back."""
    raw = scope.get("raw_path") or scope["path"].encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    target = path[1:]
    for scheme in ("https:/", "http:/"):
        if target.startswith(scheme) and not target.startswith(scheme + "/"):
            target = scheme + "/" + target[len(scheme) :]
    if not target.lower().startswith(("http://", "https://")):
        raise RequestError(
            f"the path {path[:80]!r} is not a target URL (this is not an HTTP_PROXY-style "
            f"proxy, and CONNECT tunnels are not offered): {_USAGE}"
        )
    query = scope.get("query_string") or b""
    return f"{target}?{query.decode('latin-1')}" if query else target


def _proxy_key(headers: dict[str, str]) -> tuple[str | None, str | None]:
    """(the key, the header it came in) — Proxy-Authorization, X-Vultrino-Key, or an
    Authorization whose bearer value is a Vultrino key or agent token."""
    proxy = headers.get("proxy-authorization")
    if proxy is not None:
        scheme, _, value = proxy.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise MissingApiKeyError("Proxy-Authorization must be `Bearer KEY`")
        return value.strip(), "proxy-authorization"
    key = headers.get(_KEY_HEADER)
    if key is not None and key.strip():
        return key.strip(), _KEY_HEADER
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip().startswith(_KEY_PREFIXES):
            return value.strip(), "authorization"
    return None, None


def _forwarded(
    pairs: list[tuple[str, str]], key_header: str | None, key: str | None = None
) -> dict[str, str]:
    """The request headers sent upstream (names as received, lower-case; repeated ones
    joined with ``, ``). A Vultrino key never leaves: not the header the key came in, not an
    ``Authorization: Bearer vk_…`` / ``vagent_…`` beside it (an SDK's ``api_key`` setting
    sends one while the key goes in ``Proxy-Authorization``), nor any header whose value
    holds the key that authenticated the request (``api-key: vk_…``)."""
    named: set[str] = set()
    for name, value in pairs:
        if name == "connection":
            named.update(t.strip().lower() for t in value.split(",") if t.strip())
    out: dict[str, str] = {}
    for name, value in pairs:
        if (
            name in _NOT_FORWARDED
            or name in named
            or name.startswith(_OWN_HEADERS)
            or name == key_header
            or (key is not None and key in value)
            or (name == "authorization" and _is_vultrino_bearer(value))
        ):
            continue
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def _is_vultrino_bearer(value: str) -> bool:
    scheme, _, token = value.partition(" ")
    return scheme.lower() == "bearer" and token.strip().startswith(_KEY_PREFIXES)


async def _read_some(receive: Receive) -> tuple[bytes, bool]:
    """Up to :data:`SMALL_BODY` bytes of the request body (a message may bring more), and
    whether more follows."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError("the client went away before its request body arrived")
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
        if not more or size > SMALL_BODY:
            return b"".join(parts), more


def _body_chunks(first: bytes, receive: Receive) -> Iterator[bytes]:
    """The request body, read from the client as the HTTP client sends it upstream (in the
    worker thread the call runs in)."""
    if first:
        yield first

    async def next_message() -> Message:
        return await receive()

    while True:
        message = anyio.from_thread.run(next_message)
        if message["type"] == "http.disconnect":
            raise NetError("protocol", "the client stopped sending the request body")
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _relay(
    answer: StreamedBody,
    receive: Receive,
    send: Send,
    *,
    watch: bool,
    limiter: anyio.CapacityLimiter,
) -> None:
    """Send ``answer`` to the client as it is read; close it in any case (which writes the
    call's audit record). With ``watch`` (the request body was read whole) a client that
    goes away stops the upstream read."""
    try:
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in answer.headers
            if name not in HOP_BY_HOP
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        chunks = answer.chunks()
        async with anyio.create_task_group() as tg:
            if watch:
                tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
            while True:
                try:
                    chunk = await anyio.to_thread.run_sync(next, chunks, None, limiter=limiter)
                except VultrinoError as exc:  # scrubbed by the plugin
                    # The head is gone: the only honest answer left is to drop the connection,
                    # which returning without the last body message does.
                    logger.warning("proxy: the answer broke off: %s", exc)
                    break
                if chunk is None:
                    await send({"type": "http.response.body", "body": b""})
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(answer.close, limiter=limiter)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
