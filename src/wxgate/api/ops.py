"""Operational routes: /healthz (process up), /readyz (store reachable), /v1/stats, /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from wxgate.api.auth import allowed_apps
from wxgate.api.context import ApiContext
from wxgate.api.errors import ApiError
from wxgate.api.responses import json_response
from wxgate.api.schemas import ErrcodeCount, Health, Stats
from wxgate.errors import StoreUnavailable
from wxgate.models import FINAL_STATUSES, PENDING_STATUSES, StoreStats
from wxgate.policy.errcodes import describe

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOP_ERRCODES = 20
# The lead's runtime sets app[METRICS_HANDLER] before the app starts; until then 404.
METRICS_HANDLER: web.AppKey[Handler] = web.AppKey("wxgate.metrics_handler")


_FINAL = tuple(s.value for s in FINAL_STATUSES)


def _finished_by_app(stats: StoreStats) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for source in (stats.by_app, stats.pruned_by_app):
        for app, counts in source.items():
            mine = out.setdefault(app, {})
            for status in _FINAL:
                n = counts.get(status, 0)
                if n:
                    mine[status] = mine.get(status, 0) + n
    return {app: counts for app, counts in out.items() if counts}


def _only_apps(body: Stats, apps: frozenset[str]) -> Stats:
    """The stats a key limited to `apps` may see: its apps' counts, pauses and delivery state.
    Totals are summed from those apps; what the store keeps only for all apps together (the
    oldest pending time) and the process-wide errcode counts are left out."""
    by_app = {a: c for a, c in body.by_app.items() if a in apps}
    by_status: dict[str, int] = {}
    for counts in by_app.values():
        for status, n in counts.items():
            by_status[status] = by_status.get(status, 0) + n
    delivery = body.delivery
    if delivery is not None and isinstance(delivery.get("apps"), dict):
        mine = {a: v for a, v in delivery["apps"].items() if a in apps}
        delivery = {**delivery, "apps": mine}
    return msgspec.structs.replace(
        body,
        by_status=by_status,
        by_app=by_app,
        oldest_pending_at=None,
        queue_depth=sum(by_status.get(s.value, 0) for s in PENDING_STATUSES),
        finished_by_app={a: c for a, c in body.finished_by_app.items() if a in apps},
        pauses=[p for p in body.pauses if p.app in apps],
        delivery=delivery,
        top_errcodes=[],
        suppressed={a: n for a, n in body.suppressed.items() if a in apps},
    )


class OpsRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response(Health("ok"))

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            await self.ctx.store.ping()
        except StoreUnavailable:
            return json_response(
                Health("store_unavailable"), status=503, headers={"Retry-After": "5"}
            )
        return json_response(Health("ready"))

    async def stats(self, request: web.Request) -> web.Response:
        store_stats = await self.ctx.store.stats()
        pauses = await self.ctx.store.get_pauses()
        delivery = await self.ctx.stats_extra() if self.ctx.stats_extra is not None else None
        depth = sum(store_stats.by_status.get(s.value, 0) for s in PENDING_STATUSES)
        body = Stats(
            by_status=store_stats.by_status,
            by_app=store_stats.by_app,
            oldest_pending_at=store_stats.oldest_pending_at,
            queue_depth=depth,
            finished_by_app=_finished_by_app(store_stats),
            pauses=pauses,
            delivery=msgspec.to_builtins(delivery) if delivery is not None else None,
            top_errcodes=self._top_errcodes(),
            webhooks=await self.ctx.store.webhook_stats(),
            suppressed=await self.ctx.store.suppression_counts(),
        )
        apps = allowed_apps(request)
        if apps is not None:
            body = _only_apps(body, apps)
        return json_response(body)

    def _top_errcodes(self) -> list[ErrcodeCount]:
        rows = [
            ErrcodeCount(code, sum(by.values()), describe(code), max(by, key=by.__getitem__))
            for code, by in self.ctx.metrics.failures_by_errcode().items()
            if by
        ]
        rows.sort(key=lambda r: (-r.count, r.errcode))
        return rows[:TOP_ERRCODES]

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        handler: Handler | None = request.app.get(METRICS_HANDLER) or request.app.get(
            "metrics_handler"
        )
        if handler is None:
            raise ApiError(404, "not_found", "metrics are not enabled in this process")
        return await handler(request)
