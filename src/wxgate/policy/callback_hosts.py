"""Host allowlists for caller-chosen callback URLs (`callback_hosts` of apps and keys).

An entry is a host name ("hooks.example.com"), a name with one leading wildcard label
("*.shop.example": exactly one more label, as in TLS certificates, so not "shop.example"
itself nor "a.b.shop.example"), or an IP literal ("203.0.113.7", "2001:db8::7"). Hosts are
compared in their ASCII form (IDNA punycode), lower case, without a trailing dot. Pure
functions; settings/validate.py checks the entries' shape at start.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

# The last label of a host a URL parser would read as an IPv4 number (WHATWG URL: decimal,
# 0x-hex or 0-octal): "2130706433", "0x7f000001", "0177.0.0.1", "127.1".
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


def normalize_host(host: str) -> str:
    """Lower case, no trailing dot, no IPv6 brackets, IPv6 in its compressed form."""
    h = host.strip().lower().removesuffix(".")
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if ":" in h:
        try:
            return str(ipaddress.IPv6Address(h))
        except ValueError:
            return h
    return h


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address when `host` is a canonical IP literal (dotted-quad IPv4 or IPv6)."""
    try:
        return ipaddress.ip_address(normalize_host(host))
    except ValueError:
        return None


def odd_ip_literal(host: str) -> bool:
    """Whether `host` is an IPv4 address in a non-canonical spelling (hex, octal, a single
    number, fewer than four parts): resolvers accept these, allowlists should not."""
    h = normalize_host(host)
    if ":" in h or ip_literal(h) is not None:
        return False
    last = h.rsplit(".", 1)[-1]
    return bool(_NUMERIC_LABEL.match(last))


def host_matches(host: str, pattern: str) -> bool:
    """Whether `host` is what `pattern` (one allowlist entry) allows."""
    h, p = normalize_host(host), normalize_host(pattern)
    if p.startswith("*."):
        suffix = p[1:]  # ".shop.example"
        head = h[: -len(suffix)] if h.endswith(suffix) else ""
        return bool(head) and "." not in head
    return h == p


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    return any(host_matches(host, p) for p in patterns)
