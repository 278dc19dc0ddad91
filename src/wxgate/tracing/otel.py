"""The one module that touches OpenTelemetry: spans recorded by the SDK and exported in
batches over OTLP/HTTP (or to an exporter a test gives). Imported only when tracing is
configured (tracing/build.py), so the default install never needs the `tracing` extra.

Parents are always explicit (a kept trace context), never the SDK's "current span": a
message's spans happen in different tasks, processes and minutes, so only what the message
carries links them. The provider is our own, not the global one, so two gateways in one
process (tests) each keep theirs.
"""

from __future__ import annotations

from types import TracebackType

from opentelemetry import trace as otel
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from wxgate.tracing.context import pack, to_headers
from wxgate.tracing.tracer import Attributes, AttrValue, SpanKind

_KINDS = {
    "internal": otel.SpanKind.INTERNAL,
    "server": otel.SpanKind.SERVER,
    "client": otel.SpanKind.CLIENT,
    "consumer": otel.SpanKind.CONSUMER,
}
_PROPAGATOR = TraceContextTextMapPropagator()


def otlp_exporter(endpoint: str) -> SpanExporter:
    """OTLP over HTTP/protobuf; headers (auth) come from OTEL_EXPORTER_OTLP_HEADERS."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter: SpanExporter = OTLPSpanExporter(endpoint=endpoint)
    return exporter


class OTelSpan:
    __slots__ = ("_span",)

    def __init__(self, span: otel.Span) -> None:
        self._span = span

    def context(self, kept: str | None) -> str | None:
        sc = self._span.get_span_context()
        if not sc.is_valid:
            return kept
        parent = f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"
        state: str = sc.trace_state.to_header() if sc.trace_state else ""
        return pack(parent, state or None)

    def set(self, key: str, value: AttrValue) -> None:
        self._span.set_attribute(key, value)

    def error(self, description: str) -> None:
        self._span.set_status(otel.Status(otel.StatusCode.ERROR, description))

    def __enter__(self) -> OTelSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._span.record_exception(exc)
            self._span.set_status(otel.Status(otel.StatusCode.ERROR, type(exc).__name__))
        self._span.end()


class OTelTracer:
    """Spans sampled parent-based (a caller's sampled flag is followed; new traces are kept
    at `sample_ratio`), exported in the background in batches, or one by one when
    `batch` is False (tests read them at once)."""

    def __init__(
        self,
        service_name: str,
        sample_ratio: float,
        exporter: SpanExporter,
        *,
        batch: bool = True,
    ) -> None:
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("wxgate")

    @property
    def enabled(self) -> bool:
        return True

    def start(
        self,
        name: str,
        parent: str | None,
        attributes: Attributes | None = None,
        kind: SpanKind = "internal",
    ) -> OTelSpan:
        # An empty Context is a root: the SDK's current span must never leak in.
        ctx = _PROPAGATOR.extract(to_headers(parent)) if parent else Context()
        span = self._tracer.start_span(name, context=ctx, kind=_KINDS[kind], attributes=attributes)
        return OTelSpan(span)

    def shutdown(self) -> None:
        self._provider.shutdown()
