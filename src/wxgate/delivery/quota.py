"""The daily send quota, claimed from the shared store in small chunks.

Counting each send with its own store write doubled the writes per message (quota + ack).
A process instead claims up to `chunk` sends at once and hands them out locally; the cost is
that up to `chunk` claimed-but-unused sends per process are lost at the end of the day or on
exit, so the chunk is kept to at most 0.1% of the quota. The chunk starts at MIN_CHUNK and
doubles while claims come quicker than FAST_CLAIM_S apart: at thousands of sends a second a
fixed 100 made every worker queue behind a store round trip every few dozen sends.
"""

from __future__ import annotations

import asyncio

from wxgate.store.base import Store

MIN_CHUNK = 100
FAST_CLAIM_S = 1.0


class QuotaClaims:
    """Per app and Asia/Shanghai day: sends claimed from the store and not yet used here."""

    def __init__(self, store: Store, min_chunk: int = MIN_CHUNK) -> None:
        self._store = store
        self._min_chunk = min_chunk
        self._left: dict[str, tuple[str, int]] = {}  # app -> (day, claimed and unused)
        self._chunk: dict[str, int] = {}  # app -> the next claim's size
        self._claimed_at: dict[str, float] = {}  # app -> loop time of its last claim
        # One claim in flight per app: concurrent claims would each take a chunk, and the
        # later ones could find the limit spent while the earlier ones' spares sit unused.
        self._locks: dict[str, asyncio.Lock] = {}
        self.claims = 0  # store writes made, for repr and tests

    async def take(self, app: str, day: str, limit: int) -> bool:
        """Use one send of `app`'s quota for `day`; False when the day's quota is spent."""
        if self._use_local(app, day):
            return True
        lock = self._locks.get(app)
        if lock is None:
            lock = self._locks[app] = asyncio.Lock()
        async with lock:
            if self._use_local(app, day):
                return True  # claimed by whoever held the lock before us
            chunk = self._next_chunk(app, limit)
            total = await self._store.incr_quota(app, day, chunk)
            self.claims += 1
            usable = min(chunk, limit - (total - chunk))  # the part within the limit
            if usable <= 0:
                return False
            self._left[app] = (day, usable - 1)
            return True

    def _next_chunk(self, app: str, limit: int) -> int:
        cap = max(1, limit // 1000)
        now = asyncio.get_running_loop().time()
        last = self._claimed_at.get(app)
        chunk = self._chunk.get(app, self._min_chunk)
        if last is not None and now - last < FAST_CLAIM_S:
            chunk *= 2
        elif last is not None:
            chunk = self._min_chunk
        chunk = max(1, min(chunk, cap))
        self._chunk[app], self._claimed_at[app] = chunk, now
        return chunk

    def _use_local(self, app: str, day: str) -> bool:
        held = self._left.get(app)
        if held is None or held[0] != day or held[1] <= 0:
            return False
        self._left[app] = (day, held[1] - 1)
        return True

    def __repr__(self) -> str:
        left = {app: n for app, (_, n) in self._left.items()}
        return f"<QuotaClaims claims={self.claims} unused={left}>"
