"""Adaptive send rate per app (AIMD): halve when WeChat struggles, add back slowly when clean.

"Struggles" means answers that say the other side is overloaded or unreachable: -1 (system
busy), 45011 (minute quota), HTTP 5xx and timeouts or resets. Every other answer, success or
a definite error about the message itself, is clean. Decisions happen at most once per
`interval_s`: a decrease when the bad ratio over the last `window` outcomes reaches
`threshold` (with at least `min_samples` of them and a bad one in the interval just ended;
the window then starts afresh, so a burst halves the rate at most once per interval, not once
per bad answer), otherwise an additive step up
when the interval just ended had answers and none was bad, and the window holds at least
`min_samples` answers with a bad ratio under `threshold` (a lucky handful of probes during a
burst is not a recovery). An interval without sends changes
nothing: while the breaker is open or the app is paused there is no news either way, and
climbing back blind would meet the next burst at full speed. The rate stays within
[floor_per_s, max_rate_per_s].
"""

from __future__ import annotations

from collections import deque

from wxgate.clock import Clock
from wxgate.errors import TransportError, WeChatError
from wxgate.settings import AdaptiveSettings

ERRCODE_BUSY = -1
ERRCODE_MINUTE_QUOTA = 45011
CONGESTION_ERRCODES = frozenset({ERRCODE_BUSY, ERRCODE_MINUTE_QUOTA})


def is_congestion(exc: WeChatError) -> bool:
    """-1, 45011, and transport failures (5xx, timeouts, resets, refused connections)."""
    return isinstance(exc, TransportError) or exc.errcode in CONGESTION_ERRCODES


class AimdController:
    """The live rate of one app. `record()` each outcome; read `rate_per_s` before each send."""

    def __init__(self, max_rate_per_s: float, settings: AdaptiveSettings, clock: Clock) -> None:
        if max_rate_per_s <= 0:
            raise ValueError("max_rate_per_s must be > 0")
        self._s = settings
        self._clock = clock
        self.max_rate_per_s = float(max_rate_per_s)
        self.floor_per_s = min(settings.floor_per_s, self.max_rate_per_s)
        self.step_per_s = settings.increase_ratio * self.max_rate_per_s
        self._rate = self.max_rate_per_s
        self._window: deque[bool] = deque(maxlen=max(1, settings.window))  # True = bad
        self._window_bad = 0
        self._interval_n = 0
        self._interval_bad = 0
        self._next_tick = clock.monotonic() + settings.interval_s
        # Lifetime counters for repr and tests.
        self.decreases = 0
        self.increases = 0

    @property
    def enabled(self) -> bool:
        return self._s.enabled

    @property
    def rate_per_s(self) -> float:
        """The rate to send at now (the configured maximum when disabled)."""
        if not self._s.enabled:
            return self.max_rate_per_s
        self._tick()
        return self._rate

    def record(self, bad: bool) -> None:
        """One send's outcome: bad = congestion (see is_congestion)."""
        if not self._s.enabled:
            return
        self._tick()
        if len(self._window) == self._window.maxlen and self._window[0]:
            self._window_bad -= 1
        self._window.append(bad)
        self._interval_n += 1
        if bad:
            self._window_bad += 1
            self._interval_bad += 1

    def record_error(self, exc: WeChatError) -> None:
        self.record(is_congestion(exc))

    def _tick(self) -> None:
        now = self._clock.monotonic()
        if now < self._next_tick:
            return
        interval = self._s.interval_s
        # Intervals after the first that ended meanwhile saw no send: nothing to decide.
        self._next_tick += (int((now - self._next_tick) // interval) + 1) * interval
        self._decide()

    def _decide(self) -> None:
        """End of one interval."""
        n = len(self._window)
        # Only an interval that itself saw congestion may lower the rate: old bad answers
        # still in the window of a quiet app are no news.
        congested = self._interval_bad > 0 and self._window_bad >= self._s.threshold * n
        if congested and n >= self._s.min_samples:
            self._rate = max(self.floor_per_s, self._rate * self._s.decrease)
            self.decreases += 1
            self._window.clear()
            self._window_bad = 0
        elif (
            self._interval_n
            and not self._interval_bad
            and n >= self._s.min_samples
            and self._window_bad < self._s.threshold * n
            and self._rate < self.max_rate_per_s
        ):
            self._rate = min(self.max_rate_per_s, self._rate + self.step_per_s)
            self.increases += 1
        self._interval_n = 0
        self._interval_bad = 0

    def __repr__(self) -> str:
        return (
            f"<AimdController rate={self._rate:g}/s max={self.max_rate_per_s:g}/s "
            f"window={len(self._window)} bad={self._window_bad} decreases={self.decreases} "
            f"increases={self.increases}>"
        )
