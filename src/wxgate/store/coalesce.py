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
    callers that arrive meanwhile ride the following run. One run is in flight at a time, so
    under load each round trip carries many callers and the rate grows with concurrency.
    `run` returns one result per item, in order; if it raises, every caller of that run does.
    """

    def __init__(self, run: Callable[[list[A]], Awaitable[list[R]]], max_items: int) -> None:
        self._run = run
        self._max_items = max_items
        self._queue: list[tuple[A, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self.runs = 0
        self.items = 0

    async def submit(self, item: A) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self._queue:
                chunk = self._queue[: self._max_items]
                del self._queue[: self._max_items]
                self.runs += 1
                self.items += len(chunk)
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
                for (_, fut), result in zip(chunk, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            self._task = None

    async def wait_idle(self) -> None:
        """Return once nothing is queued or in flight (used by close)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    def __repr__(self) -> str:
        return f"<Coalescer queued={len(self._queue)} runs={self.runs} items={self.items}>"
