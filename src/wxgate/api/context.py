"""What every handler needs, built once in create_app and kept on the Application."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from wxgate.api.auth import KeyRing
from wxgate.api.depth import DepthGuard
from wxgate.api.template_check import TemplateSource
from wxgate.clock import Clock
from wxgate.models import TokenEntry
from wxgate.settings import AppSettings, Settings
from wxgate.store.base import Store
from wxgate.tracing import NO_TRACER, Tracer

StatsExtra = Callable[[], Awaitable[dict[str, Any]]]


class ApiMetrics(Protocol):
    """What the API reports; wxgate.metrics.Metrics implements it. Must be cheap."""

    def on_accepted(self, app: str, n: int = 1) -> None: ...
    def on_token_service(self, key: str, action: str) -> None:
        """One token-service call by the key named `key` (action: get | invalidate)."""
        ...

    def on_key_limited(self, key: str) -> None:
        """One request refused by the rate limit of the key named `key`."""
        ...

    def on_receipt(self, app: str, result: str, created_at: float | None, now: float) -> None: ...
    def on_receipt_unlinked(self, app: str, reason: str) -> None:
        """A receipt no msgid claimed was kept unapplied (ambiguous, unmatched)."""
        ...

    def failures_by_errcode(self) -> dict[int, dict[str, int]]:
        """Failed send attempts in this process: errcode -> disposition -> count."""
        ...


class NoApiMetrics:
    def on_accepted(self, app: str, n: int = 1) -> None:
        pass

    def on_token_service(self, key: str, action: str) -> None:
        pass

    def on_key_limited(self, key: str) -> None:
        pass

    def on_receipt(self, app: str, result: str, created_at: float | None, now: float) -> None:
        pass

    def on_receipt_unlinked(self, app: str, reason: str) -> None:
        pass

    def failures_by_errcode(self) -> dict[int, dict[str, int]]:
        return {}


class TokenSource(Protocol):
    """The part of wechat.tokens.TokenBroker the token service routes use."""

    async def get(self, app: AppSettings) -> str: ...
    async def invalidate(self, app: AppSettings, failed_token: str) -> bool:
        """Compare-and-invalidate; True if `failed_token` was the current one."""
        ...

    async def peek(self, app: AppSettings) -> TokenEntry | None: ...


@dataclass(frozen=True, slots=True)
class ApiContext:
    settings: Settings
    store: Store
    clock: Clock
    keys: KeyRing
    apps: dict[str, AppSettings]
    depth: DepthGuard
    broker: TokenSource | None = None
    stats_extra: StatsExtra | None = None
    metrics: ApiMetrics = field(default_factory=NoApiMetrics)
    # Called after a commit that made work due, so a worker pool in this process leases at
    # once instead of at its next idle poll (accept -> send latency).
    wake: Callable[[], None] = lambda: None
    # The cached template lists behind apps' `validate` (None: no app validates).
    templates: TemplateSource | None = None
    # Spans for accepts and receipts (tracing off: the no-op tracer).
    tracer: Tracer = NO_TRACER

    @property
    def max_body_bytes(self) -> int:
        return self.settings.server.max_body_bytes

    @property
    def max_batch_body_bytes(self) -> int:
        return max(self.settings.server.max_body_bytes, self.settings.server.max_batch_body_bytes)


API_CONTEXT = web.AppKey("wxgate.api_context", ApiContext)
