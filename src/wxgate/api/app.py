"""The aiohttp Application, built from the route table (api/routes.py).

No middleware: each handler is wrapped once, at registration, in `guarded` (auth for routes
that carry a scope, every exception mapped to a JSON error by api/errors.py), and a catch-all
route answers unrouted requests with JSON 404/405. aiohttp's middleware chain costs a
coroutine layer per middleware and a context manager per request; on the ingest hot path
that was a tenth of the event loop's time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from wxgate.api.auth import KeyRing, Scope, check
from wxgate.api.context import (
    API_CONTEXT,
    ApiContext,
    ApiMetrics,
    NoApiMetrics,
    StatsExtra,
    TokenSource,
)
from wxgate.api.depth import DepthGuard
from wxgate.api.errors import ApiError, response_for
from wxgate.api.operation import Handler
from wxgate.api.routes import ROUTES
from wxgate.api.store_deadline import with_deadline
from wxgate.api.template_check import TemplateSource
from wxgate.api.views import Views
from wxgate.clock import Clock
from wxgate.metrics import UNROUTED
from wxgate.settings import Settings
from wxgate.store.base import Store
from wxgate.tracing import NO_TRACER, Tracer

_UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="wxgate"'}


def _why_401(request: web.Request) -> str:
    """The 401 message: the header and scheme expected, and whether the key was missing or
    not known, so a person with curl sees what to change (never echoing the key)."""
    header = request.headers.get("Authorization")
    if not header:
        return "missing API key: send the header 'Authorization: Bearer <key>'"
    if not header.lower().startswith("bearer "):
        return "wrong Authorization scheme: send 'Authorization: Bearer <key>'"
    return "unknown API key (expected 'Authorization: Bearer <key>' with a configured key)"


def guarded(ctx: ApiContext, handler: Handler, scope: Scope | None) -> Handler:
    """`handler` behind auth (when the route has a scope); any exception becomes JSON."""
    keys, on_limited = ctx.keys, ctx.metrics.on_key_limited

    async def route(request: web.Request) -> web.StreamResponse:
        try:
            if scope is not None:
                key = keys.authenticate(request.headers.get("Authorization"))
                if key is None:
                    raise ApiError(401, "unauthorized", _why_401(request), headers=_UNAUTHORIZED)
                # The scope, the app named in the path, then the key's rate limit.
                check(key, scope, request, on_limited)
            return await handler(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the one place exceptions turn into answers
            return response_for(exc, request)

    return route


async def _unrouted(request: web.Request) -> web.StreamResponse:
    """404, or 405 with Allow when another method of this path exists (as aiohttp would)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.name == UNROUTED:
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        exc: web.HTTPException = web.HTTPMethodNotAllowed(request.method, allowed)
    else:
        exc = web.HTTPNotFound()
    return response_for(exc, request)


def create_app(
    settings: Settings,
    store: Store,
    clock: Clock,
    broker: TokenSource | None = None,
    stats_extra: StatsExtra | None = None,
    metrics: ApiMetrics | None = None,
    wake: Callable[[], None] | None = None,
    templates: TemplateSource | None = None,
    *,
    probes_only: bool = False,
    tracer: Tracer = NO_TRACER,
) -> web.Application:
    """The API on `store`; `probes_only`: only /healthz, /readyz and /metrics (a worker-only
    process: put behind a load balancer by mistake, it answers 404 rather than taking API
    traffic)."""
    server = settings.server
    store = with_deadline(store, server.store_timeout_s)  # handlers fail fast on a hung store
    ctx = ApiContext(
        settings=settings,
        store=store,
        clock=clock,
        keys=KeyRing.from_settings(server, clock),
        apps={a.name: a for a in settings.apps},
        depth=DepthGuard(store, clock, server.max_queue_depth),
        broker=broker,
        stats_extra=stats_extra,
        metrics=metrics or NoApiMetrics(),
        wake=wake or (lambda: None),
        templates=templates,
        tracer=tracer,
    )
    # Routes read bodies through body.read_limited with their own limit (batches may be larger
    # than single messages); client_max_size is the backstop for anything using request.read().
    app = web.Application(client_max_size=max(server.max_body_bytes, server.max_batch_body_bytes))
    app[API_CONTEXT] = ctx
    views = Views.of(ctx)
    for route in ROUTES:
        if route.probe or not probes_only:
            app.router.add_route(
                route.method, route.path, guarded(ctx, route.handler(views), route.scope)
            )
    app.router.add_route("*", "/{unrouted:.*}", _unrouted, name=UNROUTED)
    return app
