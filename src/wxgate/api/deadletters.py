"""GET /v1/dead-letters (filtered, cursor-paged) and POST /v1/dead-letters/requeue."""

from __future__ import annotations

import msgspec
from aiohttp import web

from wxgate.api.body import read_json
from wxgate.api.context import Gateway
from wxgate.api.errors import invalid
from wxgate.api.responses import json_response
from wxgate.api.schemas import DeadLetterPage, MessageView, Requeued, RequeueIn

_DECODER = msgspec.json.Decoder(RequeueIn)
MAX_LIMIT = 1000


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise invalid(name, "expected an integer") from None


class DeadLetterRoutes:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def _app(self, name: str | None) -> str | None:
        if name is not None and name not in self.gw.apps:
            raise invalid("app", f"unknown app {name!r}")
        return name

    async def list(self, request: web.Request) -> web.Response:
        limit = _int_param(request, "limit")
        if limit is None:
            limit = 100
        if not 1 <= limit <= MAX_LIMIT:
            raise invalid("limit", f"expected 1-{MAX_LIMIT}")
        items, cursor = await self.gw.store.dead_letters(
            app=self._app(request.query.get("app") or None),
            errcode=_int_param(request, "errcode"),
            cursor=request.query.get("cursor") or None,
            limit=limit,
        )
        now = self.gw.clock.now()
        return json_response(DeadLetterPage([MessageView.of(m, now) for m in items], cursor))

    async def requeue(self, request: web.Request) -> web.Response:
        body = await read_json(request, _DECODER, self.gw.max_body_bytes)
        if body.ids is None and body.app is None and body.errcode is None:
            raise invalid("ids", "give ids, or app and/or errcode to requeue by filter")
        n = await self.gw.store.requeue(ids=body.ids, app=self._app(body.app), errcode=body.errcode)
        if n:
            self.gw.wake()
        return json_response(Requeued(n))
