"""GET /v1/dead-letters (filtered, cursor-paged) and POST /v1/dead-letters/requeue."""

from __future__ import annotations

from collections.abc import Container

import msgspec
from aiohttp import web

from wxgate.api.auth import allowed_apps, caller, require_app
from wxgate.api.body import read_json
from wxgate.api.context import ApiContext
from wxgate.api.errors import invalid
from wxgate.api.responses import json_response
from wxgate.api.schemas import DeadLetterPage, MessageView, Requeued, RequeueIn

_DECODER = msgspec.json.Decoder(RequeueIn)
MAX_LIMIT = 1000
# WeChat's errcodes are 32-bit; a bigger filter would overflow the store's integer (a 500).
ERRCODE_MIN, ERRCODE_MAX = -(2**31), 2**31 - 1


def int_param(request: web.Request, name: str, low: int, high: int) -> int | None:
    """An optional integer query parameter within [low, high], as the OpenAPI document
    declares it; given but empty (`?limit=`) is a 400 like any other non-integer."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, "expected an integer") from None
    if not low <= value <= high:
        raise invalid(name, f"expected {low} to {high}" if low < 0 else f"expected {low}-{high}")
    return value


def app_filter(known: Container[str], name: str | None, request: web.Request) -> str | None:
    """The app a listing is filtered by: the one named (known, and the key's), or for a key
    limited to one app that app; a key limited to several must name one (400)."""
    if name is not None and name not in known:
        raise invalid("app", f"unknown app {name!r}")
    apps = allowed_apps(request)
    if apps is None:
        return name
    if name is None:  # a key limited to apps: its own app, or name one of them
        if len(apps) == 1:
            return next(iter(apps))
        raise invalid("app", f"required for a key limited to apps {', '.join(sorted(apps))}")
    require_app(caller(request), name)
    return name


class DeadLetterRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def _app(self, name: str | None, request: web.Request) -> str | None:
        return app_filter(self.ctx.apps, name, request)

    async def list(self, request: web.Request) -> web.Response:
        limit = int_param(request, "limit", 1, MAX_LIMIT)
        items, cursor = await self.ctx.store.dead_letters(
            app=self._app(request.query.get("app") or None, request),
            errcode=int_param(request, "errcode", ERRCODE_MIN, ERRCODE_MAX),
            cursor=request.query.get("cursor") or None,
            limit=100 if limit is None else limit,
        )
        now = self.ctx.clock.now()
        return json_response(DeadLetterPage([MessageView.of(m, now) for m in items], cursor))

    async def requeue(self, request: web.Request) -> web.Response:
        body = await read_json(request, _DECODER, self.ctx.max_body_bytes)
        if body.ids is None and body.app is None and body.errcode is None:
            raise invalid("ids", "give ids, or app and/or errcode to requeue by filter")
        key = caller(request)
        if body.ids is None:
            app = self._app(body.app, request)
        else:  # by ids (which the store takes regardless of app): check each one's app first
            app = self._app(body.app, request) if body.app is not None else None
            if key is not None and key.apps is not None:
                for msg_id in body.ids:
                    found = await self.ctx.store.get(msg_id)
                    if found is not None:
                        require_app(key, found.app)
        n = await self.ctx.store.requeue(ids=body.ids, app=app, errcode=body.errcode)
        if n:
            self.ctx.wake()
        return json_response(Requeued(n))
