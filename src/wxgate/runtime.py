"""Builds a running gateway from Settings; the only place that names concrete classes.

Startup runs named phases over one AsyncExitStack (store -> WeChat sessions and token broker ->
delivery -> HTTP listeners); shutdown closes them in reverse, draining in-flight sends. Signals,
GC tuning and uvloop belong to the process around it (process.py).

Roles split one deployment into ingest and delivery: `api` serves the whole HTTP API and runs
no workers; `worker` runs the delivery pool and serves only the probe routes (/healthz, /readyz,
/metrics) on its port (probes and scrapes need one; it takes no API traffic); `all` does both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web

from wxgate.api.app import create_app
from wxgate.api.connections import ConnectionLimits, LimitedRunner, LimitedServer
from wxgate.api.metrics_access import metrics_route
from wxgate.api.ops import METRICS_HANDLER
from wxgate.api.template_check import LISTED_MODES
from wxgate.clock import Clock, SystemClock
from wxgate.delivery.dispatcher import Dispatcher
from wxgate.delivery.redrive import Redriver
from wxgate.delivery.webhooks import WebhookSender
from wxgate.delivery.workers import WorkerPool
from wxgate.errors import ConfigError
from wxgate.metrics import Metrics
from wxgate.metrics.throughput import ThroughputFlusher
from wxgate.policy.errcodes import known_codes
from wxgate.settings import Settings, parse_bind
from wxgate.store.base import Store
from wxgate.store.factory import open_store
from wxgate.tracing import Tracer, build_tracer
from wxgate.wechat.client import WeChatClient
from wxgate.wechat.templates import TemplateCatalog
from wxgate.wechat.tokens import TokenBroker

log = logging.getLogger("wxgate")

Role = Literal["api", "worker", "all"]
ROLES: tuple[Role, ...] = ("api", "worker", "all")
# Stopping the HTTP site waits this long at most for requests in progress (each one is a
# store round trip; a hung store must not eat the drain's time).
HTTP_SHUTDOWN_S = 5.0


def parse_role(value: str) -> Role:
    for role in ROLES:
        if value == role:
            return role
    raise ConfigError(f"role {value!r}: must be api, worker or all")


class Runtime:
    """One gateway's running parts: store, WeChat client, token broker, worker pool, webhooks
    and HTTP listeners. `async with Runtime(settings)` starts them; leaving drains and closes.

    Not a process: `wxgate serve --processes N` runs one per child, and tests run several in
    one interpreter.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        role: Role = "all",
        reuse_port: bool = False,
        sock: socket.socket | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        """`tracer`: spans go there (tests give one over an in-memory exporter); by default
        the one `[tracing]` configures, which this runtime flushes and stops at close."""
        self.settings = settings
        self._own_tracer = tracer is None
        self.tracer: Tracer = build_tracer(settings.tracing) if tracer is None else tracer
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
        self.redriver: Redriver | None = None
        self._chart: ThroughputFlusher | None = None
        self.templates: TemplateCatalog | None = None
        self.app: web.Application | None = None
        self._runner: LimitedRunner | None = None
        self._metrics_runner: LimitedRunner | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._drain = True  # read by the shutdown phases: False closes without waiting
        self.port: int = settings.server.port
        self.metrics_port: int | None = None  # the server.metrics_bind listener's, when set

    def __repr__(self) -> str:
        state = "running" if self._stack is not None else "stopped"
        return f"<Runtime role={self.role} {state} port={self.port}>"

    @property
    def http(self) -> LimitedServer | None:
        """The API listener's connection counts (open, refused, timeouts)."""
        return self._runner.limited if self._runner is not None else None

    @property
    def url(self) -> str:
        return f"http://{self.settings.server.host}:{self.port}"

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ startup

    async def start(self) -> None:
        """Run the startup phases in order; each registers its own shutdown on the stack, so
        a phase that fails closes what the earlier ones opened (without draining)."""
        self._stack = stack = contextlib.AsyncExitStack()
        self._drain = True
        try:
            if self._own_tracer:
                # Last: flushes the drain's spans too; in a thread, as the exporter may wait
                # for a slow collector.
                stack.push_async_callback(asyncio.to_thread, self.tracer.shutdown)
            store = await self._open_store(stack)
            broker = await self._open_wechat(stack, store)
            if self.role in ("worker", "all"):
                await self._start_delivery(stack, store, broker)
            self.metrics.bind_store(store)
            self.metrics.bind_webhooks(store)
            self._chart = ThroughputFlusher(self.metrics.tally, store)
            stack.push_async_callback(self._chart.close)  # before the store closes
            await self._chart.start()
            await self._serve_http(stack, self._build_app(store, broker))
        except BaseException:
            await self.close(drain=False)
            raise

    async def _open_store(self, stack: contextlib.AsyncExitStack) -> Store:
        s = self.settings.store
        self.store = store = open_store(
            s.url,
            self.clock,
            s.retention_s,
            pool_size=s.pool_size,
            min_replica_acks=s.min_replica_acks,
            replica_ack_timeout_ms=s.replica_ack_timeout_ms,
        )
        stack.push_async_callback(self._close_store)  # also after a half-done open
        await store.open()
        return store

    async def _open_wechat(self, stack: contextlib.AsyncExitStack, store: Store) -> TokenBroker:
        """The WeChat client's sessions (created inside the running loop, as aiohttp requires),
        the token broker over them, and the template lists apps that validate read."""
        s = self.settings
        self.client = client = WeChatClient(s.wechat, self.clock)
        stack.push_async_callback(self._close_client)
        await client.start()
        self.broker = broker = TokenBroker(client, store, self.clock)
        self.metrics.bind_broker(broker, {a.appid: a.name for a in s.apps})
        if any(a.validate in LISTED_MODES for a in s.apps):
            self.templates = TemplateCatalog(client, broker, s.templates, self.clock)
            stack.push_async_callback(self._close_templates)
        return broker

    async def _start_delivery(
        self, stack: contextlib.AsyncExitStack, store: Store, broker: TokenBroker
    ) -> None:
        """The worker pool, then the status webhooks (a loop of their own beside the pool,
        delivery/webhooks.py). Shutdown drains the pool first so that the final statuses of
        the sends it finishes still get their webhooks."""
        s = self.settings
        apps = {a.name: a for a in s.apps}
        # The send budget checked against each lease is the client's real timeout.
        dispatcher = Dispatcher(
            store,
            broker,
            apps,
            s.workers,
            self.clock,
            metrics=self.metrics,
            send_timeout_s=s.wechat.total_timeout_s,
            tracer=self.tracer,
        )
        self.pool = pool = WorkerPool(store, dispatcher, s.workers, self.clock)
        self.metrics.bind_pool(pool)
        stack.push_async_callback(self._stop_delivery)
        await pool.start()
        busy_at = max(1, s.workers.concurrency // 2)
        self.webhooks = WebhookSender(
            store,
            apps,
            s.webhooks,
            self.clock,
            metrics=self.metrics,
            busy=lambda: pool.held >= busy_at,  # a send backlog: webhooks yield the CPU
            tracer=self.tracer,
        )
        await self.webhooks.start()
        self.redriver = Redriver(
            store, store, apps, self.clock, metrics=self.metrics, wake=pool.wake
        )
        await self.redriver.start()

    def _build_app(self, store: Store, broker: TokenBroker) -> web.Application:
        """The whole API, or only the probe routes in a worker-only process."""
        s = self.settings
        stats_extra: Callable[[], Awaitable[dict[str, Any]]] | None = None
        if self.pool is not None:
            pool = self.pool

            async def _extra() -> dict[str, Any]:
                return {"apps": pool.app_states()}

            stats_extra = _extra
        self.app = app = create_app(
            s,
            store,
            self.clock,
            broker,
            stats_extra,
            self.metrics,
            wake=self.pool.wake if self.pool is not None else None,
            templates=self.templates,
            probes_only=self.role == "worker",
            tracer=self.tracer,
        )
        return app

    async def _serve_http(self, stack: contextlib.AsyncExitStack, app: web.Application) -> None:
        """The API listener, then /metrics's own listener when server.metrics_bind is set."""
        s = self.settings
        metrics_handler = metrics_route(self.metrics.handler, s.server.metrics_key)
        if s.server.metrics_bind is None:
            app[METRICS_HANDLER] = metrics_handler
        limits = ConnectionLimits.from_settings(s.server)
        self._runner = LimitedRunner(
            app,
            limits,
            # Not a log: the class counts and times requests for /metrics (wxgate.metrics).
            access_log=logging.getLogger("wxgate.http"),
            access_log_class=self.metrics.access_logger(),
            handle_signals=False,
            shutdown_timeout=HTTP_SHUTDOWN_S,
        )
        stack.push_async_callback(self._stop_http)
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
            await self._serve_metrics(stack, s.server.metrics_bind, metrics_handler, limits)

    async def _serve_metrics(
        self,
        stack: contextlib.AsyncExitStack,
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
        stack.push_async_callback(self._stop_metrics_http)
        await self._metrics_runner.setup()
        host, port = parse_bind(bind)
        # Every process of `serve --processes N` binds it, as it does the API port.
        reuse = self.reuse_port or self._sock is not None
        site = web.TCPSite(self._metrics_runner, host, port, reuse_port=reuse or None)
        await site.start()
        self.metrics_port = _bound_port(site) or port

    # ----------------------------------------------------------------- shutdown

    async def close(self, *, drain: bool = True) -> None:
        """Close the phases in reverse: listeners, delivery (drained unless `drain` is False),
        templates, WeChat sessions, store."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        self._drain = drain
        await stack.aclose()

    async def _stop_metrics_http(self) -> None:
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None

    async def _stop_http(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _stop_delivery(self) -> None:
        if self.redriver is not None:
            await self.redriver.close()
            self.redriver = None
        if self.pool is not None:
            await self.pool.drain(self.settings.workers.drain_timeout_s if self._drain else 0)
            self.pool = None
        if self.webhooks is not None:
            await self.webhooks.close(timeout_s=2.0 if self._drain else 0.0)
            self.webhooks = None

    async def _close_templates(self) -> None:
        if self.templates is not None:
            await self.templates.close()
            self.templates = None

    async def _close_client(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def _close_store(self) -> None:
        if self.store is not None:
            await self.store.close()
            self.store = None


def _bound_port(site: web.BaseSite) -> int | None:
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port: int = server.sockets[0].getsockname()[1]
        return port
    return None
