"""The queue-depth limit: 429 once too many messages wait, without a store query per request.

The depth is read from store.stats() at most once per `refresh_s` and advanced locally by what
this process accepted since, so the hot path costs one comparison.
"""

from __future__ import annotations

from wxgate.api.errors import ApiError
from wxgate.clock import Clock
from wxgate.models import PENDING_STATUSES
from wxgate.store.base import Store

RETRY_AFTER_S = 5


class DepthGuard:
    def __init__(self, store: Store, clock: Clock, limit: int, refresh_s: float = 1.0) -> None:
        self.limit = limit
        self._store = store
        self._clock = clock
        self._refresh_s = refresh_s
        self._depth = 0
        self._read_at: float | None = None

    async def admit(self, n: int) -> None:
        """Raise a 429 ApiError when `n` more messages would pass the limit."""
        if self.limit <= 0:
            return
        now = self._clock.monotonic()
        if self._read_at is None or now - self._read_at >= self._refresh_s:
            self._read_at = now  # set first: concurrent callers use the old value meanwhile
            try:
                stats = await self._store.stats()
            except BaseException:
                self._read_at = None
                raise
            self._depth = sum(stats.by_status.get(s.value, 0) for s in PENDING_STATUSES)
        if self._depth + n > self.limit:
            raise ApiError(
                429,
                "queue_full",
                f"{self._depth} messages are waiting (limit {self.limit}); try again later",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )

    def accepted(self, n: int) -> None:
        if self.limit > 0:
            self._depth += n

    def __repr__(self) -> str:
        return f"<DepthGuard depth~{self._depth} limit={self.limit}>"
