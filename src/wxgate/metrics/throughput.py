"""Per-second throughput counters for the dashboard's chart history (issue 16).

Each process counts what it saw per wall-clock second (accepted, sent, delivered, failed)
in memory, and a flush loop (runtime.py) adds them to the store's ring every second
(SharedState.add_throughput), so any process answers GET /v1/stats/throughput for the whole
deployment. Counting is a dict lookup and an add: the hooks sit on the send path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from wxgate.errors import StoreError

log = logging.getLogger("wxgate.metrics")

KINDS = ("accepted", "sent", "delivered", "failed")
ACCEPTED, SENT, DELIVERED, FAILED = range(4)
KEEP_S = 3600  # the ring: the last hour
# Receipt results that mean the user did not get the message (delivered is its own column).
FAILED_RECEIPTS = frozenset({"blocked", "failed"})

Buckets = dict[int, list[int]]  # epoch second -> [accepted, sent, delivered, failed]


class ThroughputTally:
    def __init__(self) -> None:
        self._buckets: Buckets = {}

    def count(self, kind: int, n: int = 1) -> None:
        second = int(time.time())
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = [0, 0, 0, 0]
        bucket[kind] += n

    def take(self) -> Buckets:
        """What was counted since the last take (the flush loop's next write)."""
        out, self._buckets = self._buckets, {}
        return out

    def put_back(self, buckets: Buckets) -> None:
        """A write that failed: count it again with the next one."""
        for second, counts in buckets.items():
            mine = self._buckets.setdefault(second, [0, 0, 0, 0])
            for k, n in enumerate(counts):
                mine[k] += n


class ThroughputSink(Protocol):
    async def add_throughput(self, buckets: Mapping[int, Sequence[int]]) -> None: ...


class ThroughputFlusher:
    """Adds the tally to the store's ring every `every_s` (one small write per process and
    second), and once more on close. A failed write is counted again with the next one; one
    that keeps failing is dropped after KEEP_S (the ring would not keep it anyway)."""

    def __init__(self, tally: ThroughputTally, sink: ThroughputSink, every_s: float = 1.0):
        self._tally = tally
        self._sink = sink
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wxgate-throughput")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        buckets = self._tally.take()
        if not buckets:
            return
        try:
            await self._sink.add_throughput(buckets)
        except (StoreError, OSError) as exc:
            oldest = int(time.time()) - KEEP_S
            self._tally.put_back({s: c for s, c in buckets.items() if s >= oldest})
            log.debug("throughput: store write failed, kept for the next one: %s", exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            try:
                await self.flush()
            except Exception:  # a bug must not end the chart history for good
                log.exception("throughput: flush failed")
