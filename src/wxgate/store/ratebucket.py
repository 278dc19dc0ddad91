"""Per-app token buckets kept in this process (the SQLite backend's `take_rate`).

A database round trip per send would cost more than the send budget, and an embedded
deployment is one process, so the bucket lives in memory. Redis shares its bucket instead.
"""

from __future__ import annotations


class RateBuckets:
    """Continuous refill at `rate_per_s` up to `burst`; reservations may run into debt."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[float, float]] = {}  # app -> (tokens, at)

    def take(self, app: str, rate_per_s: float, burst: float, n: int, now: float) -> float:
        """Reserve n tokens; seconds until they are valid (0 when available now)."""
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        tokens, at = self._state.get(app, (burst, now))
        elapsed = max(0.0, now - at)  # a clock step back never mints tokens
        tokens = min(burst, tokens + elapsed * rate_per_s) - n
        self._state[app] = (tokens, max(now, at))
        return 0.0 if tokens >= 0 else -tokens / rate_per_s

    def __repr__(self) -> str:
        return f"<RateBuckets apps={len(self._state)}>"
