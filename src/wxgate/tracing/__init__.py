"""Traces: W3C trace context accepted with a message, kept with it in the store, and spans
for its accept, send attempts, receipt and status webhook (docs/architecture.md, "Tracing").

`context` checks and packs the headers; `tracer` is the interface and the no-op default;
`otel` (the only module importing OpenTelemetry, an optional extra) records and exports;
`build` picks one from the settings.
"""

from wxgate.tracing.build import build_tracer
from wxgate.tracing.context import from_headers, to_headers
from wxgate.tracing.tracer import NO_SPAN, NO_TRACER, AttrValue, NoTracer, Span, Tracer

__all__ = [
    "NO_SPAN",
    "NO_TRACER",
    "AttrValue",
    "NoTracer",
    "Span",
    "Tracer",
    "build_tracer",
    "from_headers",
    "to_headers",
]
