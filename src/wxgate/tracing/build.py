"""The tracer a gateway runs with: the no-op one unless `[tracing] endpoint` is set (or a
test gives an exporter), in which case OpenTelemetry must be installed."""

from __future__ import annotations

from typing import Any

from wxgate.errors import ConfigError
from wxgate.settings import TracingSettings
from wxgate.tracing.tracer import NO_TRACER, Tracer

INSTALL_HINT = "pip install 'wxgate[tracing]'"


def check_available(settings: TracingSettings) -> None:
    """ConfigError now, before anything starts, when tracing is configured but the extra is
    not installed (the gateway refuses to run silently untraced)."""
    if settings.endpoint is None:
        return
    try:
        from wxgate.tracing import otel  # noqa: F401
    except ImportError as exc:
        raise _missing(exc) from None


def _missing(exc: ImportError) -> ConfigError:
    return ConfigError(
        f"tracing.endpoint is set but OpenTelemetry is not installed ({exc.name}): "
        f"{INSTALL_HINT}, or remove [tracing] endpoint"
    )


def build_tracer(settings: TracingSettings, exporter: Any = None) -> Tracer:
    """`exporter`: an OpenTelemetry SpanExporter to use instead of OTLP (tests give the SDK's
    in-memory one; spans are then exported as they end, not in batches)."""
    if settings.endpoint is None and exporter is None:
        return NO_TRACER
    try:
        from wxgate.tracing import otel
    except ImportError as exc:
        raise _missing(exc) from None
    if exporter is None:
        assert settings.endpoint is not None
        return otel.OTelTracer(
            settings.service_name, settings.sample_ratio, otel.otlp_exporter(settings.endpoint)
        )
    return otel.OTelTracer(settings.service_name, settings.sample_ratio, exporter, batch=False)
