"""GET /v1/messages: find messages by recipient, status, app, batch and creation time,
newest first, cursor-paged (the store's bounded walk: store/search.py).

A key limited to apps finds only its apps' messages: the app filter is then its one app, or
must name one of them (as GET /v1/dead-letters). Times are epoch seconds, like every time in
the JSON API.
"""

from __future__ import annotations

import math
from collections.abc import Container

from aiohttp import web

from wxgate.api.context import ApiContext
from wxgate.api.deadletters import app_filter, int_param
from wxgate.api.errors import invalid
from wxgate.api.responses import json_response
from wxgate.api.schemas import MessagePage, MessageView
from wxgate.models import Status
from wxgate.store.search import MAX_LIMIT, MessageQuery

DEFAULT_LIMIT = 50
# The last second of year 9999: past it an epoch time is a typo, and stores' integers overflow.
MAX_EPOCH_S = 253_402_300_799
MAX_TEXT = 256  # an openid is 28 characters, ids 24: anything longer finds nothing anyway


def _text(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name) or None
    if raw is not None and len(raw) > MAX_TEXT:
        raise invalid(name, f"at most {MAX_TEXT} characters")
    return raw


def _time(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise invalid(name, "expected epoch seconds") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_EPOCH_S:
        raise invalid(name, f"expected epoch seconds (0-{MAX_EPOCH_S})")
    return value


def _status(request: web.Request) -> Status | None:
    raw = request.query.get("status")
    if raw is None:
        return None
    try:
        return Status(raw)
    except ValueError:
        raise invalid("status", f"expected one of {', '.join(s.value for s in Status)}") from None


def query_of(request: web.Request, known_apps: Container[str]) -> MessageQuery:
    """The query string as a MessageQuery; 400 naming the first bad parameter."""
    # until <= since is a valid query that finds nothing (since <= created_at < until).
    since, until = _time(request, "since"), _time(request, "until")
    return MessageQuery(
        app=app_filter(known_apps, _text(request, "app"), request),
        touser=_text(request, "touser"),
        status=_status(request),
        batch_id=_text(request, "batch"),
        since=since,
        until=until,
    )


class FindRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def list(self, request: web.Request) -> web.Response:
        query = query_of(request, self.ctx.apps)
        limit = int_param(request, "limit", 1, MAX_LIMIT)
        cursor = _text(request, "cursor")
        items, next_cursor = await self.ctx.store.find_messages(
            query, cursor=cursor, limit=DEFAULT_LIMIT if limit is None else limit
        )
        now = self.ctx.clock.now()
        return json_response(MessagePage([MessageView.of(m, now) for m in items], next_cursor))
