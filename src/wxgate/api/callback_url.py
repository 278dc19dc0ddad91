"""Whether a caller may name its own callback_url (a message's or a batch's): SSRF at intake.

Off unless allowed: the host must match the app's `callback_hosts` and, for a named key, the
key's `callback_hosts` too (the app's list says where that app's events may go, the key's
which of those this key may choose: a key shared by two apps cannot send one app's events to
the other's partner, and a leaked key reaches only its own hosts). The URL is parsed with
yarl, the parser aiohttp's sender uses, so the host checked here is the host connected to.
The address it resolves to is checked again at connect time (delivery/egress_resolver.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from yarl import URL

from wxgate.api.errors import ApiError, invalid
from wxgate.policy.callback_hosts import host_allowed, odd_ip_literal
from wxgate.settings import AppSettings

FIELD = "callback_url"
# What yarl leaves in raw_host for a name (IDNA-encoded) or an IPv6 literal: no %-escapes.
_HOST_CHARS = re.compile(r"^[a-z0-9_.:-]+$")


def check_shape(url: str, field: str = FIELD) -> URL:
    """400 unless `url` is an absolute http(s) URL with a host and no credentials or
    fragment, whose host is not an IPv4 address in an odd spelling."""
    try:
        parsed = URL(url)
        host = parsed.raw_host
    except (ValueError, TypeError):
        raise invalid(field, "not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not url.startswith(("http://", "https://")):
        raise invalid(field, "expected an http:// or https:// URL")
    if not host:
        raise invalid(field, "the URL has no host")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise invalid(field, "no user:password@ in the URL (events are signed instead)")
    if parsed.raw_fragment:
        raise invalid(field, "no #fragment in the URL (it is never sent)")
    if not _HOST_CHARS.match(host):
        raise invalid(field, f"{host!r} is not a host name or IP address")
    if odd_ip_literal(host):
        raise invalid(field, f"{host!r} is not a canonical IP address")
    return parsed


def caller_callback_url(
    url: str | None, app: AppSettings, key_hosts: Sequence[str] | None
) -> str | None:
    """`url` if this caller may use it, else 400 (its shape) or 403 (not allowlisted).
    `key_hosts` is the calling key's list, None for a key without one (server.api_keys) or
    a gateway without keys."""
    if url is None:
        return None
    host = check_shape(url).raw_host or ""
    if not app.callback_hosts:
        raise _refused(
            f"app {app.name!r} takes no caller-chosen callback_url: the operator enables it "
            "with the app's callback_hosts (and the key's, for a named key)"
        )
    if not host_allowed(host, app.callback_hosts):
        raise _refused(f"host {host!r} is not in the callback_hosts of app {app.name!r}")
    if key_hosts is not None and not host_allowed(host, key_hosts):
        raise _refused(f"host {host!r} is not in this key's callback_hosts")
    return url


def _refused(message: str) -> ApiError:
    return ApiError(403, "callback_url_not_allowed", message, FIELD)
