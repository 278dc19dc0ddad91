"""SharedState's chart-history ring: per-second counts added by any process, summed per
second, read oldest first from a second on, and kept for an hour."""

from __future__ import annotations

from wxgate.clock import FakeClock
from wxgate.metrics.throughput import KEEP_S
from wxgate.store.base import Store


class ThroughputContract:
    async def test_counts_add_up_per_second_across_writers(
        self, store: Store, clock: FakeClock
    ) -> None:
        t = int(clock.now())
        await store.add_throughput({t: [3, 2, 1, 0], t + 1: [1, 0, 0, 1]})
        await store.add_throughput({t: [1, 1, 0, 2]})  # another process, the same second
        assert await store.throughput(t) == [(t, 4, 3, 1, 2), (t + 1, 1, 0, 0, 1)]
        assert await store.throughput(t + 1) == [(t + 1, 1, 0, 0, 1)]
        assert await store.throughput(t + 2) == []

    async def test_seconds_with_nothing_are_left_out(self, store: Store, clock: FakeClock) -> None:
        t = int(clock.now())
        await store.add_throughput({t: [1, 0, 0, 0], t + 90: [0, 1, 0, 0]})  # next minute
        assert await store.throughput(t) == [(t, 1, 0, 0, 0), (t + 90, 0, 1, 0, 0)]

    async def test_an_empty_write_is_nothing(self, store: Store, clock: FakeClock) -> None:
        await store.add_throughput({})
        assert await store.throughput(int(clock.now()) - KEEP_S) == []
