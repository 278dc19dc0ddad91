"""Coalescing: concurrent callers share one round trip (the Redis store's group commit)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")


class Coalescer(Generic[A, R]):
    """Runs `run(items)` over whatever was submitted while the previous run was in flight.

    The first caller does not wait for company: its run starts on the next loop turn, and
    callers that arrive meanwhile ride the following run. By default one run is in flight at
    a time, so under load each round trip carries many callers and the rate grows with
    concurrency. `in_flight` > 1 lets that many runs overlap: for a store whose runs are
    independent transactions on a pool (PostgreSQL), a run waiting for its commit's WAL flush
    no longer holds back the next group, and the server flushes both in one fsync.
    `run` returns one result per item, in order; if it raises, every caller of that run does.
    """

    def __init__(
        self, run: Callable[[list[A]], Awaitable[list[R]]], max_items: int, in_flight: int = 1
    ) -> None:
        self._run = run
        self._max_items = max_items
        self._in_flight = max(1, in_flight)
        self._queue: list[tuple[A, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy = 0  # drains running a chunk now
        self.runs = 0
        self.items = 0

    async def submit(self, item: A) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        if len(self._tasks) < self._in_flight and self._idle_drains() == 0:
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)  # also one cancelled before it ran
        return await fut

    def _idle_drains(self) -> int:
        """Drains started but not running a chunk yet: they will take what is queued."""
        return len(self._tasks) - self._busy

    async def _drain(self) -> None:
        me = asyncio.current_task()
        try:
            while self._queue:
                chunk = self._queue[: self._max_items]
                del self._queue[: self._max_items]
                self.runs += 1
                self.items += len(chunk)
                self._busy += 1
                try:
                    results = await self._run([item for item, _ in chunk])
                except asyncio.CancelledError:
                    for _, fut in chunk:
                        fut.cancel()
                    raise
                except Exception as exc:
                    for _, fut in chunk:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                finally:
                    self._busy -= 1
                for (_, fut), result in zip(chunk, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            # Synchronously (not in a done callback): a submit right after must see the slot.
            if me is not None:
                self._tasks.discard(me)

    async def wait_idle(self) -> None:
        """Return once nothing is queued or in flight (used by close)."""
        while self._tasks:
            await asyncio.shield(next(iter(self._tasks)))

    def __repr__(self) -> str:
        return f"<Coalescer queued={len(self._queue)} runs={self.runs} items={self.items}>"
