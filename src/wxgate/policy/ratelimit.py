"""Rate limits: a reserving token bucket (one set of refill maths, sans-IO: TokenBucket on a
clock, RateBuckets per app), and the Asia/Shanghai day and minute windows that WeChat's
quotas (45009 daily, 45011 per minute) reset on."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wxgate.clock import Clock


def _shanghai() -> tzinfo:
    try:
        return ZoneInfo("Asia/Shanghai")
    except ZoneInfoNotFoundError:
        # No tzdata on this machine. China has kept UTC+8 without DST since 1991, so a fixed
        # offset gives the same answer for every time wxgate will ever see.
        return timezone(timedelta(hours=8), "CST")


SHANGHAI = _shanghai()


# The last day asked for: (first second, first second of the next day, YYYY-MM-DD). Every send
# asks, and a datetime with strftime per send was a visible part of the dispatcher's time.
_DAY: tuple[float, float, str] = (0.0, 0.0, "")


def _shanghai_day_bounds(epoch_s: float) -> tuple[float, float, str]:
    """The Beijing-time day holding `epoch_s`: its first second, the next day's, YYYY-MM-DD."""
    global _DAY
    if _DAY[0] <= epoch_s < _DAY[1]:
        return _DAY
    local = datetime.fromtimestamp(epoch_s, SHANGHAI)
    midnight = datetime(local.year, local.month, local.day, tzinfo=SHANGHAI)
    _DAY = (
        midnight.timestamp(),
        (midnight + timedelta(days=1)).timestamp(),
        local.strftime("%Y-%m-%d"),
    )
    return _DAY


def shanghai_day(epoch_s: float) -> str:
    """The Beijing-time calendar day of `epoch_s` as YYYY-MM-DD (the daily quota's key)."""
    return _shanghai_day_bounds(epoch_s)[2]


def next_shanghai_midnight(epoch_s: float) -> float:
    """Epoch seconds of the next 00:00 Beijing time strictly after `epoch_s`."""
    return _shanghai_day_bounds(epoch_s)[1]


def next_minute(epoch_s: float) -> float:
    """Epoch seconds of the next whole minute strictly after `epoch_s` (UTC+8 is whole hours,
    so minute boundaries are the same in every zone WeChat could mean)."""
    return (math.floor(epoch_s / 60.0) + 1) * 60.0


DAILY_QUOTA_ERRCODE = 45009
MINUTE_QUOTA_ERRCODE = 45011


def pause_until(errcode: int, now: float) -> float | None:
    """When an app throttled by `errcode` may send again, or None for other codes.

    45009 (daily quota) resets at Beijing midnight (the reset time zone is unconfirmed,
    see docs/wechat-api.md §6.1; midnight Beijing is the documented presumption); 45011 at the
    next minute.
    """
    if errcode == DAILY_QUOTA_ERRCODE:
        return next_shanghai_midnight(now)
    if errcode == MINUTE_QUOTA_ERRCODE:
        return next_minute(now)
    return None


def refill(tokens: float, at: float, now: float, rate_per_s: float, burst: float) -> float:
    """A bucket's balance at `now`: `tokens` at `at`, refilled continuously at `rate_per_s` and
    capped at `burst`. A clock step back (now < at) never mints tokens."""
    return min(burst, tokens + max(0.0, now - at) * rate_per_s)


def wait_s(tokens: float, rate_per_s: float) -> float:
    """Seconds until a balance (after a reservation) is back to zero: 0.0 when not in debt."""
    return 0.0 if tokens >= 0 else -tokens / rate_per_s


class TokenBucket:
    """A token bucket with reserve semantics.

    `reserve(n)` always takes the tokens, letting the balance go negative, and returns how long
    the caller must wait before using them. Each later caller therefore waits behind the debt of
    the ones before it: waiters are served in arrival order at exactly `rate_per_s`, with no
    thundering herd of retries. Refill is continuous and capped at `burst` (`refill`).
    """

    def __init__(self, rate_per_s: float, burst: float, clock: Clock) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        if burst <= 0:
            raise ValueError("burst must be > 0")
        self._rate = float(rate_per_s)
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()
        self.reserved = 0  # tokens handed out, for metrics

    @property
    def rate_per_s(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self._tokens = refill(self._tokens, self._last, now, self._rate, self._burst)
        self._last = max(now, self._last)

    def available(self) -> float:
        """Tokens available now; negative while callers are queued on debt."""
        self._refill()
        return self._tokens

    def reserve(self, n: int = 1) -> float:
        """Take `n` tokens; return seconds to wait until they are valid (0.0 = now)."""
        self._refill()
        self._tokens -= n
        self.reserved += n
        return wait_s(self._tokens, self._rate)

    def set_rate(self, rate_per_s: float) -> None:
        """Change the rate from now on; tokens earned so far were earned at the old rate."""
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        self._refill()
        self._rate = float(rate_per_s)

    def __repr__(self) -> str:
        return (
            f"<TokenBucket rate={self._rate:g}/s burst={self._burst:g} "
            f"tokens={self._tokens:.2f} reserved={self.reserved}>"
        )


class RateBuckets:
    """One reserving bucket per app, rate and burst given with each take (the SQLite store's
    `take_rate`, kept in this process). A new app's bucket starts full."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[float, float]] = {}  # app -> (tokens, at)

    def take(self, app: str, rate_per_s: float, burst: float, n: int, now: float) -> float:
        """Reserve n tokens; seconds until they are valid (0 when available now)."""
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        tokens, at = self._state.get(app, (burst, now))
        tokens = refill(tokens, at, now, rate_per_s, burst) - n
        self._state[app] = (tokens, max(now, at))
        return wait_s(tokens, rate_per_s)

    def __repr__(self) -> str:
        return f"<RateBuckets apps={len(self._state)}>"
