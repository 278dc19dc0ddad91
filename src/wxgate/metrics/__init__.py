"""Prometheus collectors for one gateway process, and the /metrics handler.

Label sets are bounded: app names, dispositions, errcodes (the known ones; any other is
"other"), routes (the matched pattern, never the raw path), statuses. Never a label per openid
or message. Counts that live elsewhere (the token broker's fetches, the store's lease
expirations) are read at scrape time by a collector of their own (Scraped).
"""

from __future__ import annotations

from wxgate.metrics.registry import (
    BREAKER_STATES,
    E2E_BUCKETS_S,
    HTTP_METHODS,
    LATENCY_BUCKETS_S,
    MAX_ERRCODES_KEPT,
    UNROUTED,
    Metrics,
)

__all__ = [
    "BREAKER_STATES",
    "E2E_BUCKETS_S",
    "HTTP_METHODS",
    "LATENCY_BUCKETS_S",
    "MAX_ERRCODES_KEPT",
    "UNROUTED",
    "Metrics",
]
