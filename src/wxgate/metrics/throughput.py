"""Per-second throughput counters for the dashboard's chart history (issue 16).

Each process counts what it saw per wall-clock second (accepted, sent, delivered, failed)
in memory, and a flush loop (runtime.py) adds them to the store's ring every second
(SharedState.add_throughput), so any process answers GET /v1/stats/throughput for the whole
deployment. Counting is a dict lookup and an add: the hooks sit on the send path.
"""

from __future__ import annotations

import time

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
