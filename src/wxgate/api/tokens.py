"""The access-token service: other systems of the same company borrow our token instead of
fetching their own (every fetch by someone else would kill ours).

GET hands out the broker's current token (fetched at most once at a time, refreshed early).
POST .../invalidate is for a caller that got 40001 with a token: compare-and-invalidate, so
however many callers report the same dead token, the cache drops it once and one refresh
follows. Each call is counted by the key's name (metric wxgate_token_service_requests_total);
`guarded` (api/app.py) has already checked the `token` scope, the key's apps and its rate limit.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from wxgate.api.auth import caller
from wxgate.api.body import read_json
from wxgate.api.context import ApiContext, TokenSource
from wxgate.api.errors import ApiError
from wxgate.api.responses import json_response
from wxgate.api.schemas import AccessToken, Invalidated, InvalidateIn
from wxgate.settings import AppSettings

_DECODER = msgspec.json.Decoder(InvalidateIn)
_NO_STORE = {"Cache-Control": "no-store"}


class TokenRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def _resolve(self, request: web.Request, action: str) -> tuple[TokenSource, AppSettings]:
        key = caller(request)
        if key is not None:
            self.ctx.metrics.on_token_service(key.name, action)
        name = request.match_info["app"]
        app = self.ctx.apps.get(name)
        if app is None:
            raise ApiError(404, "not_found", f"no app {name!r}", "app")
        if self.ctx.broker is None:
            raise ApiError(
                503, "token_service_unavailable", "this process runs without a token broker"
            )
        return self.ctx.broker, app

    async def get(self, request: web.Request) -> web.Response:
        broker, app = self._resolve(request, "get")
        token = await broker.get(app)
        entry = await broker.peek(app)
        expires_at = entry.expires_at if entry is not None and entry.access_token == token else None
        return json_response(AccessToken(token, expires_at), headers=_NO_STORE)

    async def invalidate(self, request: web.Request) -> web.Response:
        broker, app = self._resolve(request, "invalidate")
        body = await read_json(request, _DECODER, self.ctx.max_body_bytes)
        dropped = await broker.invalidate(app, body.access_token)
        return json_response(Invalidated(app.name, "invalidated" if dropped else "stale"))
