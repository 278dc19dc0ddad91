"""W3C trace context parsing (wxgate/tracing/context.py): what is kept, what is ignored.

A header that does not parse must never fail a request: it is dropped and a new trace starts
(tests/tracing/test_traces.py checks the route side)."""

from __future__ import annotations

import pytest

from wxgate.tracing.context import (
    from_headers,
    pack,
    to_headers,
    valid_traceparent,
    valid_tracestate,
)
from wxgate.tracing.tracer import NO_SPAN, NO_TRACER

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
GOOD = f"00-{TRACE}-{SPAN}-01"


def test_a_well_formed_traceparent_is_kept() -> None:
    assert valid_traceparent(GOOD) == GOOD
    assert valid_traceparent(f"00-{TRACE}-{SPAN}-00") == f"00-{TRACE}-{SPAN}-00"
    # A later version is read as version 00's four fields, extra fields dropped.
    assert valid_traceparent(f"01-{TRACE}-{SPAN}-01-future") == GOOD


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        f"00-{TRACE}-{SPAN}",  # no flags
        f"00-{TRACE.upper()}-{SPAN}-01",  # uppercase hex
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{SPAN}-01",  # the forbidden version
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}g-{SPAN}-01",  # not hex
        f"00_{TRACE}_{SPAN}_01",
        f"00-{TRACE}-{SPAN}-01" + "x" * 5000,
    ],
)
def test_a_malformed_traceparent_is_ignored(value: str | None) -> None:
    assert valid_traceparent(value) is None
    assert from_headers({} if value is None else {"traceparent": value}) is None


def test_tracestate_kept_when_every_member_is_valid() -> None:
    assert valid_tracestate("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7") == (
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    )
    assert valid_tracestate("tenant@vendor=v1") == "tenant@vendor=v1"
    for bad in ("", "novalue", "Upper=1", "k=v\nx=y", "k=" + "v" * 300, ",".join(["a=1"] * 33)):
        assert valid_tracestate(bad) is None, bad
    assert valid_tracestate("k=v," * 200) is None  # longer than 512 characters


def test_headers_round_trip_through_the_kept_string() -> None:
    kept = from_headers({"traceparent": GOOD, "tracestate": "congo=t61rcWkgMzE"})
    assert kept == pack(GOOD, "congo=t61rcWkgMzE")
    assert to_headers(kept) == {"traceparent": GOOD, "tracestate": "congo=t61rcWkgMzE"}
    # A bad tracestate is dropped, the traceparent still counts.
    assert from_headers({"traceparent": GOOD, "tracestate": "Bad State"}) == GOOD
    assert to_headers(GOOD) == {"traceparent": GOOD}
    assert to_headers(None) == {}
    # A tracestate alone means nothing.
    assert from_headers({"tracestate": "congo=t61rcWkgMzE"}) is None


def test_the_no_op_tracer_passes_the_kept_context_on() -> None:
    assert not NO_TRACER.enabled
    with NO_TRACER.start("wxgate.accept", GOOD, {"a": 1}, "server") as span:
        assert span is NO_SPAN
        span.set("k", "v")
        span.error("nothing happens")
        assert span.context(GOOD) == GOOD
        assert span.context(None) is None
