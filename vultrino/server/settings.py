"""What `vultrino serve` listens on and whom it trusts: checked before anything is bound.

:func:`settings` merges the command line over ``[server]`` in config.toml and refuses what is
unsafe (:class:`~vultrino.errors.ServerConfigError`): a bind address that is not loopback
without TLS (unless ``--insecure-http``), a certificate without its key, a file that cannot be
read, a malformed address or proxy. Standard library only.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from vultrino.config import Config
from vultrino.errors import ServerConfigError

__all__ = ["LOOPBACK_NAMES", "ServerSettings", "is_loopback", "parse_bind", "settings"]

#: Host names that always reach this machine only: allowed in a Host header whatever the bind.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")


@dataclass(frozen=True)
class ServerSettings:
    host: str  # as bound: an IP address or a name
    port: int
    tls_cert: Path | None
    tls_key: Path | None
    insecure_http: bool
    trusted_proxies: tuple[str, ...]
    allowed_hosts: tuple[str, ...]  # Host/Origin names accepted (lowercase, no port)
    approval_wait_s: float
    shutdown_grace_s: float
    #: where the forward proxy listens (``--proxy``); None: no proxy
    proxy: tuple[str, int] | None = None
    #: seconds a request's line and headers may take to arrive (``[server] header_timeout_s``)
    header_timeout_s: float = 30.0

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def public(self) -> bool:
        return not is_loopback(self.host)

    def url(self, port: int | None = None, host: str | None = None) -> str:
        """Where a client on this machine reaches the server (or, given ``host``, the
        proxy)."""
        host = self.host if host is None else host
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming the wildcard, not binding it
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port if port is None else port}"


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6; ``:PORT`` means 127.0.0.1)."""
    raw = text.strip()
    host, sep, port_text = raw.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ServerConfigError(
            f"--bind {text!r} is not HOST:PORT (for example 127.0.0.1:7879, [::1]:7879, "
            "0.0.0.0:443; port 0 picks a free one)"
        )
    host = host.strip("[]") or "127.0.0.1"
    if any(c.isspace() or c in "/@?#" for c in host):
        raise ServerConfigError(f"--bind {text!r}: {host!r} is not a host name or address")
    return host, int(port_text)


def _readable(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not os.access(p, os.R_OK) or not p.is_file():
        raise ServerConfigError(f"{what} {p}: cannot read it (missing, or not a readable file)")
    return p


def _proxy(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise ServerConfigError(
            f"--trusted-proxy {text!r} is not an IP address or network (for example 127.0.0.1 "
            "or 10.0.0.0/8)"
        ) from None


def settings(
    config: Config,
    *,
    bind: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    insecure_http: bool = False,
    trusted_proxies: tuple[str, ...] = (),
    proxy_listen: str | None = None,
) -> ServerSettings:
    """The settings of one run: the flags over ``[server]``, checked (see the docstring).
    ``proxy_listen``: ``HOST:PORT`` of the forward proxy (``--proxy``), held to the same
    rule as the bind address."""
    host, port = parse_bind(bind or config.server_bind)
    proxy = None
    if proxy_listen is not None:
        proxy = parse_bind(proxy_listen)
    cert_text = tls_cert or config.server_tls_cert
    key_text = tls_key or config.server_tls_key
    if bool(cert_text) != bool(key_text):
        raise ServerConfigError(
            "TLS needs both a certificate and its private key: give --tls-cert and --tls-key "
            "(or tls_cert and tls_key in [server])"
        )
    cert = _readable(cert_text, "--tls-cert") if cert_text else None
    key = _readable(key_text, "--tls-key") if key_text else None
    if not is_loopback(host) and cert is None and not insecure_http:
        raise ServerConfigError(
            f"refusing to serve plain HTTP on {host}, which is not a loopback address: API keys "
            "and results would cross the network in the clear. Give --tls-cert and --tls-key, "
            "bind 127.0.0.1 behind a TLS reverse proxy (docs/server.md), or pass "
            "--insecure-http if the network is trusted"
        )
    if proxy is not None and not is_loopback(proxy[0]) and cert is None and not insecure_http:
        raise ServerConfigError(
            f"refusing to run the forward proxy in plain HTTP on {proxy[0]}, which is not a "
            "loopback address: keys, requests and responses would cross the network in the "
            "clear. Keep --proxy-listen on 127.0.0.1, give --tls-cert and --tls-key, or pass "
            "--insecure-http if the network is trusted"
        )
    proxies = tuple(_proxy(p) for p in (trusted_proxies or config.trusted_proxies))
    hosts = {n.strip("[]").lower() for n in LOOPBACK_NAMES}
    for bound in (host, proxy[0] if proxy else "0.0.0.0"):  # noqa: S104
        if bound not in ("0.0.0.0", "::"):  # noqa: S104
            hosts.add(bound.lower())
    hosts.update(h.strip().strip("[]").lower() for h in config.allowed_hosts)
    return ServerSettings(
        host=host,
        port=port,
        tls_cert=cert,
        tls_key=key,
        insecure_http=insecure_http,
        trusted_proxies=proxies,
        allowed_hosts=tuple(sorted(hosts)),
        approval_wait_s=config.approval_wait_s,
        shutdown_grace_s=config.shutdown_grace_s,
        header_timeout_s=config.header_timeout_s,
        proxy=proxy,
    )
