"""Token bucket reserve semantics and the Asia/Shanghai quota windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfoNotFoundError

import pytest

from wxgate.clock import FakeClock
from wxgate.policy import ratelimit
from wxgate.policy.ratelimit import (
    TokenBucket,
    next_minute,
    next_shanghai_midnight,
    pause_until,
    shanghai_day,
)


def _epoch(y: int, mo: int, d: int, h: int, mi: int, s: int) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()


def test_burst_is_available_at_once() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=5, clock=FakeClock())
    assert [bucket.reserve() for _ in range(5)] == [0.0] * 5


def test_debt_queues_callers_in_arrival_order() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=2, clock=FakeClock())
    waits = [bucket.reserve() for _ in range(5)]
    assert waits[:2] == [0.0, 0.0]
    assert waits[2:] == pytest.approx([0.1, 0.2, 0.3])


def test_continuous_refill_capped_at_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10, burst=3, clock=clock)
    for _ in range(3):
        bucket.reserve()
    clock.advance(0.15)
    assert bucket.available() == pytest.approx(1.5)
    clock.advance(100)
    assert bucket.available() == pytest.approx(3.0)


def test_debt_is_paid_back_by_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=4, burst=1, clock=clock)
    assert bucket.reserve(3) == pytest.approx(0.5)  # 1 available, 2 owed at 4/s
    clock.advance(0.5)
    assert bucket.reserve() == pytest.approx(0.25)


def test_set_rate_keeps_what_was_earned() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10, burst=100, clock=clock)
    bucket.reserve(100)
    clock.advance(1.0)  # earns 10 at the old rate
    bucket.set_rate(1.0)
    assert bucket.available() == pytest.approx(10.0)
    assert bucket.reserve(12) == pytest.approx(2.0)
    assert bucket.rate_per_s == 1.0
    assert "rate=1/s" in repr(bucket)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_invalid_bucket(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, FakeClock())


def test_shanghai_day_rolls_at_16_utc() -> None:
    assert shanghai_day(_epoch(2024, 1, 1, 15, 59, 59)) == "2024-01-01"
    assert shanghai_day(_epoch(2024, 1, 1, 16, 0, 0)) == "2024-01-02"


def test_shanghai_day_cache_follows_time_both_ways() -> None:
    """The last day is cached by its bounds: asking in any order gives the right day."""
    times = [
        (_epoch(2024, 1, 1, 16, 0, 0), "2024-01-02"),
        (_epoch(2024, 1, 1, 15, 59, 59) + 0.999, "2024-01-01"),  # back across midnight
        (_epoch(2024, 1, 2, 15, 59, 59), "2024-01-02"),
        (_epoch(2024, 1, 2, 16, 0, 0), "2024-01-03"),
        (_epoch(2023, 12, 31, 16, 0, 0), "2024-01-01"),
        (_epoch(2024, 1, 1, 0, 0, 0), "2024-01-01"),
    ]
    for epoch, day in times * 2:
        assert shanghai_day(epoch) == day, epoch


def test_next_shanghai_midnight() -> None:
    assert next_shanghai_midnight(_epoch(2024, 1, 1, 3, 0, 0)) == _epoch(2024, 1, 1, 16, 0, 0)
    # Exactly at midnight: the *next* one.
    assert next_shanghai_midnight(_epoch(2024, 1, 1, 16, 0, 0)) == _epoch(2024, 1, 2, 16, 0, 0)
    # Across a month and year end.
    assert next_shanghai_midnight(_epoch(2024, 12, 31, 17, 0, 0)) == _epoch(2025, 1, 1, 16, 0, 0)


def test_next_minute() -> None:
    assert next_minute(120.0) == 180.0
    assert next_minute(179.9) == 180.0
    assert next_minute(1_700_000_030.5) == 1_700_000_040.0


def test_fixed_offset_fallback_without_tzdata(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(_key: str) -> None:
        raise ZoneInfoNotFoundError(_key)

    monkeypatch.setattr(ratelimit, "ZoneInfo", missing)
    tz = ratelimit._shanghai()
    assert tz.utcoffset(None) == timedelta(hours=8)


def test_pause_until_by_errcode() -> None:
    now = _epoch(2024, 3, 5, 10, 30, 15)
    assert pause_until(45009, now) == _epoch(2024, 3, 5, 16, 0, 0)
    assert pause_until(45011, now) == _epoch(2024, 3, 5, 10, 31, 0)
    assert pause_until(40003, now) is None
