"""A circuit breaker per app: stop hammering WeChat while it is failing, probe, then resume.

closed -> open when `consecutive_failures` fail in a row, or when the failure ratio over the
last `window` outcomes reaches `failure_ratio` once `min_calls` have been seen. open lasts
`open_s`; then half-open lets `half_open_probes` calls through: as many successes close it,
one failure reopens it.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from wxgate.clock import Clock
from wxgate.settings import BreakerSettings

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, settings: BreakerSettings, clock: Clock) -> None:
        self._s = settings
        self._clock = clock
        self._state: State = "closed"
        self._outcomes: deque[bool] = deque(maxlen=max(1, settings.window))
        self._window_failures = 0
        self._consecutive = 0
        self._open_until_mono = 0.0
        self._probes_allowed = 0
        self._probe_successes = 0
        self._half_open_since = 0.0
        # Lifetime counters for repr and metrics.
        self.successes = 0
        self.failures = 0
        self.opens = 0
        self.rejected = 0

    # ---------------------------------------------------------------- queries

    @property
    def state(self) -> State:
        self._tick()
        return self._state

    @property
    def opened_until(self) -> float | None:
        """Epoch seconds when the open state ends, or None unless open."""
        if self.state != "open":
            return None
        return self._clock.now() + (self._open_until_mono - self._clock.monotonic())

    def allow(self) -> bool:
        """May a call go out now? In half-open, each True is one of the limited probes."""
        self._tick()
        if self._state == "closed":
            return True
        if self._state == "half_open" and self._probes_allowed < self._s.half_open_probes:
            self._probes_allowed += 1
            return True
        self.rejected += 1
        return False

    # ---------------------------------------------------------------- outcomes

    def record(self, success: bool) -> None:
        """Feed one outcome of a call that `allow()` let through."""
        self._tick()
        if success:
            self.successes += 1
        else:
            self.failures += 1
        if self._state == "open":
            return  # a call from before the trip finished late; it says nothing new
        if self._state == "half_open":
            if not success:
                self._open()
                return
            self._probe_successes += 1
            if self._probe_successes >= self._s.half_open_probes:
                self._close()
            return
        self._push(success)
        self._consecutive = 0 if success else self._consecutive + 1
        if self._consecutive >= self._s.consecutive_failures or self._ratio_tripped():
            self._open()

    # ---------------------------------------------------------------- transitions

    def _push(self, success: bool) -> None:
        if len(self._outcomes) == self._outcomes.maxlen and not self._outcomes[0]:
            self._window_failures -= 1
        self._outcomes.append(success)
        if not success:
            self._window_failures += 1

    def _ratio_tripped(self) -> bool:
        seen = len(self._outcomes)
        if seen < max(1, self._s.min_calls):
            return False
        return self._window_failures / seen >= self._s.failure_ratio

    def _open(self) -> None:
        self._state = "open"
        self._open_until_mono = self._clock.monotonic() + self._s.open_s
        self.opens += 1

    def _close(self) -> None:
        self._state = "closed"
        self._outcomes.clear()
        self._window_failures = 0
        self._consecutive = 0

    def _tick(self) -> None:
        now = self._clock.monotonic()
        if self._state == "open" and now >= self._open_until_mono:
            self._half_open(now)
        elif (
            self._state == "half_open"
            and self._probes_allowed >= self._s.half_open_probes
            and now - self._half_open_since >= self._s.open_s
        ):
            # Probes were let out but never reported (cancelled, or the caller gave up before
            # the call): without this the breaker would stay half-open and shut forever.
            self._half_open(now)

    def _half_open(self, now: float) -> None:
        self._state = "half_open"
        self._probes_allowed = 0
        self._probe_successes = 0
        self._half_open_since = now

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker state={self.state} window={len(self._outcomes)}"
            f"/{self._window_failures} failed consecutive={self._consecutive} "
            f"opens={self.opens} ok={self.successes} failed={self.failures} "
            f"rejected={self.rejected}>"
        )
