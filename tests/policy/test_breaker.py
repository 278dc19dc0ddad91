"""Circuit breaker transitions, driven by a FakeClock."""

from __future__ import annotations

from wxgate.clock import FakeClock
from wxgate.policy.breaker import CircuitBreaker
from wxgate.settings import BreakerSettings


def _breaker(**overrides: float) -> tuple[CircuitBreaker, FakeClock]:
    values: dict[str, float] = {
        "consecutive_failures": 3,
        "failure_ratio": 0.5,
        "window": 10,
        "min_calls": 6,
        "open_s": 10.0,
        "half_open_probes": 2,
    }
    values.update(overrides)
    settings = BreakerSettings(
        consecutive_failures=int(values["consecutive_failures"]),
        failure_ratio=values["failure_ratio"],
        window=int(values["window"]),
        min_calls=int(values["min_calls"]),
        open_s=values["open_s"],
        half_open_probes=int(values["half_open_probes"]),
    )
    clock = FakeClock()
    return CircuitBreaker(settings, clock), clock


def test_starts_closed() -> None:
    breaker, _ = _breaker()
    assert breaker.state == "closed"
    assert breaker.allow()
    assert breaker.opened_until is None


def test_consecutive_failures_open_it() -> None:
    breaker, clock = _breaker()
    breaker.record(False)
    breaker.record(False)
    assert breaker.state == "closed"
    breaker.record(False)
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.opened_until == clock.now() + 10.0


def test_a_success_resets_the_run() -> None:
    breaker, _ = _breaker(min_calls=100)
    for _ in range(5):
        breaker.record(False)
        breaker.record(False)
        breaker.record(True)
    assert breaker.state == "closed"


def test_failure_ratio_needs_min_calls() -> None:
    breaker, _ = _breaker(consecutive_failures=100)
    for success in (False, True, False, True, False):
        breaker.record(success)
    assert breaker.state == "closed"  # 3/5 failed but only 5 < min_calls seen
    breaker.record(True)  # 3/6 = 0.5 reaches the ratio
    assert breaker.state == "open"


def test_ratio_is_over_the_sliding_window() -> None:
    breaker, _ = _breaker(consecutive_failures=100, window=4, min_calls=4, failure_ratio=0.75)
    for success in (False, False, True, False):
        breaker.record(success)  # 3/4 failed
    assert breaker.state == "open"

    breaker, _ = _breaker(consecutive_failures=100, window=4, min_calls=4, failure_ratio=0.75)
    for success in (False, False, True, True, True, False, False):
        breaker.record(success)  # last four: T T F F = 2/4, the old failures slid out
    assert breaker.state == "closed"


def test_half_open_after_open_s_lets_limited_probes_through() -> None:
    breaker, clock = _breaker()
    for _ in range(3):
        breaker.record(False)
    clock.advance(9.9)
    assert breaker.state == "open"
    clock.advance(0.1)
    assert breaker.state == "half_open"
    assert breaker.opened_until is None
    assert breaker.allow()
    assert breaker.allow()
    assert not breaker.allow()  # only two probes


def test_successful_probes_close_it() -> None:
    breaker, clock = _breaker()
    for _ in range(3):
        breaker.record(False)
    clock.advance(10)
    assert breaker.allow() and breaker.allow()
    breaker.record(True)
    assert breaker.state == "half_open"
    breaker.record(True)
    assert breaker.state == "closed"
    # The old failures are forgotten: two new failures do not trip it.
    breaker.record(False)
    breaker.record(False)
    assert breaker.state == "closed"


def test_a_failed_probe_reopens_it() -> None:
    breaker, clock = _breaker()
    for _ in range(3):
        breaker.record(False)
    clock.advance(10)
    assert breaker.allow()
    breaker.record(False)
    assert breaker.state == "open"
    assert breaker.opens == 2
    assert breaker.opened_until == clock.now() + 10.0


def test_late_outcomes_while_open_change_nothing() -> None:
    breaker, clock = _breaker()
    for _ in range(3):
        breaker.record(False)
    breaker.record(True)
    breaker.record(True)
    assert breaker.state == "open"
    clock.advance(10)
    assert breaker.state == "half_open"


def test_lost_probes_do_not_wedge_half_open() -> None:
    breaker, clock = _breaker()
    for _ in range(3):
        breaker.record(False)
    clock.advance(10)
    assert breaker.allow() and breaker.allow()
    assert not breaker.allow()
    clock.advance(10)  # the probes never reported back
    assert breaker.allow()


def test_repr_has_counts() -> None:
    breaker, _ = _breaker()
    breaker.record(True)
    breaker.record(False)
    text = repr(breaker)
    assert "state=closed" in text and "ok=1" in text and "failed=1" in text
