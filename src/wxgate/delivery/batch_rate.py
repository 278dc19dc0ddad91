"""Per-batch send rates (PATCH /v1/batches/{id} {rate_per_s}) on top of the app's rate.

The rates live in the store (every process sees a change) and are cached here, re-read every
REFRESH_S, and at once when a batch shows up that the cache has not seen yet (so a batch
created with a rate is held to it from its first message). A batch's bucket is the store's
take_rate keyed "batch:{id}" (shared across processes on Redis). A message whose batch token
is more than HOLD_MAX_S off gives its token back and is released until then: a slow campaign
waits in the store, not asleep in worker slots under lease, and the bucket never goes into
debt for sends that did not happen.
"""

from __future__ import annotations

import asyncio

from wxgate.clock import Clock
from wxgate.store.base import Store

REFRESH_S = 1.0
# Wait for a batch token in the worker at most this long; beyond it, release the message.
HOLD_MAX_S = 1.0
# Batch ids remembered as checked; beyond this the memory starts over (one re-read each).
MAX_KNOWN = 10_000


class BatchRates:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._rates: dict[str, float] = {}
        self._known: set[str] = set()  # batch ids read at least once (rate or none)
        self._read_at: float | None = None  # monotonic
        self._lock = asyncio.Lock()

    def _stale(self, batch_id: str) -> bool:
        read_at = self._read_at
        return (
            read_at is None
            or self._clock.monotonic() - read_at >= REFRESH_S
            or batch_id not in self._known
        )

    async def rate(self, batch_id: str) -> float | None:
        if self._stale(batch_id):
            async with self._lock:  # one read at a time; the others wait for its answer
                if self._stale(batch_id):
                    mono = self._clock.monotonic()
                    self._rates = await self._store.batch_rates()
                    self._read_at = mono
                    if len(self._known) >= MAX_KNOWN:
                        self._known.clear()
                    self._known.add(batch_id)
        return self._rates.get(batch_id)

    async def take(self, batch_id: str, now: float) -> float:
        """Seconds until this batch may send one more (0 = now; the token is taken). Above
        HOLD_MAX_S the token is given back: release the message until then."""
        rate = await self.rate(batch_id)
        if rate is None:
            return 0.0
        key = f"batch:{batch_id}"
        burst = max(1.0, rate * HOLD_MAX_S)
        wait = await self._store.take_rate(key, rate, burst, 1, now)
        if wait > HOLD_MAX_S:
            await self._store.take_rate(key, rate, burst, -1, now)
        return wait

    def __repr__(self) -> str:
        return f"<BatchRates rated={len(self._rates)} known={len(self._known)}>"
