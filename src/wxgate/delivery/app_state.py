"""Per-app delivery state in this process: breaker, cached pause, live rate (AIMD), quiet
hours, rate pressure, counts."""

from __future__ import annotations

import math
from typing import Any

from wxgate.models import AppPause
from wxgate.policy.adaptive import AimdController
from wxgate.policy.breaker import CircuitBreaker
from wxgate.policy.quiet_hours import QuietHours, for_app
from wxgate.settings import AppSettings

# Hold no more of an app's messages than its rate limit can send in about this long: the
# rest stay in the store (where other processes and apps can get at them), not asleep here.
RATE_LOOKAHEAD_S = 1.0
# The token bucket holds this many seconds of the rate (the burst after an idle spell).
RATE_BURST_S = 1.0


class AppState:
    """What the dispatcher and the pool know about one app; `snapshot()` feeds /v1/stats."""

    def __init__(
        self,
        settings: AppSettings,
        breaker: CircuitBreaker,
        adaptive: AimdController | None = None,
    ) -> None:
        self.settings = settings
        self.breaker = breaker
        # None: always the configured rate_per_s.
        self.adaptive = adaptive
        self.quiet: QuietHours | None = for_app(settings)
        self.pause: AppPause | None = None  # cached from the store (shared by all processes)
        self.in_flight = 0  # inside Dispatcher.handle right now
        self.held = 0  # leased by the pool and not finished (waiting for a slot, or in flight)
        self.rate_free_at = 0.0  # monotonic time the rate bucket is reserved up to
        self.sent = 0
        self.retried = 0
        self.dead = 0
        self.released = 0

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def rate_per_s(self) -> float:
        """The live send rate: the configured maximum, lowered by AIMD while WeChat struggles."""
        if self.adaptive is None:
            return self.settings.rate_per_s
        return self.adaptive.rate_per_s

    @property
    def burst(self) -> float:
        return max(1.0, self.rate_per_s * RATE_BURST_S)

    @property
    def max_held(self) -> int:
        """The app's concurrency cap, lowered for slow rates so sleepers don't hog slots.

        From the configured rate, not the live one: the pool sizes its leases from this once,
        and a lowered rate already keeps the app out of leases through rate_saturated()."""
        by_rate = max(1, math.ceil(self.settings.rate_per_s * RATE_LOOKAHEAD_S))
        return min(self.settings.max_concurrency, by_rate)

    def paused_until(self, now: float) -> float | None:
        if self.pause is not None and self.pause.until > now:
            return self.pause.until
        return None

    def breaker_open(self) -> bool:
        return self.breaker.state == "open"

    def rate_saturated(self, monotonic: float) -> bool:
        return self.rate_free_at - monotonic > RATE_LOOKAHEAD_S

    def snapshot(self, now: float) -> dict[str, Any]:
        until = self.paused_until(now)
        return {
            "breaker": self.breaker.state,
            "opened_until": self.breaker.opened_until,
            "paused_until": until,
            "pause_reason": self.pause.reason if until is not None and self.pause else None,
            "in_flight": self.in_flight,
            "held": self.held,
            "rate_per_s": self.rate_per_s,
            "max_rate_per_s": self.settings.rate_per_s,
            "quiet_hours": self.quiet.spec if self.quiet is not None else None,
            "quiet_until": self.quiet.end_of(now) if self.quiet is not None else None,
            "sent": self.sent,
            "retried": self.retried,
            "dead": self.dead,
            "released": self.released,
        }

    def __repr__(self) -> str:
        paused = f" paused={self.pause.reason!r}" if self.pause is not None else ""
        return (
            f"<AppState {self.name} breaker={self.breaker.state} in_flight={self.in_flight} "
            f"held={self.held} sent={self.sent} retried={self.retried} dead={self.dead} "
            f"released={self.released}{paused}>"
        )
