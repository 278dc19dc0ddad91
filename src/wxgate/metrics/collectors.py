"""The collectors Metrics builds on: plain-list histograms, per-route HTTP counts, and counts
owned by other objects (token broker, store) read at scrape time; and what they read from."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class StatsSource(Protocol):
    async def stats(self) -> Any: ...
    async def get_pauses(self) -> Any: ...


class WebhookSource(Protocol):
    async def webhook_stats(self) -> Any: ...


class PoolSource(Protocol):
    def app_states(self) -> Mapping[str, Mapping[str, Any]]: ...


class BrokerSource(Protocol):
    """The counters of wechat.tokens.TokenBroker (by appid)."""

    @property
    def fetches(self) -> Mapping[str, int]: ...
    @property
    def fetch_failures(self) -> Mapping[str, int]: ...
    @property
    def invalidations(self) -> int: ...


class Scraped(Collector):
    """Counters owned by other objects, read when Prometheus scrapes."""

    def __init__(self) -> None:
        self.broker: BrokerSource | None = None
        self.app_of_appid: dict[str, str] = {}
        self.lease_expirations: dict[str, int] | None = None  # from the store, by refresh()

    def collect(self) -> Iterator[Metric]:
        broker = self.broker
        if broker is not None:
            fetches = CounterMetricFamily(
                "wxgate_token_fetches",
                "access_token fetches from WeChat by this process (tries, failed ones included)",
                labels=["app"],
            )
            failures = CounterMetricFamily(
                "wxgate_token_fetch_failures",
                "access_token fetches that failed (WeChat error or no answer)",
                labels=["app"],
            )
            for appid, app in self.app_of_appid.items():
                fetches.add_metric([app], broker.fetches.get(appid, 0))
                failures.add_metric([app], broker.fetch_failures.get(appid, 0))
            yield fetches
            yield failures
            yield CounterMetricFamily(
                "wxgate_token_invalidations",
                "Cached access_tokens dropped after WeChat rejected them",
                value=broker.invalidations,
            )
        if self.lease_expirations is not None:
            expired = CounterMetricFamily(
                "wxgate_lease_expirations",
                "Leases taken over after they expired (a worker crashed or hung): the whole "
                "deployment's count, read from the store",
                labels=["app"],
            )
            for app in sorted(set(self.app_of_appid.values()) | set(self.lease_expirations)):
                expired.add_metric([app], self.lease_expirations.get(app, 0))
            yield expired


class Histogram(Collector):
    """One histogram family kept in plain lists: an observation is a bisect and two list
    updates, where prometheus_client's Histogram takes a lock and walks every bucket. For the
    series observed once per request or per send; read only at scrape time."""

    def __init__(
        self, name: str, documentation: str, labelnames: list[str], buckets: tuple[float, ...]
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self.buckets = buckets
        self._bounds = [repr(float(b)) for b in buckets] + ["+Inf"]  # as prometheus_client
        # label values -> a count per bucket (the last one +Inf), then the sum of values
        self._children: dict[tuple[str, ...], list[float]] = {}

    def child(self, *labels: str) -> list[float]:
        found = self._children.get(labels)
        if found is None:
            found = self._children[labels] = [0.0] * (len(self.buckets) + 2)
        return found

    def observe(self, child: list[float], value: float) -> None:
        child[bisect.bisect_left(self.buckets, value)] += 1  # le is inclusive
        child[-1] += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, counts in self._children.items():
            cumulative: list[tuple[str, float]] = []
            total = 0.0
            for bound, count in zip(self._bounds, counts, strict=False):  # counts end with sum
                total += count
                cumulative.append((bound, total))
            family.add_metric(list(labels), cumulative, counts[-1])
        yield family


class HttpStats(Collector):
    """HTTP request counts and latency, counted per request by the access logger."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        self.latency = Histogram(
            "wxgate_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.latency.observe(self.latency.child(method, route), seconds)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "wxgate_http_requests",
            "HTTP requests by route and status",
            labels=["method", "route", "status"],
        )
        for (method, route, status), n in self.counts.items():
            requests.add_metric([method, route, str(status)], n)
        yield requests
        yield from self.latency.collect()
