"""Retry delays: exponential growth with full jitter (AWS architecture blog, "Exponential
Backoff And Jitter"), so a burst of failures does not come back as a synchronized burst."""

from __future__ import annotations

import random
from collections.abc import Callable

# 2**62 already exceeds any sane cap; stopping the exponent there avoids float overflow.
_MAX_EXPONENT = 62


def delay_s(
    attempt: int,
    base_s: float,
    cap_s: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before retry number `attempt` (1-based): rand() * min(cap, base * 2**(n-1))."""
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    ceiling = min(cap_s, base_s * 2.0**exponent)
    return max(0.0, rand() * ceiling)
