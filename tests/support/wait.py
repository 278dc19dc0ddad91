"""Polling with a deadline, shared by every test that waits for the gateway or the simulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_until(
    predicate: Callable[[], Awaitable[Any] | Any],
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
    progress: Callable[[], Awaitable[Any] | Any] | None = None,
) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` (and the last
    `progress` reading) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            seen = None
            if progress is not None:
                seen = progress()
                if asyncio.iscoroutine(seen):
                    seen = await seen
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; {seen}")
        await asyncio.sleep(interval_s)
