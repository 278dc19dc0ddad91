"""The AIMD controller on a fake clock: halve on congestion, add back per clean interval,
stay within [floor, max], and tell congestion from other answers."""

from __future__ import annotations

import msgspec
import pytest

from wxgate.clock import FakeClock
from wxgate.errors import NotSent, OutcomeUnknown, TransportError, WeChatError
from wxgate.policy.adaptive import AimdController, is_congestion
from wxgate.settings import AdaptiveSettings

S = AdaptiveSettings(
    interval_s=1.0, window=20, min_samples=5, threshold=0.2, increase_ratio=0.1, floor_per_s=1
)


def aimd(
    max_rate: float = 100.0, settings: AdaptiveSettings = S
) -> tuple[AimdController, FakeClock]:
    clock = FakeClock()
    return AimdController(max_rate, settings, clock), clock


def feed(c: AimdController, good: int, bad: int) -> None:
    for _ in range(good):
        c.record(False)
    for _ in range(bad):
        c.record(True)


def test_starts_at_the_configured_maximum() -> None:
    c, clock = aimd()
    assert c.rate_per_s == 100
    feed(c, 50, 0)
    clock.advance(1)
    assert c.rate_per_s == 100  # never above the maximum


def test_a_congested_interval_halves_the_rate_once() -> None:
    c, clock = aimd()
    feed(c, 5, 5)
    assert c.rate_per_s == 100  # decisions happen at the end of the interval
    clock.advance(1)
    assert c.rate_per_s == 50 and c.decreases == 1
    clock.advance(0.5)
    assert c.rate_per_s == 50  # the window started afresh: the same answers do not count twice


def test_recovers_additively_while_clean() -> None:
    c, clock = aimd()
    feed(c, 0, 10)
    clock.advance(1)
    assert c.rate_per_s == 50
    rates = []
    for _ in range(6):
        feed(c, 10, 0)
        clock.advance(1)
        rates.append(c.rate_per_s)
    assert rates == [60, 70, 80, 90, 100, 100]


def test_idle_intervals_hold_the_rate() -> None:
    """No sends (breaker open, app paused, no traffic) is no news: the rate stays put."""
    c, clock = aimd()
    feed(c, 0, 10)
    clock.advance(1)
    assert c.rate_per_s == 50
    clock.advance(3600)
    assert c.rate_per_s == 50
    feed(c, 5, 0)  # traffic again, clean: one step per interval
    clock.advance(1)
    assert c.rate_per_s == 60


def test_a_lucky_handful_is_not_a_recovery() -> None:
    """Right after a decrease the window starts afresh: a few clean answers (say the breaker's
    half-open probes in the middle of a burst) do not raise the rate; min_samples do."""
    c, clock = aimd()
    feed(c, 0, 10)
    clock.advance(1)
    feed(c, 3, 0)
    clock.advance(1)
    assert c.rate_per_s == 50
    feed(c, 2, 0)
    clock.advance(1)
    assert c.rate_per_s == 60


def test_a_clean_interval_after_a_bad_spell_waits_for_the_ratio() -> None:
    c, clock = aimd(settings=msgspec.structs.replace(S, min_samples=8))
    feed(c, 0, 10)
    clock.advance(1)
    assert c.rate_per_s == 50
    feed(c, 2, 2)  # too few to decide on
    clock.advance(1)
    feed(c, 4, 0)  # a clean interval, but the window is 2 bad in 8 (25%)
    clock.advance(1)
    assert c.rate_per_s == 50
    feed(c, 2, 0)  # 2 in 10: not under the 20% threshold yet
    clock.advance(1)
    assert c.rate_per_s == 50
    feed(c, 1, 0)  # 2 in 11
    clock.advance(1)
    assert c.rate_per_s == 60


def test_below_the_threshold_holds_the_rate() -> None:
    c, clock = aimd()
    feed(c, 0, 10)
    clock.advance(1)
    feed(c, 19, 1)  # 5% bad: not congested, not clean either
    clock.advance(1)
    assert c.rate_per_s == 50 and c.decreases == 1


def test_too_few_samples_do_not_decrease() -> None:
    c, clock = aimd()
    feed(c, 0, 4)  # below min_samples
    clock.advance(1)
    assert c.rate_per_s == 100
    feed(c, 0, 1)  # the window now holds 5, all bad
    clock.advance(1)
    assert c.rate_per_s == 50


def test_old_bad_answers_alone_do_not_decrease() -> None:
    c, clock = aimd(settings=msgspec.structs.replace(S, min_samples=8))
    feed(c, 0, 4)
    clock.advance(1)
    feed(c, 4, 0)  # 8 in the window, half bad, but this interval was clean
    clock.advance(1)
    assert c.rate_per_s == 100 and c.decreases == 0


def test_never_below_the_floor() -> None:
    c, clock = aimd(max_rate=10)
    for _ in range(10):
        feed(c, 0, 10)
        clock.advance(1)
    assert c.rate_per_s == 1


def test_disabled_is_the_maximum() -> None:
    c, clock = aimd(settings=AdaptiveSettings(enabled=False))
    feed(c, 0, 100)
    clock.advance(5)
    assert c.rate_per_s == 100 and c.decreases == 0


@pytest.mark.parametrize(
    ("exc", "congestion"),
    [
        (WeChatError(-1, "system busy"), True),
        (WeChatError(45011, "api minute-quota reach limit"), True),
        (OutcomeUnknown("timeout"), True),
        (OutcomeUnknown("HTTP 502"), True),
        (NotSent("connection refused"), True),
        (TransportError("reset"), True),
        (WeChatError(40003, "invalid openid"), False),
        (WeChatError(45009, "daily quota"), False),
        (WeChatError(48001, "api unauthorized"), False),
    ],
)
def test_what_counts_as_congestion(exc: WeChatError, congestion: bool) -> None:
    assert is_congestion(exc) is congestion


def test_repr_shows_the_rate() -> None:
    c, _ = aimd()
    assert "rate=100/s" in repr(c)
