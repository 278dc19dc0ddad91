"""The egress address table (policy/egress.py) and the callback host allowlist
(policy/callback_hosts.py) as pure functions over literals: nothing here connects anywhere."""

from __future__ import annotations

import ipaddress

import pytest

from wxgate.policy.callback_hosts import host_allowed, host_matches, odd_ip_literal
from wxgate.policy.egress import (
    embedded_ipv4,
    first_refusal,
    is_public,
    parse_networks,
    refusal,
)

REFUSED = [
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fd00::1", "unique local"),
    ("fc00::1", "unique local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("64:ff9b:1::a00:1", "NAT64"),
    # IPv6 spellings of refused IPv4 addresses
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private"),
    ("::127.0.0.1", "loopback"),  # IPv4-compatible (deprecated)
    ("::ffff:0:127.0.0.1", "loopback"),  # IPv4-translated
    ("64:ff9b::127.0.0.1", "loopback"),  # NAT64 well-known prefix
    ("64:ff9b::10.1.2.3", "private"),
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_internal_addresses_are_refused_and_say_why(address: str, why: str) -> None:
    ip = ipaddress.ip_address(address)
    reason = refusal(ip)
    assert reason is not None and why in reason, reason
    assert not is_public(ip)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_embedded_ipv4_forms() -> None:
    v6 = ipaddress.IPv6Address
    v4 = ipaddress.IPv4Address
    assert embedded_ipv4(v6("::ffff:7f00:1")) == v4("127.0.0.1")
    assert embedded_ipv4(v6("2002:0a00:0001::")) == v4("10.0.0.1")
    assert embedded_ipv4(v6("64:ff9b::a9fe:a9fe")) == v4("169.254.169.254")
    assert embedded_ipv4(v6("::1")) is None and embedded_ipv4(v6("::")) is None
    assert embedded_ipv4(v6("2606:4700::1")) is None


def test_allowed_networks_let_named_ranges_through_and_only_those() -> None:
    allowed = parse_networks(["10.1.0.0/16", "127.0.0.0/8", "fd12::/16"])
    ip = ipaddress.ip_address
    assert refusal(ip("10.1.2.3"), allowed) is None
    assert refusal(ip("10.2.0.1"), allowed) is not None
    assert refusal(ip("127.0.0.1"), allowed) is None
    assert refusal(ip("::ffff:127.0.0.1"), allowed) is None  # the IPv4 it carries is allowed
    assert refusal(ip("::1"), allowed) is not None  # IPv6 loopback is another network
    assert refusal(ip("fd12::1"), allowed) is None
    assert refusal(ip("169.254.169.254"), allowed) is not None


def test_first_refusal_is_all_or_nothing() -> None:
    # A rebinding name's answer: a public address and loopback. Refused as a whole.
    why = first_refusal(["93.184.216.34", "127.0.0.1"])
    assert why == "127.0.0.1 (loopback)"
    assert first_refusal(["93.184.216.34", "2606:4700:4700::1111"]) is None
    assert first_refusal(["fe80::1%eth0"]) == "fe80::1 (link-local)"
    assert first_refusal(["not-an-ip"]) is not None


def test_parse_networks_names_a_bad_cidr() -> None:
    with pytest.raises(ValueError, match=r"10\.1\.0\.1/16"):
        parse_networks(["10.1.0.1/16"])  # host bits set
    with pytest.raises(ValueError, match="nonsense"):
        parse_networks(["nonsense"])


@pytest.mark.parametrize(
    ("host", "pattern", "ok"),
    [
        ("hooks.example.com", "hooks.example.com", True),
        ("HOOKS.Example.COM.", "hooks.example.com", True),
        ("evil-hooks.example.com", "hooks.example.com", False),
        ("hooks.example.com.evil.net", "hooks.example.com", False),
        ("a.shop.example", "*.shop.example", True),
        ("shop.example", "*.shop.example", False),  # the wildcard is one label, not zero
        ("a.b.shop.example", "*.shop.example", False),  # nor two
        ("ashop.example", "*.shop.example", False),
        ("::ffff:7f00:1", "::ffff:127.0.0.1", True),  # IPv6 compared in canonical form
        ("2001:db8::7", "[2001:DB8:0::7]", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.2", "127.0.0.1", False),
    ],
)
def test_host_patterns(host: str, pattern: str, ok: bool) -> None:
    assert host_matches(host, pattern) is ok


def test_host_allowed_over_a_list() -> None:
    assert host_allowed("x.shop.example", ["hooks.example.com", "*.shop.example"])
    assert not host_allowed("x.shop.example", [])


@pytest.mark.parametrize(
    ("host", "odd"),
    [
        ("0x7f000001", True),
        ("2130706433", True),
        ("0177.0.0.1", True),
        ("127.1", True),
        ("127.0.0.1", False),  # canonical: checked as an address, not refused as a spelling
        ("::ffff:7f00:1", False),
        ("hooks.example.com", False),
        ("1password.example", False),
    ],
)
def test_odd_ipv4_spellings(host: str, odd: bool) -> None:
    assert odd_ip_literal(host) is odd
