"""GET /v1/apps and POST /v1/apps/{app}/pause|resume: apps paused and resumed by a person.

A pause lives in the store (SharedState), so every process stops leasing the app within the
dispatcher's pause cache (0.5 s) and a pause outlives the process that set it. A hand-made pause
carries the key's name (AppPause.by) and is never replaced by the dispatcher's own quota,
throttle or config pauses (store/base.py): only a resume, or its own `until`, ends it. A resume
ends any pause, automatic ones included (a quota pause until midnight, a config pause). Each
pause and resume is logged at INFO with its reason and the key's name.

The breaker, live rate and in-flight counts come from this process's worker pool (absent in an
API-only process); the quota used today is the store's shared counter, which the dispatcher
claims in chunks (delivery/quota.py), so it may run a chunk ahead of the sends.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from aiohttp import web

from wxgate import logs
from wxgate.api.auth import allowed_apps, caller
from wxgate.api.body import read_json
from wxgate.api.context import ApiContext
from wxgate.api.errors import ApiError, invalid
from wxgate.api.responses import json_response
from wxgate.api.schemas import AppList, AppPauseView, AppView, PauseIn, QuotaUse
from wxgate.delivery.dispatcher import quota_key
from wxgate.models import AppPause, MessageKind
from wxgate.policy.errcodes import describe
from wxgate.policy.ratelimit import shanghai_day
from wxgate.settings import AppSettings

log = logging.getLogger("wxgate.api")

# A pause without `until` lasts until resumed: stored this far ahead, shown as until=null.
UNTIL_RESUMED_S = 100 * 365 * 86400.0
_SHOWN_AS_OPEN_ENDED_S = UNTIL_RESUMED_S / 2
MAX_PAUSE_BODY = 4096
_DECODER = msgspec.json.Decoder(PauseIn)


def pause_view_of(pause: AppPause | None, now: float) -> AppPauseView | None:
    """What GET /v1/apps and a held message show of a pause in force at `now` (else None)."""
    if pause is None or pause.until <= now:
        return None
    return AppPauseView(
        reason=pause.reason,
        errcode=pause.errcode,
        meaning=describe(pause.errcode) if pause.errcode is not None else None,
        until=None if pause.until - now > _SHOWN_AS_OPEN_ENDED_S else pause.until,
        by=pause.by,
    )


def _who(request: web.Request) -> str:
    key = caller(request)
    return key.name if key is not None else "anonymous"


class AppRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def list(self, request: web.Request) -> web.Response:
        visible = allowed_apps(request)
        configured = sorted(self.ctx.apps.items())
        apps = [a for name, a in configured if visible is None or name in visible]
        pauses = {p.app: p for p in await self.ctx.store.get_pauses()}
        delivery = await self._delivery()
        views = [await self._view(a, pauses.get(a.name), delivery.get(a.name)) for a in apps]
        return json_response(AppList(views))

    async def pause(self, request: web.Request) -> web.Response:
        app = self._app(request)
        body = await read_json(request, _DECODER, MAX_PAUSE_BODY)
        reason = body.reason.strip()
        if not reason:
            raise invalid("reason", "say why the app is paused (1-200 characters)")
        now = self.ctx.clock.now()
        if body.until is not None and body.until <= now:
            raise invalid("until", f"must be in the future (epoch seconds; now is {now:.0f})")
        until = body.until if body.until is not None else now + UNTIL_RESUMED_S
        who = _who(request)
        pause = AppPause(app.name, until, reason, None, by=who)
        await self.ctx.store.set_pause(pause)
        log.info(
            "app %s paused by %s: %s (%s)",
            app.name,
            who,
            reason,
            "until resumed" if body.until is None else f"until {until:.0f}",
            extra=logs.fields(app=app.name),
        )
        pauses = {p.app: p for p in await self.ctx.store.get_pauses()}
        delivery = await self._delivery()
        return json_response(await self._view(app, pauses.get(app.name), delivery.get(app.name)))

    async def resume(self, request: web.Request) -> web.Response:
        app = self._app(request)
        who = _who(request)
        before = {p.app: p for p in await self.ctx.store.get_pauses()}.get(app.name)
        await self.ctx.store.clear_pause(app.name)
        if before is None:
            log.info(
                "app %s resumed by %s: it was not paused",
                app.name,
                who,
                extra=logs.fields(app=app.name),
            )
        else:
            log.info(
                "app %s resumed by %s: ended the pause %r%s (set by %s)",
                app.name,
                who,
                before.reason,
                f" errcode {before.errcode}" if before.errcode is not None else "",
                before.by or "the gateway",
                extra=logs.fields(app=app.name, errcode=before.errcode),
            )
        self.ctx.wake()  # a pool in this process leases the app's backlog now
        delivery = await self._delivery()
        return json_response(await self._view(app, None, delivery.get(app.name)))

    # ------------------------------------------------------------------ helpers

    def _app(self, request: web.Request) -> AppSettings:
        name = request.match_info["app"]
        app = self.ctx.apps.get(name)
        if app is None:
            known = ", ".join(sorted(self.ctx.apps)) or "none"
            raise ApiError(404, "not_found", f"no app {name!r} (configured: {known})", "app")
        return app

    async def _delivery(self) -> dict[str, dict[str, Any]]:
        if self.ctx.stats_extra is None:
            return {}
        apps = (await self.ctx.stats_extra()).get("apps")
        return apps if isinstance(apps, dict) else {}

    async def _view(
        self, app: AppSettings, pause: AppPause | None, live: dict[str, Any] | None
    ) -> AppView:
        now = self.ctx.clock.now()
        day = shanghai_day(now)
        quota = {}
        for kind in MessageKind:
            used = await self.ctx.store.incr_quota(quota_key(app.name, kind.value), day, 0)
            quota[kind.value] = QuotaUse(used, app.quota_for(kind.value))
        pause_view = pause_view_of(pause, now)
        live = live or {}
        return AppView(
            name=app.name,
            appid=app.appid,
            state="paused" if pause_view is not None else "running",
            pause=pause_view,
            breaker=live.get("breaker"),
            rate_per_s=float(live.get("rate_per_s", app.rate_per_s)),
            max_rate_per_s=app.rate_per_s,
            in_flight=live.get("in_flight"),
            quota_day=day,
            quota=quota,
        )
