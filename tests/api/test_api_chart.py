"""GET /v1/stats/throughput (the chart history) and the flush that fills it: counts a
process tallies reach the store's ring and come back from the endpoint."""

from __future__ import annotations

import time
from pathlib import Path

from support.api import ApiRig
from wxgate.clock import FakeClock
from wxgate.metrics import Metrics
from wxgate.metrics.throughput import ThroughputFlusher
from wxgate.store.sqlite import SQLiteStore


async def test_the_last_hour_oldest_first(rig: ApiRig) -> None:
    now = int(time.time())
    await rig.store.add_throughput({now - 4000: [9, 9, 9, 9]})  # older than the ring's hour
    await rig.store.add_throughput({now - 10: [5, 4, 3, 1], now - 9: [0, 2, 0, 0]})
    status, body = await rig.get("/v1/stats/throughput")
    assert status == 200, body
    assert body["kinds"] == ["accepted", "sent", "delivered", "failed"]
    assert body["seconds"] == [[now - 10, 5, 4, 3, 1], [now - 9, 0, 2, 0, 0]]
    assert abs(body["now"] - now) <= 2
    _, later = await rig.get(f"/v1/stats/throughput?since={now - 9}")
    assert later["seconds"] == [[now - 9, 0, 2, 0, 0]]


async def test_bad_since_is_a_400(rig: ApiRig) -> None:
    for raw in ("yesterday", "nan"):
        status, body = await rig.get(f"/v1/stats/throughput?since={raw}")
        assert status == 400 and body["field"] == "since"


async def test_tallied_counts_reach_the_ring(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "wx.db"), FakeClock(), retention_s=3600)
    await store.open()
    try:
        metrics = Metrics()
        flusher = ThroughputFlusher(metrics.tally, store)
        metrics.on_accepted("shop", 3)
        metrics.on_sent("shop", 0.01, 0.0, 0.0)
        metrics.on_receipt("shop", "delivered", None, 0.0)
        metrics.on_receipt("shop", "blocked", None, 0.0)
        metrics.on_dead("shop")
        await flusher.close()  # the last flush
        rows = await store.throughput(int(time.time()) - 60)
        totals = [sum(r[k] for r in rows) for k in range(1, 5)]
        assert totals == [3, 1, 1, 2]
    finally:
        await store.close()
