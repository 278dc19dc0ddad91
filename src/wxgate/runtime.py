"""Builds a running gateway from Settings; the only place that names concrete classes.

Lifecycles nest in `async with` and close in reverse: store -> WeChat client -> token broker ->
worker pool -> HTTP site. SIGTERM drains (stop leasing, finish or release in-flight sends); a
second signal exits at once.

Roles split one deployment into ingest and delivery: `api` serves the whole HTTP API and runs
no workers; `worker` runs the delivery pool and serves only /healthz, /readyz and /metrics on
its port (probes and scrapes need one; it takes no API traffic); `all` does both.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web

from wxgate.api.app import create_app
from wxgate.api.connections import ConnectionLimits, LimitedRunner, LimitedServer
from wxgate.api.metrics_access import metrics_route
from wxgate.api.ops import METRICS_HANDLER
from wxgate.api.responses import json_response
from wxgate.api.schemas import Health
from wxgate.clock import Clock, SystemClock
from wxgate.delivery.dispatcher import Dispatcher
from wxgate.delivery.webhooks import WebhookSender
from wxgate.delivery.workers import WorkerPool
from wxgate.errors import ConfigError, StoreUnavailable
from wxgate.metrics import Metrics
from wxgate.models import ErrorBody
from wxgate.policy.errcodes import known_codes
from wxgate.settings import Settings, parse_bind
from wxgate.store.base import Store
from wxgate.store.factory import open_store
from wxgate.wechat.client import WeChatClient
from wxgate.wechat.templates import TemplateCatalog
from wxgate.wechat.tokens import TokenBroker

log = logging.getLogger("wxgate")

Role = Literal["api", "worker", "all"]
ROLES: tuple[Role, ...] = ("api", "worker", "all")
# Stopping the HTTP site waits this long at most for requests in progress (each one is a
# store round trip; a hung store must not eat the drain's time).
HTTP_SHUTDOWN_S = 5.0
# The collector's young-generation threshold while serving (see tune_gc).
GC_GEN0_THRESHOLD = 7_000


def tune_gc() -> None:
    """Set the collector up for serving, once everything long-lived has been built.

    Startup's objects live as long as the process: frozen, the collections that batch
    ingest's allocations trigger do not walk them again and again (callgrind: -4%
    instructions per batch recipient). A young generation of 700 (the default) is collected
    every few requests, walking objects that a request frees a moment later anyway; 10x
    fewer collections keep a few hundred kB of cyclic garbage a little longer (-5% per batch
    recipient and per leased message).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def parse_role(value: str) -> Role:
    for role in ROLES:
        if value == role:
            return role
    raise ConfigError(f"role {value!r}: must be api, worker or all")


def ops_app(store: Store) -> web.Application:
    """The HTTP face of a worker-only process: liveness, readiness and (set by the caller)
    metrics. No /v1 routes: a worker put behind a load balancer by mistake answers 404
    rather than taking API traffic."""

    async def healthz(request: web.Request) -> web.Response:
        return json_response(Health("ok"))

    async def readyz(request: web.Request) -> web.Response:
        try:
            await store.ping()
        except StoreUnavailable:
            return json_response(
                Health("store_unavailable"), status=503, headers={"Retry-After": "5"}
            )
        return json_response(Health("ready"))

    async def metrics(request: web.Request) -> web.StreamResponse:
        handler = request.app.get(METRICS_HANDLER)
        if handler is None:  # served on server.metrics_bind instead
            return json_response(ErrorBody("not_found", "no such route"), status=404)
        return await handler(request)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class Runtime:
    """One gateway process: store, WeChat client, token broker, worker pool and HTTP API."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        role: Role = "all",
        reuse_port: bool = False,
        sock: socket.socket | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.role = parse_role(role)
        self.reuse_port = reuse_port
        self._sock = sock
        self.metrics = Metrics(known_errcodes=known_codes())
        self.store: Store | None = None
        self.client: WeChatClient | None = None
        self.broker: TokenBroker | None = None
        self.pool: WorkerPool | None = None
        self.webhooks: WebhookSender | None = None
        self.templates: TemplateCatalog | None = None
        self.app: web.Application | None = None
        self._runner: LimitedRunner | None = None
        self._metrics_runner: LimitedRunner | None = None
        self.port: int = settings.server.port
        self.metrics_port: int | None = None  # the server.metrics_bind listener's, when set

    @property
    def http(self) -> LimitedServer | None:
        """The API listener's connection counts (open, refused, timeouts)."""
        return self._runner.limited if self._runner is not None else None

    @property
    def url(self) -> str:
        return f"http://{self.settings.server.host}:{self.port}"

    async def __aenter__(self) -> Runtime:
        try:
            await self.start()
        except BaseException:
            await self.close(drain=False)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        s = self.settings
        self.store = open_store(s.store.url, self.clock, s.store.retention_s)
        await self.store.open()
        self.client = WeChatClient(s.wechat, self.clock)
        await self.client.start()
        self.broker = TokenBroker(self.client, self.store, self.clock)
        self.metrics.bind_broker(self.broker, {a.appid: a.name for a in s.apps})
        if any(a.validate != "off" for a in s.apps):
            self.templates = TemplateCatalog(self.client, self.broker, s.templates, self.clock)
        if self.role in ("worker", "all"):
            apps = {a.name: a for a in s.apps}
            # The send budget checked against each lease is the client's real timeout.
            dispatcher = Dispatcher(
                self.store,
                self.broker,
                apps,
                s.workers,
                self.clock,
                metrics=self.metrics,
                send_timeout_s=s.wechat.total_timeout_s,
            )
            self.pool = WorkerPool(self.store, dispatcher, s.workers, self.clock)
            self.metrics.bind_pool(self.pool)
            await self.pool.start()
            # Status webhooks: a loop of their own beside the pool (delivery/webhooks.py).
            pool, busy_at = self.pool, max(1, s.workers.concurrency // 2)
            self.webhooks = WebhookSender(
                self.store,
                apps,
                s.webhooks,
                self.clock,
                metrics=self.metrics,
                busy=lambda: pool.held >= busy_at,  # a send backlog: webhooks yield the CPU
            )
            await self.webhooks.start()
        self.metrics.bind_store(self.store)
        self.metrics.bind_webhooks(self.store)
        if self.role == "worker":
            self.app = ops_app(self.store)
        else:
            stats_extra: Callable[[], Awaitable[dict[str, Any]]] | None = None
            if self.pool is not None:
                pool = self.pool

                async def _extra() -> dict[str, Any]:
                    return {"apps": pool.app_states()}

                stats_extra = _extra
            self.app = create_app(
                s,
                self.store,
                self.clock,
                self.broker,
                stats_extra,
                self.metrics,
                wake=self.pool.wake if self.pool is not None else None,
                templates=self.templates,
            )
        metrics_handler = metrics_route(self.metrics.handler, s.server.metrics_key)
        if s.server.metrics_bind is None:
            self.app[METRICS_HANDLER] = metrics_handler
        limits = ConnectionLimits.from_settings(s.server)
        self._runner = LimitedRunner(
            self.app,
            limits,
            # Not a log: the class counts and times requests for /metrics (metrics.py).
            access_log=logging.getLogger("wxgate.http"),
            access_log_class=self.metrics.access_logger(),
            handle_signals=False,
            shutdown_timeout=HTTP_SHUTDOWN_S,
        )
        await self._runner.setup()
        site: web.BaseSite
        if self._sock is not None:
            site = web.SockSite(self._runner, self._sock)
        else:
            site = web.TCPSite(
                self._runner,
                s.server.host,
                s.server.port,
                reuse_port=self.reuse_port or None,
                backlog=1024,
            )
        await site.start()
        self.port = _bound_port(site) or self.port
        if s.server.metrics_bind is not None:
            await self._serve_metrics(s.server.metrics_bind, metrics_handler, limits)

    async def _serve_metrics(
        self,
        bind: str,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        limits: ConnectionLimits,
    ) -> None:
        """/metrics alone on its own listener (e.g. a private interface), not the API port."""
        app = web.Application()
        app.router.add_get("/metrics", handler)
        self._metrics_runner = LimitedRunner(
            app, limits, access_log=None, handle_signals=False, shutdown_timeout=HTTP_SHUTDOWN_S
        )
        await self._metrics_runner.setup()
        host, port = parse_bind(bind)
        # Every process of `serve --processes N` binds it, as it does the API port.
        reuse = self.reuse_port or self._sock is not None
        site = web.TCPSite(self._metrics_runner, host, port, reuse_port=reuse or None)
        await site.start()
        self.metrics_port = _bound_port(site) or port

    async def close(self, *, drain: bool = True) -> None:
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.pool is not None:
            if drain:
                await self.pool.drain(self.settings.workers.drain_timeout_s)
            else:
                await self.pool.drain(0)
            self.pool = None
        if self.webhooks is not None:
            await self.webhooks.close(timeout_s=2.0 if drain else 0.0)
            self.webhooks = None
        if self.templates is not None:
            await self.templates.close()
            self.templates = None
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self.store is not None:
            await self.store.close()
            self.store = None


def _bound_port(site: web.BaseSite) -> int | None:
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port: int = server.sockets[0].getsockname()[1]
        return port
    return None


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


async def serve_until_signal(
    gateway: Runtime,
    on_ready: Callable[[Runtime], None],
    *,
    supervised: bool = False,
    parent_fd: int | None = None,
) -> None:
    """Run until SIGTERM/SIGINT; the first signal drains, a second one exits at once.

    `supervised` (a child of `wxgate serve --processes N`): SIGTERM drains, SIGINT and repeated
    signals are ignored. Ctrl-C reaches the whole process group, and systemd may signal every
    process of the unit; the parent forwards one SIGTERM and escalates to SIGKILL itself, so
    a second signal must not cut the drain short. `parent_fd` turning readable (the parent's
    end of a pipe closed: it died) drains too, so no child outlives its supervisor.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hits = 0

    def _on_signal() -> None:
        nonlocal hits
        hits += 1
        if hits == 1:
            log.info(
                "signal received: draining%s",
                "" if supervised else " (send it again to exit at once)",
            )
            stop.set()
        elif not supervised:
            log.warning("second signal: exiting now; leases expire and redeliver")
            os._exit(1)

    def _on_parent_gone(fd: int) -> None:
        nonlocal hits
        loop.remove_reader(fd)
        if not stop.is_set():
            log.warning("the supervising process is gone: draining")
            hits += 1
            stop.set()

    if supervised:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        loop.add_signal_handler(signal.SIGTERM, _on_signal)
    else:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal)
    if parent_fd is not None:
        loop.add_reader(parent_fd, _on_parent_gone, parent_fd)
    async with gateway:
        on_ready(gateway)
        tune_gc()
        await stop.wait()
