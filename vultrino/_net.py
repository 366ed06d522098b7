"""HTTP transport: the only module that imports httpx (and httpcore, under it).

Two users: the built-in HTTP plugin, which needs one long-lived, thread-safe client that never
follows redirects on its own, never keeps cookies and never reads proxy settings or ``.netrc``
from the environment (so a credential goes exactly where its allowlist says); and the plugin
installer, which downloads archives to disk with a size cap.

The plugin's client also guards against server-side request forgery at connect time: each
connection resolves its host once, refuses it when any address is loopback, private,
link-local or otherwise not public (:func:`blocked_range`), and connects to exactly the
addresses it checked — there is no second lookup a rebinding DNS server could answer
differently. A request may reach such addresses only when its caller says the host was named
exactly (``private_ok``); those requests use a connection pool of their own, so a connection
opened for one never serves a request that was not allowed it.

httpx exceptions never leave this module: the client raises :class:`NetError` (translated by
its caller into the error that fits, for the plugin an ``ActionFailedError``) and
:func:`download` raises :class:`InstallError` directly.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from http.cookiejar import Cookie, CookieJar, CookiePolicy
from pathlib import Path
from typing import Any, BinaryIO, Literal

import httpcore
import httpx

from vultrino._fs import atomic_writer
from vultrino._version import __version__
from vultrino.errors import InstallError

__all__ = [
    "ApiClient",
    "BlockedAddressError",
    "HttpClient",
    "NetError",
    "OpenResponse",
    "Resolver",
    "Response",
    "UrlParts",
    "blocked_range",
    "download",
    "local_api",
    "make_client",
    "system_resolver",
    "url_parts",
]

USER_AGENT = f"vultrino/{__version__}"
NetErrorKind = Literal[
    "timeout", "connect", "too_large", "protocol", "invalid", "encoding", "blocked"
]
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_DOWNLOAD_REDIRECTS = 10
_CHUNK = 64 * 1024

#: The only content codings the client asks for: the ones decoded here, in bounded steps, so
#: the body can be scrubbed. Whatever a caller passes as Accept-Encoding is replaced by this.
ACCEPT_ENCODING = "gzip, deflate"
#: How many Content-Encoding layers a response may stack (``gzip, gzip`` is two).
MAX_CONTENT_ENCODINGS = 2
_CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


class NetError(Exception):
    """A transport failure. ``kind`` says which; the message never contains header values."""

    def __init__(self, kind: NetErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: NetErrorKind = kind


class BlockedAddressError(NetError):
    """A connection refused before it was made: ``host`` is, or resolves to, ``address``, which
    lies in a range that is not public (``why``, from :func:`blocked_range`)."""

    def __init__(self, host: str, address: str, why: str) -> None:
        subject = (
            f"{address} is" if _is_literal(host) else f"{host} resolves to {address}, which is"
        )
        super().__init__("blocked", f"{subject} {why}")
        self.host = host
        self.address = address
        self.why = why


@dataclass(frozen=True)
class Response:
    """A fully read response (the body already capped)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None


@dataclass(frozen=True)
class UrlParts:
    """How httpx itself reads a URL: used to prove it agrees with Vultrino's normaliser, then
    handed to :meth:`HttpClient.send` so the request goes out with that very reading (and the
    URL is parsed once)."""

    scheme: str
    host: str
    port: int
    path: str
    query: str
    userinfo: str
    url: str = ""
    parsed: Any = None  # the httpx.URL these parts were read from


class _NoCookies(CookiePolicy):
    """Refuse every cookie: one client serves every credential, so a jar would mix them."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: Cookie, request: urllib.request.Request) -> bool:
        return False

    def return_ok(self, cookie: Cookie, request: urllib.request.Request) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: urllib.request.Request) -> bool:
        return False

    def path_return_ok(self, path: str, request: urllib.request.Request) -> bool:
        return False


def url_parts(url: str) -> UrlParts:
    """Parse ``url`` with httpx's parser. Raises NetError("invalid") when httpx refuses it."""
    try:
        parsed = httpx.URL(url)
        raw_path = parsed.raw_path.decode("ascii")
        host = parsed.raw_host.decode("ascii")
        port = parsed.port
        scheme = parsed.scheme
        userinfo = parsed.userinfo.decode("ascii", "replace")
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise NetError("invalid", f"httpx cannot parse the URL: {exc}") from None
    path, _, query = raw_path.partition("?")
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme, 0)
    return UrlParts(scheme, host, port, path, query, userinfo, url, parsed)


# --- addresses a request may not reach through a broad pattern -------------------------------

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(*rows: tuple[str, str]) -> tuple[tuple[ipaddress.IPv4Network, str], ...]:
    return tuple((ipaddress.IPv4Network(net), name) for net, name in rows)


def _networks6(*rows: tuple[str, str]) -> tuple[tuple[ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.IPv6Network(net), name) for net, name in rows)


#: IPv4 ranges that are not public (IANA's special-purpose registry, RFC 6890 and successors).
_V4_BLOCKED = _networks(
    ("0.0.0.0/8", "'this network' and the unspecified address"),
    ("10.0.0.0/8", "private, RFC 1918"),
    ("100.64.0.0/10", "carrier-grade NAT, RFC 6598"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local, where cloud metadata services answer"),
    ("172.16.0.0/12", "private, RFC 1918"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation, TEST-NET-1"),
    ("192.88.99.0/24", "6to4 relay anycast, deprecated"),
    ("192.168.0.0/16", "private, RFC 1918"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation, TEST-NET-2"),
    ("203.0.113.0/24", "documentation, TEST-NET-3"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved, and the broadcast address"),
)
#: IPv6 ranges that are not public. Those that embed an IPv4 address (IPv4-mapped, NAT64,
#: 6to4) are judged by that address instead, in :func:`blocked_range`.
_V6_BLOCKED = _networks6(
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use NAT64, RFC 8215"),
    ("100::/64", "discard-only"),
    ("2001::/32", "Teredo"),
    ("2001::/23", "IETF protocol assignments"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing (SRv6) SIDs"),
    ("fc00::/7", "unique local, the IPv6 private range; AWS metadata is fd00:ec2::254"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local, deprecated"),
    ("ff00::/8", "multicast"),
)
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def blocked_range(address: str | _IPAddress) -> str | None:
    """Why ``address`` is not public — ``"in 127.0.0.0/8 (loopback)"`` — or None when it is.

    Refused: private, loopback, link-local (cloud metadata), carrier-grade NAT, documentation,
    benchmarking, multicast, reserved and unspecified ranges, and every IPv6 address outside
    global unicast (2000::/3). An IPv6 address that carries an IPv4 one (IPv4-mapped
    ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d``, 6to4 ``2002:AABB:CCDD::``) is judged by the
    IPv4 address it reaches. Python's own ``ipaddress`` flags are consulted last, so a range
    the tables above miss is still refused if Python knows it is not global.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(int(ip))
        for network, form in (
            (_V4_MAPPED, "IPv4-mapped"),
            (_NAT64, "NAT64"),
            (_SIX_TO_FOUR, "6to4"),
        ):
            if ip in network:
                shift = 80 if network is _SIX_TO_FOUR else 0
                inner = ipaddress.IPv4Address((int(ip) >> shift) & 0xFFFFFFFF)
                why = blocked_range(inner)
                return f"the {form} form of {inner}, {why}" if why else None
        for net6, name in _V6_BLOCKED:
            if ip in net6:
                return f"in {net6} ({name})"
        if ip not in _GLOBAL_UNICAST:
            return f"outside {_GLOBAL_UNICAST} (reserved: not global unicast)"
    else:
        for net4, name in _V4_BLOCKED:
            if ip in net4:
                return f"in {net4} ({name})"
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_link_local:
        return "not a public address (Python's ipaddress says it is not global)"
    return None


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


#: Resolves ``(host, port)`` to IP addresses as text, in the order to try them.
Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver (``getaddrinfo``): IPv4 and IPv6 addresses, duplicates dropped."""
    out: list[str] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if family in (socket.AF_INET, socket.AF_INET6):
            address = str(sockaddr[0])
            if address not in out:
                out.append(address)
    return out


class _CheckedBackend(httpcore.NetworkBackend):
    """Opens every connection of one pool: resolves the host once, refuses it when any of its
    addresses is not public (unless ``private_ok``), then connects to those very addresses —
    numeric ones, so nothing is looked up a second time."""

    def __init__(self, resolver: Resolver, *, private_ok: bool) -> None:
        self._resolver = resolver
        self._private_ok = private_ok
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._resolve(host, port)
        if not self._private_ok:
            for address in addresses:
                why = blocked_range(address)
                if why is not None:
                    raise BlockedAddressError(host, address, why)
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return self._sockets.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:  # the next address may answer
                failure = exc
        assert failure is not None  # _resolve never returns an empty list
        raise failure

    def _resolve(self, host: str, port: int) -> list[str]:
        if _is_literal(host):
            return [host]
        try:
            found = list(self._resolver(host, port))
        except (OSError, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise httpcore.ConnectError(f"cannot resolve {host}: {reason}") from None
        addresses = [a for a in found if _is_literal(a)]
        if not addresses or len(addresses) != len(found):
            raise httpcore.ConnectError(f"{host} resolves to no usable IP address")
        return addresses

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


class _CheckedTransport(httpx.HTTPTransport):
    """httpx's own transport, over a connection pool whose connections ``backend`` opens."""

    def __init__(
        self, ssl_context: ssl.SSLContext, limits: httpx.Limits, backend: _CheckedBackend
    ) -> None:
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


_PRIVATE_OK = "vultrino.private_ok"


class _PoolPerTrust(httpx.BaseTransport):
    """Two pools: ``public`` connects only to public addresses; ``any`` serves requests whose
    host was named exactly, and may connect anywhere. A pooled connection is reused only by
    requests that would have been allowed to open it."""

    def __init__(self, public: httpx.BaseTransport, any_address: httpx.BaseTransport) -> None:
        self._public = public
        self._any = any_address

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        inner = self._any if request.extensions.get(_PRIVATE_OK) is True else self._public
        return inner.handle_request(request)

    def close(self) -> None:
        self._public.close()
        self._any.close()


class HttpClient:
    """Connection pools safe to share between threads. Never follows redirects.

    Every connection is opened through the address check (the module docstring); ``resolver``
    replaces the system's name resolution (tests point names at loopback addresses with it).
    There is no proxy support: through a proxy, the address connected to would be the proxy's
    and the check would see nothing of where the request goes.
    """

    def __init__(
        self,
        *,
        verify: bool | ssl.SSLContext = True,
        user_agent: str = USER_AGENT,
        max_connections: int = 20,
        resolver: Resolver | None = None,
    ) -> None:
        resolve = system_resolver if resolver is None else resolver
        context = httpx.create_ssl_context(verify=verify, trust_env=False)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=10)
        transport = _PoolPerTrust(
            public=_CheckedTransport(context, limits, _CheckedBackend(resolve, private_ok=False)),
            any_address=_CheckedTransport(
                context, limits, _CheckedBackend(resolve, private_ok=True)
            ),
        )
        self._client = httpx.Client(
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            cookies=CookieJar(policy=_NoCookies()),
            headers={"User-Agent": user_agent, "Accept-Encoding": ACCEPT_ENCODING},
        )

    def send(
        self,
        method: str,
        url: str | UrlParts,
        *,
        headers: Sequence[tuple[str, str]],
        content: bytes | None,
        timeout: float,
        max_bytes: int,
        private_ok: bool = False,
    ) -> Response:
        """Send one request and read at most ``max_bytes`` of (decoded) body.

        Unless ``private_ok`` (the caller's word that the host was named exactly), the request
        is refused with :class:`BlockedAddressError` before any connection when its host is, or
        resolves to, an address that is not public; nothing is sent then.

        The request asks for :data:`ACCEPT_ENCODING` only (an Accept-Encoding in ``headers`` is
        dropped). The body is decoded here, incrementally: no step inflates more than 64 KiB, so
        a compression bomb costs at most ``max_bytes`` plus a chunk of memory before it is
        refused. A Content-Encoding this module does not decode, or more than
        :data:`MAX_CONTENT_ENCODINGS` layers, is an error (kind ``"encoding"``): an undecoded
        body could not be scrubbed, so none is returned. ``timeout`` bounds the whole exchange,
        body included, so a server that drips bytes forever is cut off too. Raises NetError.
        """
        deadline = time.monotonic() + timeout
        sent = [(n, v) for n, v in headers if n.lower() != "accept-encoding"]
        if isinstance(url, UrlParts):  # read by url_parts already: not parsed again
            target: Any = url.parsed if url.parsed is not None else url.url
            url = url.url
        else:
            target = url
        with _mapped_errors(url):
            request = self._client.build_request(
                method,
                target,
                headers=sent,
                content=content,
                timeout=httpx.Timeout(timeout),
                extensions={_PRIVATE_OK: True} if private_ok else None,
            )
            response = self._client.send(request, stream=True)
            try:
                # The headers read once (each lookup in httpx's Headers re-derives their
                # encoding): the length and codings come from this list.
                items = response.headers.multi_items()
                _check_declared_length(items, max_bytes)
                layers = _decoders(
                    [
                        coding.strip()
                        for name, value in items
                        if name.lower() == "content-encoding"
                        for coding in value.split(",")
                    ]
                )
                # The chunks as they arrive (no re-chunking copy), joined once at the end.
                chunks: list[bytes] = []
                size = 0
                for raw in response.iter_raw():
                    for chunk in _decode(layers, 0, raw) if layers else (raw,):
                        size += len(chunk)
                        if size > max_bytes:
                            raise NetError(
                                "too_large", f"the response body is larger than {max_bytes} bytes"
                            )
                        if time.monotonic() > deadline:
                            raise NetError(
                                "timeout", f"the response took longer than {timeout:g} s to arrive"
                            )
                        chunks.append(chunk)
            finally:
                response.close()
            return Response(
                status=response.status_code,
                reason=response.reason_phrase,
                headers=items,
                body=chunks[0] if len(chunks) == 1 else b"".join(chunks),
                url=str(response.url),
            )

    def open(
        self,
        method: str,
        url: str | UrlParts,
        *,
        headers: Sequence[tuple[str, str]],
        content: bytes | Iterable[bytes] | None,
        length: int | None = None,
        timeout: float,
        private_ok: bool = False,
    ) -> OpenResponse:
        """Send one request and return as soon as the response's head has arrived: its body
        is read by :meth:`OpenResponse.chunks`, decoded as :meth:`send` decodes it, never
        held whole. ``content`` may be an iterable of chunks (sent as they come, with
        ``Content-Length: length`` when it is known, else chunked). ``timeout`` bounds the
        whole exchange, both bodies included. The caller closes the response. Raises
        NetError (the address check, the codings, the network)."""
        deadline = time.monotonic() + timeout
        sent = [(n, v) for n, v in headers if n.lower() != "accept-encoding"]
        if length is not None:
            sent.append(("Content-Length", str(length)))
        if isinstance(url, UrlParts):
            target: Any = url.parsed if url.parsed is not None else url.url
            url = url.url
        else:
            target = url
        body: Any = content
        if content is not None and not isinstance(content, bytes):
            body = _until(deadline, timeout, content)
        with _mapped_errors(url):
            request = self._client.build_request(
                method,
                target,
                headers=sent,
                content=body,
                timeout=httpx.Timeout(timeout),
                extensions={_PRIVATE_OK: True} if private_ok else None,
            )
            response = self._client.send(request, stream=True)
            try:
                items = response.headers.multi_items()
                layers = _decoders(
                    [
                        coding.strip()
                        for name, value in items
                        if name.lower() == "content-encoding"
                        for coding in value.split(",")
                    ]
                )
            except BaseException:
                response.close()
                raise
        return OpenResponse(
            response.status_code, response.reason_phrase, items, url, response, layers, deadline
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _until(deadline: float, timeout: float, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks``, refused once the exchange's deadline has passed."""
    for chunk in chunks:
        if time.monotonic() > deadline:
            raise NetError("timeout", f"the request body took longer than {timeout:g} s to send")
        if chunk:
            yield bytes(chunk)


class OpenResponse:
    """A response whose head has arrived and whose body is read as it comes
    (:meth:`HttpClient.open`): ``headers`` as sent by the server (its Content-Encoding and
    Content-Length describe the body on the wire, not the decoded chunks)."""

    def __init__(  # noqa: PLR0917 - made by HttpClient.open only
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        url: str,
        response: httpx.Response,
        layers: list[_Inflater],
        deadline: float,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.url = url
        self._response = response
        self._layers = layers
        self._deadline = deadline

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    def chunks(self) -> Iterator[bytes]:
        """The decoded body, chunk by chunk (at most 64 KiB of inflated data a step).
        Raises NetError (a timeout past the deadline, a broken coding, the network)."""
        layers = self._layers
        with _mapped_errors(self.url):
            for raw in self._response.iter_raw():
                for chunk in _decode(layers, 0, raw) if layers else (raw,):
                    if time.monotonic() > self._deadline:
                        raise NetError("timeout", "the response took too long to arrive")
                    yield chunk

    def close(self) -> None:
        with contextlib.suppress(httpx.HTTPError, OSError):
            self._response.close()


def make_client(
    *,
    verify: bool | ssl.SSLContext = True,
    user_agent: str = USER_AGENT,
    resolver: Resolver | None = None,
) -> HttpClient:
    """The client factory: one per long-lived user (an HttpPlugin holds one for its life)."""
    return HttpClient(verify=verify, user_agent=user_agent, resolver=resolver)


def _check_declared_length(items: list[tuple[str, str]], max_bytes: int) -> None:
    declared = next((v for n, v in items if n.lower() == "content-length"), None)
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise NetError(
            "too_large",
            f"the response body is {int(declared)} bytes, more than the {max_bytes}-byte cap",
        )


class _Inflater:
    """One gzip or deflate layer of a response body, decoded at most ``limit`` bytes a step.

    zlib's ``max_length`` keeps what it could not yet inflate in ``unconsumed_tail``, so memory
    never holds more than one step of output. A gzip body may have several members; bytes after
    the end of the (last) stream are ignored, as browsers and httpx do. ``deflate`` accepts the
    zlib wrapper RFC 9110 specifies and the raw deflate some servers send instead.
    """

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._pending = b""
        self._done = False
        self._obj: Any = self._gzip() if coding == "gzip" else None  # deflate: after 2 bytes

    @staticmethod
    def _gzip() -> Any:
        return zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        if not self._done:
            self._pending += data

    def pull(self, limit: int) -> bytes:
        """Up to ``limit`` decoded bytes; ``b""`` when it needs more input."""
        while self._pending and not self._done:
            if self._obj is None:
                if len(self._pending) < 2:
                    return b""
                zlib_wrapped = int.from_bytes(self._pending[:2], "big") % 31 == 0 and (
                    self._pending[0] & 0x0F == 8
                )
                self._obj = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
            try:
                out: bytes = self._obj.decompress(self._pending, limit)
            except zlib.error:
                raise NetError(
                    "encoding",
                    f"the response body is not valid {self.coding} data, though its "
                    f"Content-Encoding says so",
                ) from None
            if self._obj.eof:
                rest: bytes = self._obj.unused_data
                if self.coding == "gzip" and rest.startswith(b"\x1f\x8b"):
                    self._obj, self._pending = self._gzip(), rest
                else:
                    self._pending, self._done = b"", True
            else:
                self._pending = self._obj.unconsumed_tail
            if out:
                return out
        return b""


def _decoders(codings: list[str]) -> list[_Inflater]:
    """The layers to undo, outermost (last applied) first. Raises NetError("encoding")."""
    names = [c.strip().lower() for c in codings]
    names = [n for n in names if n and n != "identity"]
    if len(names) > MAX_CONTENT_ENCODINGS:
        raise NetError(
            "encoding",
            f"the response stacks {len(names)} Content-Encoding layers; at most "
            f"{MAX_CONTENT_ENCODINGS} are decoded, so no body is returned",
        )
    for name in names:
        if name not in _CODINGS:
            shown = name if len(name) <= 40 else name[:37] + "..."
            raise NetError(
                "encoding",
                f"the server answered with Content-Encoding {shown!r}, which Vultrino does not "
                f"decode (it asks for {ACCEPT_ENCODING} only), so no body is returned",
            )
    return [_Inflater(_CODINGS[n]) for n in reversed(names)]


def _decode(layers: Sequence[_Inflater], index: int, data: bytes) -> Iterator[bytes]:
    """``data`` passed through ``layers[index:]``, in steps of at most one chunk each."""
    if index == len(layers):
        if data:
            yield data
        return
    layer = layers[index]
    layer.feed(data)
    while out := layer.pull(_CHUNK):
        yield from _decode(layers, index + 1, out)


@contextlib.contextmanager
def _mapped_errors(url: str) -> Iterator[None]:
    """Translate httpx (and socket/TLS) failures into NetError, naming the host, not headers
    (the URL is read for that only when something failed)."""
    try:
        yield
    except httpx.TimeoutException:
        raise NetError("timeout", f"timed out talking to {_origin(url)}") from None
    except httpx.ConnectError as exc:
        raise NetError("connect", f"could not connect to {_origin(url)}: {_reason(exc)}") from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise NetError("invalid", f"httpx refused the URL for {_origin(url)}: {exc}") from None
    except httpx.HTTPError as exc:
        raise NetError(
            "protocol", f"HTTP error talking to {_origin(url)}: {_reason(exc)}"
        ) from None
    except (httpx.StreamError, httpx.CookieConflict) as exc:
        raise NetError(
            "protocol", f"HTTP error talking to {_origin(url)}: {_reason(exc)}"
        ) from None
    except UnicodeError:
        raise NetError("invalid", f"a header for {_origin(url)} is not ASCII/Latin-1") from None
    except OSError as exc:
        raise NetError(
            "connect", f"network error talking to {_origin(url)}: {exc.strerror}"
        ) from None


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _origin(url: str) -> str:
    try:
        parsed = httpx.URL(url)
        return f"{parsed.scheme}://{parsed.netloc.decode('ascii', 'replace')}"
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return "the server"


# --- downloads (installer) -------------------------------------------------------------------


def download(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 30.0,
) -> None:
    """Stream ``url`` to ``dest`` (0600; written beside it and renamed when complete).

    Follows up to 10 redirects, but never from https to http. The body is saved exactly as
    served (``Accept-Encoding: identity``). ``progress(done, total)`` is called as bytes arrive;
    ``total`` is None when the server does not say. Raises InstallError on an HTTP error status,
    a network failure, a body over ``max_bytes``, or a refused redirect; ``dest`` is then absent.
    """
    if not url.lower().startswith(("http://", "https://")):
        raise InstallError(f"cannot download {_safe_url(url)}: only http(s) URLs are supported")
    current = url
    with httpx.Client(
        follow_redirects=False,
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
    ) as client:
        for _ in range(MAX_DOWNLOAD_REDIRECTS + 1):
            with _install_errors(current), client.stream("GET", current) as response:
                if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
                    current = _next_download_url(current, response.headers["location"])
                    continue
                if response.status_code >= 300:
                    raise InstallError(
                        f"download of {_safe_url(current)} failed: HTTP "
                        f"{response.status_code} {response.reason_phrase}"
                    )
                with atomic_writer(dest, mode=0o600) as fh:
                    _stream_to(response, fh, current, max_bytes, progress)
            return
        raise InstallError(
            f"download of {_safe_url(url)} was redirected more than "
            f"{MAX_DOWNLOAD_REDIRECTS} times; give the final URL instead"
        )


def _next_download_url(current: str, location: str) -> str:
    try:
        target = httpx.URL(current).join(location)
    except (httpx.InvalidURL, UnicodeError, ValueError):
        raise InstallError(
            f"download of {_safe_url(current)} redirected to an invalid URL"
        ) from None
    if target.scheme not in ("http", "https"):
        raise InstallError(f"download of {_safe_url(current)} redirected to a non-HTTP URL")
    if httpx.URL(current).scheme == "https" and target.scheme == "http":
        raise InstallError(
            f"download of {_safe_url(current)} redirected from https to plain http "
            f"({_safe_url(str(target))}); refused"
        )
    return str(target)


def _stream_to(
    response: httpx.Response,
    fh: BinaryIO,
    url: str,
    max_bytes: int,
    progress: Callable[[int, int | None], None] | None,
) -> None:
    declared = response.headers.get("content-length")
    total = int(declared) if declared and declared.isdigit() else None
    if total is not None and total > max_bytes:
        raise InstallError(
            f"download of {_safe_url(url)} is {total} bytes, over the {max_bytes}-byte limit"
        )
    done = 0
    for chunk in response.iter_raw(_CHUNK):
        done += len(chunk)
        if done > max_bytes:
            raise InstallError(
                f"download of {_safe_url(url)} is over the {max_bytes}-byte limit; refused"
            )
        fh.write(chunk)
        if progress is not None:
            progress(done, total)


@contextlib.contextmanager
def _install_errors(url: str) -> Iterator[None]:
    try:
        yield
    except InstallError:
        raise
    except httpx.TimeoutException:
        raise InstallError(f"download of {_safe_url(url)} timed out") from None
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        raise InstallError(f"download of {_safe_url(url)} failed: {_reason(exc)}") from None
    except OSError as exc:
        raise InstallError(f"download of {_safe_url(url)} failed: {exc.strerror or exc}") from None


def _safe_url(url: str) -> str:
    """``url`` without userinfo or query (either may carry a token)."""
    try:
        parsed = httpx.URL(url)
        host = parsed.netloc.decode("ascii", "replace").rpartition("@")[2]
        return f"{parsed.scheme}://{host}{parsed.path}"
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return "the URL"


# --- the local server's REST API -------------------------------------------------------------


def local_api(
    method: str,
    url: str,
    *,
    token: str,
    body: Any = None,
    cafile: str | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """One JSON request to a `vultrino serve` on this machine (the approvals CLI): (status,
    the decoded JSON body or None). ``cafile`` is the server's own TLS certificate, trusted
    besides the system's. A failure to connect is NetError ``connect``."""
    verify: bool | ssl.SSLContext = True
    if cafile:
        context = ssl.create_default_context()
        context.load_verify_locations(cafile)
        verify = context
    try:
        with httpx.Client(verify=verify, timeout=timeout, trust_env=False) as client:
            r = client.request(
                method,
                url,
                json=body,
                headers={"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT},
            )
    except httpx.TimeoutException as exc:
        raise NetError("timeout", f"{_origin(url)} did not answer in {timeout:g} s") from exc
    except httpx.HTTPError as exc:
        raise NetError("connect", f"cannot reach {_origin(url)}: {_reason(exc)}") from exc
    try:
        data = r.json()
    except ValueError:
        data = None
    return r.status_code, data


class ApiClient:
    """A keep-alive JSON client of a `vultrino serve` REST API (the remote CLI): one
    connection for every call of a command. The key is sent as ``Authorization: Bearer``
    and kept nowhere else: it is in no message, no repr and no log line of this class.
    Proxy settings and ``.netrc`` in the environment are ignored, as everywhere here."""

    def __init__(self, base_url: str, key: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._client = httpx.Client(
            timeout=timeout,
            trust_env=False,
            headers={"Authorization": f"Bearer {key}", "User-Agent": USER_AGENT},
        )

    def __repr__(self) -> str:
        return f"ApiClient({self.base_url!r})"

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, the decoded JSON body or None, the response headers, lower-cased) of one
        request. Failing to connect is NetError ``connect``; no answer in time, ``timeout``;
        a URL that is not one, ``invalid``."""
        url = self.base_url + path
        try:
            r = self._client.request(method, url, json=body, params=query)
        except httpx.TimeoutException as exc:
            raise NetError(
                "timeout", f"{_origin(url)} did not answer in {self._timeout:g} s"
            ) from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise NetError("invalid", f"{self.base_url!r} is not an http(s) URL") from exc
        except httpx.HTTPError as exc:
            raise NetError("connect", f"cannot reach {_origin(url)}: {_reason(exc)}") from exc
        except UnicodeError:  # the key (never shown) or a header is not ASCII
            raise NetError("encoding", "the API key is not plain ASCII text") from None
        try:
            data = r.json()
        except ValueError:
            data = None
        return r.status_code, data, {k.lower(): v for k, v in r.headers.items()}

    def close(self) -> None:
        self._client.close()
