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


class DeadlineStore:
    """Wraps a Store: each coroutine method runs under the deadline (methods made on first use,
    so a method added to the Store protocol is bounded too without a line here)."""

    def __init__(self, store: Store, deadline_s: float) -> None:
        self._store = store
        self.deadline_s = deadline_s

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
        deadline_s = self.deadline_s

        @functools.wraps(fn)
        async def within(*args: Any, **kwargs: Any) -> Any:
            try:
                async with asyncio.timeout(deadline_s) as scope:
                    return await fn(*args, **kwargs)
            except TimeoutError:
                if scope.expired():
                    raise StoreTimeout(deadline_s) from None
                raise

        return within

    def __repr__(self) -> str:
        return f"<DeadlineStore {self._store!r} deadline_s={self.deadline_s:g}>"


def with_deadline(store: Store, deadline_s: float) -> Store:
    """`store` with every request-path call bounded by `deadline_s`."""
    return cast(Store, DeadlineStore(store, deadline_s))
