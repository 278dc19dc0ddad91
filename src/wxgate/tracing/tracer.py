"""What the gateway's code sees of tracing: a Tracer that starts Spans under a kept trace
context, and the no-op pair used when tracing is off (the default; no OpenTelemetry needed).

The no-op path is meant to cost next to nothing on the hot paths: `start` returns one shared
NoSpan, whose methods do nothing, and `NoSpan.context(kept)` hands back the caller's own trace
context, which the message keeps and its status webhook carries on.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Literal, Protocol

AttrValue = str | bool | int | float
Attributes = Mapping[str, AttrValue]
SpanKind = Literal["internal", "server", "client", "consumer"]


class Span(Protocol):
    """One timed operation; a context manager that ends it (recording an exception)."""

    def context(self, kept: str | None) -> str | None:
        """The trace context children of this span should carry (tracing/context.py form);
        `kept` when this span is not real (tracing off)."""
        ...

    def set(self, key: str, value: AttrValue) -> None: ...

    def error(self, description: str) -> None:
        """Mark the span failed (a send WeChat refused, a webhook POST that failed)."""
        ...

    def __enter__(self) -> Span: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Tracer(Protocol):
    @property
    def enabled(self) -> bool:
        """True when spans are real (worth building attributes for)."""
        ...

    def start(
        self,
        name: str,
        parent: str | None,
        attributes: Attributes | None = None,
        kind: SpanKind = "internal",
    ) -> Span:
        """A span under `parent` (a kept trace context), or the root of a new trace."""
        ...

    def shutdown(self) -> None:
        """Export what is buffered and stop (at gateway shutdown)."""
        ...


class NoSpan:
    __slots__ = ()

    def context(self, kept: str | None) -> str | None:
        return kept

    def set(self, key: str, value: AttrValue) -> None:
        pass

    def error(self, description: str) -> None:
        pass

    def __enter__(self) -> NoSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass


NO_SPAN = NoSpan()


class NoTracer:
    """Tracing off: nothing is recorded or exported."""

    __slots__ = ()

    @property
    def enabled(self) -> bool:
        return False

    def start(
        self,
        name: str,
        parent: str | None,
        attributes: Attributes | None = None,
        kind: SpanKind = "internal",
    ) -> NoSpan:
        return NO_SPAN

    def shutdown(self) -> None:
        pass


NO_TRACER = NoTracer()
