"""ThrottledLog: one line per key per interval, saying how many it held back."""

from __future__ import annotations

import logging

import pytest

from wxgate.api.throttled_log import ThrottledLog
from wxgate.clock import FakeClock


def test_one_line_per_key_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    throttled = ThrottledLog(logging.getLogger("t.throttle"), clock, interval_s=60.0)
    caplog.set_level(logging.WARNING, "t.throttle")
    assert throttled.warning("shop", "refused: %s", "bad signature")
    assert not any(throttled.warning("shop", "refused: %s", "again") for _ in range(99))
    assert throttled.warning("news", "refused: %s", "other app")  # its own key
    clock.advance(60.0)
    assert throttled.warning("shop", "refused: %s", "later")
    assert [r.getMessage() for r in caplog.records] == [
        "refused: bad signature",
        "refused: other app",
        "refused: later (99 more not logged in the last 60 s)",
    ]
    assert repr(throttled) == "<ThrottledLog keys=2 held=0>"
