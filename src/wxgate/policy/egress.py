"""Which addresses a caller-chosen webhook URL may reach: public unicast only, by default.

Pure functions over `ipaddress` values, so the table is tested with literals and never with a
connection. The sender (delivery/egress_resolver.py) applies `refusal` to every address a name
resolves to, and to IP-literal hosts, before it connects. The ranges are listed here rather
than taken from `ipaddress.is_global`, which has changed between Python versions and calls
multicast (224.0.0.0/4) global.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# (network, what it is): the first match names the refusal.
_V4_REFUSED: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "unspecified ('this network', reaches loopback)"),
    (_V4("10.0.0.0/8"), "private (RFC 1918)"),
    (_V4("100.64.0.0/10"), "shared address space (CGNAT, RFC 6598)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local (cloud metadata lives here)"),
    (_V4("172.16.0.0/12"), "private (RFC 1918)"),
    (_V4("192.0.0.0/24"), "IETF protocol assignments"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast"),
    (_V4("192.168.0.0/16"), "private (RFC 1918)"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved (and broadcast)"),
)
_V6_REFUSED: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64"),
    (_V6("100::/64"), "discard-only"),
    (_V6("2001::/32"), "Teredo tunnel"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("fc00::/7"), "unique local (ULA)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local"),
    (_V6("ff00::/8"), "multicast"),
)
_COMPATIBLE = _V6("::/96")  # ::a.b.c.d, deprecated IPv4-compatible
_TRANSLATED = _V6("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated
_NAT64 = _V6("64:ff9b::/96")  # RFC 6052 well-known prefix


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs like "10.1.0.0/16" or "fd12::/64"; ValueError names the first bad one."""
    out: list[Network] = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr.strip(), strict=True))
        except ValueError as exc:
            raise ValueError(f"{cidr!r}: {exc}") from None
    return tuple(out)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and would reach: mapped, compatible,
    translated, NAT64 (well-known prefix) or 6to4; None if it carries none."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _TRANSLATED or ip in _NAT64:
        return low
    if ip in _COMPATIBLE and int(ip) > 1:  # :: and ::1 are themselves, not 0.0.0.x
        return low
    return None


def _allowed(ip: IPAddress, allowed: Sequence[Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in allowed)


def refusal(ip: IPAddress, allowed: Sequence[Network] = ()) -> str | None:
    """Why a caller-chosen webhook may not connect to `ip`, or None if it may.

    `allowed` (webhooks.allow_private_networks) lets named networks through; for an IPv6
    address carrying an IPv4 one, either may be allowed."""
    if _allowed(ip, allowed):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            why = refusal(inner, allowed)
            if why is not None:
                return f"an IPv6 form of {inner}: {why}"
            if ip.ipv4_mapped is not None:
                return None  # a dual-stack socket connects to `inner` itself: public
        for net, what in _V6_REFUSED:
            if ip in net:
                return what
    else:
        for net4, what in _V4_REFUSED:
            if ip in net4:
                return what
    if not ip.is_global:
        return "not globally routable"
    return None


def is_public(ip: IPAddress) -> bool:
    """Whether a caller-chosen webhook may reach `ip` with no networks allowed."""
    return refusal(ip) is None


def first_refusal(addresses: Iterable[str], allowed: Sequence[Network] = ()) -> str | None:
    """The first refused address as "<address> (<why>)", None if every one may be used.

    All or nothing: a name that resolves to one internal address among public ones is
    refused as a whole (a rebinding name often answers both)."""
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
        except ValueError:
            return f"{text!r} is not an IP address"
        why = refusal(ip, allowed)
        if why is not None:
            return f"{ip} ({why})"
    return None
