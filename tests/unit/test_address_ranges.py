"""Which addresses the HTTP plugin refuses to reach through a broad pattern (issue 21).

``vultrino._net.blocked_range`` is called directly: nothing here opens a socket.
"""

from __future__ import annotations

import ipaddress

import pytest

from vultrino._allowlist import Allowlist, normalize_url
from vultrino._net import blocked_range

BLOCKED = {
    # IPv4
    "0.0.0.0": "0.0.0.0/8",
    "10.0.0.1": "10.0.0.0/8",
    "100.64.0.1": "100.64.0.0/10",
    "100.127.255.254": "100.64.0.0/10",
    "127.0.0.1": "127.0.0.0/8",
    "127.0.0.2": "127.0.0.0/8",
    "169.254.169.254": "169.254.0.0/16",
    "172.16.0.1": "172.16.0.0/12",
    "172.31.255.255": "172.16.0.0/12",
    "192.0.0.8": "192.0.0.0/24",
    "192.0.2.1": "192.0.2.0/24",
    "192.88.99.1": "192.88.99.0/24",
    "192.168.1.1": "192.168.0.0/16",
    "198.18.0.1": "198.18.0.0/15",
    "198.51.100.7": "198.51.100.0/24",
    "203.0.113.9": "203.0.113.0/24",
    "224.0.0.1": "224.0.0.0/4",
    "239.255.255.250": "224.0.0.0/4",
    "240.0.0.1": "240.0.0.0/4",
    "255.255.255.255": "240.0.0.0/4",
    # IPv6
    "::": "::/128",
    "::1": "::1/128",
    "fd00:ec2::254": "fc00::/7",
    "fc00::1": "fc00::/7",
    "fe80::1": "fe80::/10",
    "fe80::1%2": "fe80::/10",
    "fec0::1": "fec0::/10",
    "ff02::1": "ff00::/8",
    "2001:db8::1": "2001:db8::/32",
    "3fff::1": "3fff::/20",
    "2001::1": "2001::/32",
    "2001:2::1": "2001::/23",
    "100::1": "100::/64",
    "64:ff9b:1::a00:1": "64:ff9b:1::/48",
    "5f00::1": "5f00::/16",
    "::7f00:1": "2000::/3",  # IPv4-compatible, deprecated: outside global unicast
    "4000::1": "2000::/3",
}

# An IPv6 address that carries an IPv4 one is judged by the IPv4 address it reaches.
EMBEDDED = {
    "::ffff:127.0.0.1": ("IPv4-mapped", "127.0.0.0/8"),
    "::ffff:169.254.169.254": ("IPv4-mapped", "169.254.0.0/16"),
    "::ffff:10.1.2.3": ("IPv4-mapped", "10.0.0.0/8"),
    "64:ff9b::a9fe:a9fe": ("NAT64", "169.254.0.0/16"),
    "64:ff9b::7f00:1": ("NAT64", "127.0.0.0/8"),
    "2002:a9fe:a9fe::1": ("6to4", "169.254.0.0/16"),
    "2002:c0a8:101::": ("6to4", "192.168.0.0/16"),
}

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "172.32.0.1",  # just past 172.16.0.0/12
    "100.128.0.1",  # just past 100.64.0.0/10
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "network"), sorted(BLOCKED.items()))
def test_non_public_addresses_are_blocked_with_their_range(address: str, network: str) -> None:
    why = blocked_range(address)
    assert why is not None
    assert network in why


@pytest.mark.parametrize(("address", "form_and_network"), sorted(EMBEDDED.items()))
def test_embedded_ipv4_is_judged_by_the_ipv4_address(
    address: str, form_and_network: tuple[str, str]
) -> None:
    form, network = form_and_network
    why = blocked_range(address)
    assert why is not None
    assert form in why and network in why


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_range(address) is None
    assert blocked_range(ipaddress.ip_address(address)) is None


def test_the_metadata_addresses_are_named_as_such() -> None:
    assert "metadata" in (blocked_range("169.254.169.254") or "")
    assert "fd00:ec2::254" in (blocked_range("fd00:ec2::254") or "")


# --- which patterns name a host exactly ----------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "url", "named"),
    [
        (["*"], "http://127.0.0.1:8080/x", False),
        (["GET *"], "http://localhost/x", False),
        (["https://*.example.com/*"], "https://internal.example.com/x", False),
        (["http://127.0.0.1:8080/*"], "http://127.0.0.1:8080/x", True),
        (["http://localhost:8080/*"], "http://localhost:8080/x", True),
        (["https://api.example.com/v1/*"], "https://api.example.com/v1/x", True),
        (["http://[::1]:9000/*"], "http://[::1]:9000/", True),
        # The exact pattern must admit this very request: port, path and method count.
        (["*", "http://127.0.0.1:8080/*"], "http://127.0.0.1:8081/x", False),
        (["*", "https://api.example.com/v1/*"], "https://api.example.com/admin", False),
        (["*", "GET http://127.0.0.1:8080/*"], "http://127.0.0.1:8080/x", True),
        (["https://*.example.com/*", "https://a.example.com/*"], "https://a.example.com/", True),
    ],
)
def test_names_host(patterns: list[str], url: str, named: bool) -> None:
    allow = Allowlist(patterns)
    assert allow.names_host("GET", normalize_url(url)) is named


def test_names_host_ignores_the_method_it_does_not_admit() -> None:
    allow = Allowlist(["*", "GET http://127.0.0.1:8080/*"])
    assert not allow.names_host("POST", normalize_url("http://127.0.0.1:8080/x"))


def test_narrowing_never_names_a_host() -> None:
    # An agent's patterns only take away: an exact one there does not exempt a '*' credential.
    allow = Allowlist(["*"], narrow=["http://127.0.0.1:8080/*"])
    assert not allow.names_host("GET", normalize_url("http://127.0.0.1:8080/x"))


def test_names_host_of_for_the_token_url() -> None:
    allow = Allowlist(["https://*.example.com/*", "GET https://auth.corp.test/v1/*"])
    assert allow.names_host_of("auth.corp.test")
    assert not allow.names_host_of("login.example.com")
    assert not Allowlist(["*"]).names_host_of("localhost")
