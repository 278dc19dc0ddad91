"""The store as request handlers see it: every call bounded by server.store_timeout_s.

A frozen Redis holds a command for its 10 s socket timeout, a locked SQLite file for its 5 s
busy timeout; a caller waiting that long retries anyway, often without an idempotency key. So a
call that has not completed within the deadline raises StoreTimeout at once. The call itself
is abandoned, not undone: a write may still apply (the SQLite writer and Redis's group commit
finish what they were given), hence "outcome unknown" and the ids in the 503 (outcome.py).

Bulk operations whose time grows with the data (requeueing dead letters, a batch status change
that moves every message of a large batch) are not bounded: cutting them short would leave
them half-done for no gain.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, cast

from wxgate.errors import StoreTimeout
from wxgate.store.base import Store

UNBOUNDED = frozenset({"open", "close", "requeue", "set_batch_status"})


class _Watch:
    """One store call under watch: the task making it, when it is due, whether we cut it."""

    __slots__ = ("due", "fired", "task")

    def __init__(self, task: asyncio.Task[Any], due: float) -> None:
        self.task, self.due, self.fired = task, due, False


class DeadlineStore:
    """Wraps a Store: each coroutine method runs under the deadline (methods made on first use,
    so a method added to the Store protocol is bounded too without a line here).

    One timer per tick while calls are in flight, not one per call: asyncio.timeout() costs
    a timer handle per call (~7 us, a tenth of a POST's budget). A late call is cancelled the
    way asyncio.timeout does it (task.cancel, then uncancel when the CancelledError is ours),
    at most `tick_s` after its deadline."""

    def __init__(self, store: Store, deadline_s: float) -> None:
        self._store = store
        self.deadline_s = deadline_s
        self.tick_s = min(0.1, deadline_s / 4)
        self._watched: set[_Watch] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None  # a test may run several

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name in UNBOUNDED or not inspect.iscoroutinefunction(attr):
            return attr
        bounded = self._bounded(attr)
        setattr(self, name, bounded)  # found by normal lookup from now on
        return bounded

    def _bounded(
        self, fn: Callable[..., Coroutine[Any, Any, Any]]
    ) -> Callable[..., Coroutine[Any, Any, Any]]:
        deadline_s, watched = self.deadline_s, self._watched

        @functools.wraps(fn)
        async def within(*args: Any, **kwargs: Any) -> Any:
            task = asyncio.current_task()
            if task is None:  # not in a task (never on the request path): nothing to cut
                return await fn(*args, **kwargs)
            loop = asyncio.get_running_loop()
            watch = _Watch(task, loop.time() + deadline_s)
            watched.add(watch)
            if self._timer is None or self._timer_loop is not loop:
                self._timer_loop = loop
                self._timer = loop.call_later(self.tick_s, self._check, loop)
            try:
                return await fn(*args, **kwargs)
            except asyncio.CancelledError:
                if watch.fired and task.uncancel() == 0:
                    raise StoreTimeout(deadline_s) from None
                raise
            finally:
                watched.discard(watch)

        return within

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for watch in self._watched:
            if not watch.fired and watch.due <= now:
                watch.fired = True
                watch.task.cancel()
        self._timer = loop.call_later(self.tick_s, self._check, loop) if self._watched else None

    def __repr__(self) -> str:
        return (
            f"<DeadlineStore {self._store!r} deadline_s={self.deadline_s:g} "
            f"in_flight={len(self._watched)}>"
        )


def with_deadline(store: Store, deadline_s: float) -> Store:
    """`store` with every request-path call bounded by `deadline_s`."""
    return cast(Store, DeadlineStore(store, deadline_s))
