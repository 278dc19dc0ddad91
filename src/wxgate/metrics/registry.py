"""Metrics: every series of one gateway process on a registry of its own, the hooks that
count into them, and the /metrics handler."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from wxgate.errors import StoreError
from wxgate.metrics import throughput
from wxgate.metrics.collectors import (
    BrokerSource,
    Histogram,
    HttpStats,
    PoolSource,
    Scraped,
    StatsSource,
    WebhookSource,
)

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
E2E_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
# Anything else a client invents is counted as OTHER, so the label set stays bounded.
# The name of the API's catch-all route (api/app.py); what it serves is labelled "unmatched".
UNROUTED = "unrouted"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BREAKER_STATES = ("closed", "half_open", "open")


# failures_by_errcode keeps at most this many distinct errcodes (the rest only in "other").
MAX_ERRCODES_KEPT = 256


class Metrics:
    """All collectors on a registry of their own, so tests can run several gateways at once."""

    def __init__(self, known_errcodes: Iterable[int] | None = None) -> None:
        # errcodes kept as label values; None keeps every one (tests), runtime passes the table.
        self._known = None if known_errcodes is None else frozenset(known_errcodes)
        self._failures: dict[int, dict[str, int]] = {}
        # Label children of the per-message series, per app (the app set is configured).
        self._sent_children: dict[str, tuple[Any, Any, Any]] = {}
        self._accepted_children: dict[str, Any] = {}
        # Per-second counts for the chart history, flushed to the store (throughput.py).
        self.tally = throughput.ThroughputTally()
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._scraped = Scraped()
        r.register(self._scraped)
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
        self.config_alerts = Counter(
            "wxgate_config_alerts_total",
            "Apps paused by a config answer (bad secret, IP, admin confirmation, a token "
            "endpoint that is not WeChat's): one per pause, each logged as an ALERT",
            ["app", "errcode"],
            registry=r,
        )
        self.retries = Counter(
            "wxgate_retries_scheduled_total", "Messages scheduled for a retry", ["app"], registry=r
        )
        self.dead = Counter(
            "wxgate_dead_letters_total", "Messages moved to dead letters", ["app"], registry=r
        )
        self.redrive = Counter(
            "wxgate_redrive_messages_total",
            "Dead letters moved back to the queue by the app's scheduled redrive",
            ["app"],
            registry=r,
        )
        self.expired = Counter(
            "wxgate_messages_expired_total", "Messages past expire_at", ["app"], registry=r
        )
        self.suppressed = Counter(
            "wxgate_suppressed_total",
            "Subscribe messages dead-lettered unsent (43101): the user rejected the template",
            ["app"],
            registry=r,
        )
        self.receipts_unlinked = Counter(
            "wxgate_receipts_unlinked_total",
            "Receipts no msgid claimed that could not be linked to one message for sure "
            "(reason: ambiguous, unmatched); kept, never applied",
            ["app", "reason"],
            registry=r,
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
            LATENCY_BUCKETS_S,
        )
        self.e2e_sent = Histogram(
            "wxgate_accept_to_sent_seconds",
            "Time from accept to WeChat's ok",
            ["app"],
            E2E_BUCKETS_S,
        )
        self.e2e_delivered = Histogram(
            "wxgate_accept_to_delivered_seconds",
            "Time from accept to the delivery receipt",
            ["app"],
            E2E_BUCKETS_S,
        )
        for family in (self.wechat_latency, self.e2e_sent, self.e2e_delivered):
            r.register(family)
        self._http = HttpStats(LATENCY_BUCKETS_S)
        r.register(self._http)
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
            "wxgate_app_rate_per_second",
            "Current send rate limit per app (lowered by adaptive rate while WeChat struggles)",
            ["app"],
            registry=r,
        )
        # Labelled by the key's configured name, never the key itself.
        self.token_service = Counter(
            "wxgate_token_service_requests_total",
            "Token service calls by API key name and action (get, invalidate)",
            ["key", "action"],
            registry=r,
        )
        self.key_limited = Counter(
            "wxgate_api_key_limited_total",
            "Requests refused with 429 by an API key's rate limit, by key name",
            ["key"],
            registry=r,
        )
        self.webhooks = Counter(
            "wxgate_webhooks_total",
            "Status webhook POSTs by result: delivered, retry (will try again), failed (gave up)",
            ["result"],
            registry=r,
        )
        self.webhooks_pending = Gauge(
            "wxgate_webhooks_pending", "Status webhook events waiting to be delivered", registry=r
        )
        self.webhooks_failed = Gauge(
            "wxgate_webhooks_failed",
            "Status webhook events given up on (kept for the store's retention)",
            registry=r,
        )
        self._store: StatsSource | None = None
        self._pool: PoolSource | None = None
        self._webhook_source: WebhookSource | None = None

    def bind_store(self, store: StatsSource) -> None:
        self._store = store

    def bind_pool(self, pool: PoolSource) -> None:
        self._pool = pool

    def bind_broker(self, broker: BrokerSource, apps: Mapping[str, str]) -> None:
        """The token broker's fetch counters; `apps` maps appid -> app name (the label)."""
        self._scraped.broker = broker
        self._scraped.app_of_appid = dict(apps)

    def bind_webhooks(self, source: WebhookSource) -> None:
        """The store's outbox, for the pending/failed gauges."""
        self._webhook_source = source

    def on_webhook(self, result: str) -> None:
        self.webhooks.labels(result).inc()

    # ---- hooks called by the delivery pipeline (delivery.DeliveryMetrics protocol)
    def on_sent(self, app: str, latency_s: float, created_at: float, now: float) -> None:
        children = self._sent_children.get(app)
        if children is None:  # labels() hashes and locks on every call: once per app
            children = self._sent_children[app] = (
                self.sent.labels(app),
                self.wechat_latency.child(app),
                self.e2e_sent.child(app),
            )
        sent, latency, e2e = children
        sent.inc()
        self.tally.count(throughput.SENT)
        self.wechat_latency.observe(latency, latency_s)
        self.e2e_sent.observe(e2e, max(0.0, now - created_at))

    def on_failed(self, app: str, disposition: str, errcode: int) -> None:
        known = self._known is None or errcode in self._known
        self.failed.labels(app, disposition, str(errcode) if known else "other").inc()
        by = self._failures.get(errcode)
        if by is None:
            if len(self._failures) >= MAX_ERRCODES_KEPT:
                return
            by = self._failures[errcode] = {}
        by[disposition] = by.get(disposition, 0) + 1

    def on_config_alert(self, app: str, errcode: int) -> None:
        self.config_alerts.labels(app, str(errcode)).inc()

    def on_retry(self, app: str) -> None:
        self.retries.labels(app).inc()

    def on_dead(self, app: str) -> None:
        self.dead.labels(app).inc()
        self.tally.count(throughput.FAILED)

    def on_redrive(self, app: str, n: int) -> None:
        self.redrive.labels(app).inc(n)

    def on_expired(self, app: str) -> None:
        self.expired.labels(app).inc()
        self.tally.count(throughput.FAILED)

    def on_released(self, app: str, reason: str) -> None:
        self.released.labels(app, reason).inc()

    def on_rate_wait(self, app: str, seconds: float) -> None:
        self.rate_wait.labels(app).inc(seconds)

    def on_accepted(self, app: str, n: int = 1) -> None:
        child = self._accepted_children.get(app)
        if child is None:
            child = self._accepted_children[app] = self.accepted.labels(app)
        child.inc(n)
        self.tally.count(throughput.ACCEPTED, n)

    def on_token_service(self, key: str, action: str) -> None:
        self.token_service.labels(key, action).inc()

    def on_key_limited(self, key: str) -> None:
        self.key_limited.labels(key).inc()

    def on_receipt(self, app: str, result: str, created_at: float | None, now: float) -> None:
        self.receipts.labels(app, result).inc()
        if result == "delivered":
            self.tally.count(throughput.DELIVERED)
        elif result in throughput.FAILED_RECEIPTS:
            self.tally.count(throughput.FAILED)
        if result == "delivered" and created_at is not None:
            self.e2e_delivered.observe(self.e2e_delivered.child(app), max(0.0, now - created_at))

    def on_suppressed(self, app: str) -> None:
        self.suppressed.labels(app).inc()

    def on_receipt_unlinked(self, app: str, reason: str) -> None:
        self.receipts_unlinked.labels(app, reason).inc()

    def failures_by_errcode(self) -> dict[int, dict[str, int]]:
        """Failed send attempts since start: errcode -> disposition -> count (all apps; the
        real errcodes, where the metric says "other" for unknown ones)."""
        return {code: dict(by) for code, by in self._failures.items()}

    # ---- scrape
    async def refresh(self) -> None:
        """Pull gauges from the store and the pool right before a scrape.

        With the store unreachable the store's gauges keep their last values: the scrape
        still answers, with this process's own counters, when they matter most."""
        stats = pauses = None
        if self._store is not None:
            with contextlib.suppress(StoreError):
                stats = await self._store.stats()
                pauses = await self._store.get_pauses()
        if stats is not None:
            self._scraped.lease_expirations = dict(stats.lease_expirations)
            self.queue_depth.clear()
            for app, counts in stats.by_app.items():
                for status, n in counts.items():
                    self.queue_depth.labels(app, status).set(n)
            oldest = stats.oldest_pending_at
            self.oldest_pending_age.set(max(0.0, time.time() - oldest) if oldest else 0.0)
        if self._webhook_source is not None:
            with contextlib.suppress(StoreError):
                hooks = await self._webhook_source.webhook_stats()
                self.webhooks_pending.set(hooks.pending)
                self.webhooks_failed.set(hooks.failed)
        if self._pool is not None:
            for app, state in self._pool.app_states().items():
                current = str(state.get("breaker", "closed"))
                for st in BREAKER_STATES:
                    self.breaker.labels(app, st).set(1 if st == current else 0)
                if pauses is None:
                    self.paused.labels(app).set(1 if state.get("paused_until") else 0)
                self.in_flight.labels(app).set(float(state.get("in_flight", 0)))
                rate = state.get("rate_per_s")
                if rate is not None:
                    self.rate.labels(app).set(float(rate))
        if pauses is not None:  # the store's pauses are every process's (a worker's or not)
            paused = {p.app for p in pauses}
            for app in set(self._scraped.app_of_appid.values()) | paused:
                self.paused.labels(app).set(1 if app in paused else 0)

    async def handler(self, request: web.Request) -> web.Response:
        await self.refresh()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def access_logger(self) -> type[AbstractAccessLogger]:
        """An aiohttp access-log class that counts and times every HTTP request by its route
        pattern. aiohttp calls it once per request with the final response (HTTP errors
        included) and the time taken, which a middleware would have to measure itself."""
        observe = self._http.observe

        class _HttpMetrics(AbstractAccessLogger):
            def log(
                self, request: web.BaseRequest, response: web.StreamResponse, time: float
            ) -> None:
                match = getattr(request, "match_info", None)  # None: not even parsed
                info = match.route.resource if match is not None else None
                if info is None or info.name == UNROUTED:
                    route = "unmatched"
                else:
                    route = info.canonical
                method = request.method if request.method in HTTP_METHODS else "OTHER"
                observe(method, route, response.status, time)

        return _HttpMetrics

    def __repr__(self) -> str:
        return f"<Metrics collectors={len(list(self.registry.collect()))}>"
