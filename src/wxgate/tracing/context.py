"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` and `tracestate`
headers checked, and the one string a message keeps them in (models.Message.trace).

No OpenTelemetry here: the gateway keeps and passes on a caller's context with tracing off,
and a header that does not parse is simply ignored (a new trace starts), never an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# version 00: 2 hex, 32 hex trace id, 16 hex parent id, 2 hex flags, lowercase only. A later
# version may append fields after a dash; its first four are read as version 00's.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# tracestate: at most 32 list members of key=value, 512 characters kept (the spec lets a
# vendor drop it whole past that rather than cut a member).
_MEMBER = re.compile(
    r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
MAX_TRACESTATE = 512
MAX_MEMBERS = 32


def valid_traceparent(value: str | None) -> str | None:
    """The header as version 00 if it is well formed, else None (ignored: a new trace)."""
    if value is None or len(value) < 55:
        return None
    m = _TRACEPARENT.fullmatch(value.strip())
    if m is None:
        return None
    version, trace_id, span_id, flags, rest = m.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if version == "00" and rest is not None:
        return None  # version 00 has exactly four fields
    return f"00-{trace_id}-{span_id}-{flags}"


def valid_tracestate(value: str | None) -> str | None:
    """The header without blank members if every member is well formed and it fits, else
    None (a tracestate that does not parse is dropped, the traceparent still counts)."""
    if not value or len(value) > MAX_TRACESTATE:
        return None
    members = [m.strip() for m in value.split(",")]
    members = [m for m in members if m]
    if not members or len(members) > MAX_MEMBERS:
        return None
    if not all(_MEMBER.fullmatch(m) for m in members):
        return None
    return ",".join(members)


def from_headers(headers: Mapping[str, str]) -> str | None:
    """A request's trace context as Message.trace keeps it, or None when its traceparent is
    missing or malformed (a tracestate alone means nothing)."""
    parent = valid_traceparent(headers.get("traceparent"))
    if parent is None:
        return None
    return pack(parent, valid_tracestate(headers.get("tracestate")))


def pack(traceparent: str, tracestate: str | None) -> str:
    """One string for both headers: the traceparent, then a newline and the tracestate (a
    valid tracestate holds no newline)."""
    return traceparent if not tracestate else f"{traceparent}\n{tracestate}"


def to_headers(trace: str | None) -> dict[str, str]:
    """The headers that carry a kept trace context on (empty for None)."""
    if not trace:
        return {}
    parent, _, state = trace.partition("\n")
    return {"traceparent": parent, "tracestate": state} if state else {"traceparent": parent}
