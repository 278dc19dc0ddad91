"""Prometheus collectors for one gateway process, and the /metrics handler.

Label sets are bounded: app names, dispositions, errcodes WeChat can return, routes (the
matched pattern, never the raw path), statuses. Never a label per openid or message.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from wxgate.errors import StoreError

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
E2E_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
BREAKER_STATES = ("closed", "half_open", "open")


class _StatsSource(Protocol):
    async def stats(self) -> Any: ...


class _PoolSource(Protocol):
    def app_states(self) -> Mapping[str, Mapping[str, Any]]: ...


class Metrics:
    """All collectors on a registry of their own, so tests can run several gateways at once."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.accepted = Counter(
            "wxgate_messages_accepted_total", "Messages accepted (committed)", ["app"], registry=r
        )
        self.sent = Counter(
            "wxgate_messages_sent_total", "Messages WeChat accepted", ["app"], registry=r
        )
        self.failed = Counter(
            "wxgate_send_failures_total",
            "Send attempts that failed, by disposition and errcode",
            ["app", "disposition", "errcode"],
            registry=r,
        )
        self.retries = Counter(
            "wxgate_retries_scheduled_total", "Messages scheduled for a retry", ["app"], registry=r
        )
        self.dead = Counter(
            "wxgate_dead_letters_total", "Messages moved to dead letters", ["app"], registry=r
        )
        self.expired = Counter(
            "wxgate_messages_expired_total", "Messages past expire_at", ["app"], registry=r
        )
        self.receipts = Counter(
            "wxgate_receipts_total", "Delivery receipts by result", ["app", "result"], registry=r
        )
        self.released = Counter(
            "wxgate_messages_released_total",
            "Leased messages put back unharmed (pause, breaker, drain)",
            ["app", "reason"],
            registry=r,
        )
        self.rate_wait = Counter(
            "wxgate_rate_limit_wait_seconds_total",
            "Time spent waiting for the per-app rate limit",
            ["app"],
            registry=r,
        )
        self.wechat_latency = Histogram(
            "wxgate_wechat_request_duration_seconds",
            "WeChat send request latency",
            ["app"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.e2e_sent = Histogram(
            "wxgate_accept_to_sent_seconds",
            "Time from accept to WeChat's ok",
            ["app"],
            buckets=E2E_BUCKETS_S,
            registry=r,
        )
        self.e2e_delivered = Histogram(
            "wxgate_accept_to_delivered_seconds",
            "Time from accept to the delivery receipt",
            ["app"],
            buckets=E2E_BUCKETS_S,
            registry=r,
        )
        self.http_requests = Counter(
            "wxgate_http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "wxgate_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.token_fetches = Counter(
            "wxgate_token_fetches_total", "access_token fetches", ["app", "result"], registry=r
        )
        self.queue_depth = Gauge(
            "wxgate_queue_messages", "Messages by status and app", ["app", "status"], registry=r
        )
        self.oldest_pending_age = Gauge(
            "wxgate_oldest_pending_age_seconds",
            "Age of the oldest message still waiting to be sent",
            registry=r,
        )
        self.breaker = Gauge(
            "wxgate_breaker_state",
            "1 for the breaker's current state per app",
            ["app", "state"],
            registry=r,
        )
        self.paused = Gauge("wxgate_app_paused", "1 while the app is paused", ["app"], registry=r)
        self.in_flight = Gauge(
            "wxgate_sends_in_flight", "Sends in flight per app", ["app"], registry=r
        )
        self.rate = Gauge(
            "wxgate_app_rate_per_second", "Current send rate limit per app", ["app"], registry=r
        )
        self._store: _StatsSource | None = None
        self._pool: _PoolSource | None = None

    def bind_store(self, store: _StatsSource) -> None:
        self._store = store

    def bind_pool(self, pool: _PoolSource) -> None:
        self._pool = pool

    # ---- hooks called by the delivery pipeline (delivery.DeliveryMetrics protocol)
    def on_sent(self, app: str, latency_s: float, created_at: float, now: float) -> None:
        self.sent.labels(app).inc()
        self.wechat_latency.labels(app).observe(latency_s)
        self.e2e_sent.labels(app).observe(max(0.0, now - created_at))

    def on_failed(self, app: str, disposition: str, errcode: int) -> None:
        self.failed.labels(app, disposition, str(errcode)).inc()

    def on_retry(self, app: str) -> None:
        self.retries.labels(app).inc()

    def on_dead(self, app: str) -> None:
        self.dead.labels(app).inc()

    def on_expired(self, app: str) -> None:
        self.expired.labels(app).inc()

    def on_released(self, app: str, reason: str) -> None:
        self.released.labels(app, reason).inc()

    def on_rate_wait(self, app: str, seconds: float) -> None:
        self.rate_wait.labels(app).inc(seconds)

    def on_token_fetch(self, app: str, ok: bool) -> None:
        self.token_fetches.labels(app, "ok" if ok else "error").inc()

    def on_accepted(self, app: str, n: int = 1) -> None:
        self.accepted.labels(app).inc(n)

    def on_receipt(self, app: str, result: str, created_at: float | None, now: float) -> None:
        self.receipts.labels(app, result).inc()
        if result == "delivered" and created_at is not None:
            self.e2e_delivered.labels(app).observe(max(0.0, now - created_at))

    def failures_by_errcode(self) -> dict[int, dict[str, int]]:
        """Failed send attempts since start: errcode -> disposition -> count (all apps)."""
        out: dict[int, dict[str, int]] = {}
        for family in self.failed.collect():
            for sample in family.samples:
                if not sample.name.endswith("_total") or not sample.value:
                    continue
                code = int(sample.labels["errcode"])
                by = out.setdefault(code, {})
                disposition = sample.labels["disposition"]
                by[disposition] = by.get(disposition, 0) + int(sample.value)
        return out

    # ---- scrape
    async def refresh(self) -> None:
        """Pull gauges from the store and the pool right before a scrape.

        With the store unreachable the store's gauges keep their last values: the scrape
        still answers, with this process's own counters, when they matter most."""
        stats = None
        if self._store is not None:
            with contextlib.suppress(StoreError):
                stats = await self._store.stats()
        if stats is not None:
            self.queue_depth.clear()
            for app, counts in stats.by_app.items():
                for status, n in counts.items():
                    self.queue_depth.labels(app, status).set(n)
            oldest = stats.oldest_pending_at
            self.oldest_pending_age.set(max(0.0, time.time() - oldest) if oldest else 0.0)
        if self._pool is not None:
            for app, state in self._pool.app_states().items():
                current = str(state.get("breaker", "closed"))
                for st in BREAKER_STATES:
                    self.breaker.labels(app, st).set(1 if st == current else 0)
                self.paused.labels(app).set(1 if state.get("paused_until") else 0)
                self.in_flight.labels(app).set(float(state.get("in_flight", 0)))
                rate = state.get("rate_per_s")
                if rate is not None:
                    self.rate.labels(app).set(float(rate))

    async def handler(self, request: web.Request) -> web.Response:
        await self.refresh()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def instrument(self, app: web.Application) -> None:
        """Count and time every HTTP request by its route pattern."""

        @web.middleware
        async def _mw(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            start = time.perf_counter()
            status = 500
            try:
                resp = await handler(request)
                status = resp.status
                return resp
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                info = request.match_info.route.resource
                route = info.canonical if info is not None else "unmatched"
                self.http_requests.labels(request.method, route, str(status)).inc()
                self.http_latency.labels(request.method, route).observe(time.perf_counter() - start)

        app.middlewares.insert(0, _mw)

    def __repr__(self) -> str:
        return f"<Metrics collectors={len(list(self.registry.collect()))}>"
