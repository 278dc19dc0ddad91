"""store/coalesce.py: callers share runs; with in_flight > 1, runs overlap (PostgreSQL's
enqueue groups, so one group's commit wait does not hold back the next)."""

from __future__ import annotations

import asyncio

from support.wait import wait_until


class GatedRuns:
    """A run that records its items and waits for the test to let it finish."""

    def __init__(self) -> None:
        self.started: list[list[int]] = []
        self.active = 0
        self.most_active = 0
        self.gate = asyncio.Event()

    async def run(self, items: list[int]) -> list[int]:
        self.started.append(items)
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await self.gate.wait()
        finally:
            self.active -= 1
        return [i * 10 for i in items]


async def _turns(n: int = 10) -> None:
    """A few event-loop turns: enough for submitted callers and a new run to get going."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_one_run_in_flight_by_default() -> None:
    from wxgate.store.coalesce import Coalescer

    runs = GatedRuns()
    c: Coalescer[int, int] = Coalescer(runs.run, 100)
    first = asyncio.create_task(c.submit(1))
    await wait_until(lambda: runs.started == [[1]], 10, "the first run", 0.001)
    rest = [asyncio.create_task(c.submit(i)) for i in (2, 3, 4)]
    await _turns()  # a second run would have started by now
    assert runs.started == [[1]]
    runs.gate.set()
    assert await asyncio.gather(first, *rest) == [10, 20, 30, 40]
    assert runs.started == [[1], [2, 3, 4]]  # the waiting callers shared the next run
    assert runs.most_active == 1
    await c.wait_idle()


async def test_in_flight_runs_overlap_up_to_the_limit() -> None:
    from wxgate.store.coalesce import Coalescer

    runs = GatedRuns()
    c: Coalescer[int, int] = Coalescer(runs.run, 100, in_flight=2)
    first = asyncio.create_task(c.submit(1))
    await wait_until(lambda: runs.active == 1, 10, "the first run", 0.001)
    second = asyncio.create_task(c.submit(2))
    await wait_until(lambda: runs.active == 2, 10, "a second run beside the first", 0.001)
    rest = [asyncio.create_task(c.submit(i)) for i in (3, 4, 5)]
    await _turns()
    assert runs.started == [[1], [2]]  # both slots busy: the rest wait together
    runs.gate.set()
    assert await asyncio.gather(first, second, *rest) == [10, 20, 30, 40, 50]
    assert runs.started[2:] == [[3, 4, 5]]
    assert runs.most_active == 2
    await c.wait_idle()
    # Slots are given back: a later caller starts a run at once.
    assert await c.submit(6) == 60


async def test_a_failed_run_fails_only_its_callers() -> None:
    from wxgate.store.coalesce import Coalescer

    async def run(items: list[int]) -> list[int]:
        if 0 in items:
            raise ValueError("bad item")
        return items

    c: Coalescer[int, int] = Coalescer(run, 100, in_flight=2)
    bad = asyncio.create_task(c.submit(0))
    await asyncio.gather(bad, return_exceptions=True)
    assert isinstance(bad.exception(), ValueError)
    assert await asyncio.gather(c.submit(7), c.submit(8)) == [7, 8]
    await c.wait_idle()
