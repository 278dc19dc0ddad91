"""GET /v1/stats/throughput: the chart history, the last hour of per-second counts every
process added to the store's ring (metrics/throughput.py), so the dashboard draws its chart
with history after a reload, whichever process answers."""

from __future__ import annotations

import math
import time

from aiohttp import web

from wxgate.api.context import ApiContext
from wxgate.api.errors import invalid
from wxgate.api.responses import json_response
from wxgate.api.schemas import ThroughputHistory
from wxgate.metrics.throughput import KEEP_S, KINDS


class ChartRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def throughput(self, request: web.Request) -> web.Response:
        now = int(time.time())  # the ring is in wall-clock seconds, as the tally counts them
        oldest = now - KEEP_S
        since = oldest
        raw = request.query.get("since")
        if raw is not None:
            try:
                value = float(raw)
            except ValueError:
                raise invalid("since", "expected epoch seconds") from None
            if not math.isfinite(value):
                raise invalid("since", "expected epoch seconds")
            since = int(min(max(oldest, value), now + 1))  # the future holds nothing yet
        rows = await self.ctx.store.throughput(since)
        return json_response(ThroughputHistory(now, list(KINDS), [list(r) for r in rows]))
