"""Builds a running gateway from Settings; the only place that names concrete classes.

Lifecycles nest in `async with` and close in reverse: store -> WeChat client -> token broker ->
worker pool -> HTTP site. SIGTERM drains (stop leasing, finish or release in-flight sends); a
second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web

from wxgate.api.app import create_app
from wxgate.api.ops import METRICS_HANDLER
from wxgate.clock import Clock, SystemClock
from wxgate.delivery.dispatcher import Dispatcher
from wxgate.delivery.workers import WorkerPool
from wxgate.metrics import Metrics
from wxgate.settings import Settings
from wxgate.store.base import Store
from wxgate.store.factory import open_store
from wxgate.wechat.client import WeChatClient
from wxgate.wechat.tokens import TokenBroker

log = logging.getLogger("wxgate")

Role = Literal["api", "worker", "all"]


class Gateway:
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
        self.role = role
        self.reuse_port = reuse_port
        self._sock = sock
        self.metrics = Metrics()
        self.store: Store | None = None
        self.client: WeChatClient | None = None
        self.broker: TokenBroker | None = None
        self.pool: WorkerPool | None = None
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self.port: int = settings.server.port

    @property
    def url(self) -> str:
        return f"http://{self.settings.server.host}:{self.port}"

    async def __aenter__(self) -> Gateway:
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
        self.metrics.bind_store(self.store)
        stats_extra: Callable[[], Awaitable[dict[str, Any]]] | None = None
        if self.pool is not None:
            pool = self.pool

            async def _extra() -> dict[str, Any]:
                return {"apps": pool.app_states()}

            stats_extra = _extra
        self.app = create_app(s, self.store, self.clock, self.broker, stats_extra)
        self.app[METRICS_HANDLER] = self.metrics.handler
        self.metrics.instrument(self.app)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
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
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def close(self, *, drain: bool = True) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.pool is not None:
            if drain:
                await self.pool.drain(self.settings.workers.drain_timeout_s)
            else:
                await self.pool.drain(0)
            self.pool = None
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self.store is not None:
            await self.store.close()
            self.store = None


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


async def serve_until_signal(gateway: Gateway, on_ready: Callable[[Gateway], None]) -> None:
    """Run until SIGTERM/SIGINT; the first signal drains, a second one exits at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hits = 0

    def _on_signal() -> None:
        nonlocal hits
        hits += 1
        if hits == 1:
            log.info("signal received: draining (send it again to exit at once)")
            stop.set()
        else:
            log.warning("second signal: exiting now; leases expire and redeliver")
            os._exit(1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal)
    async with gateway:
        on_ready(gateway)
        await stop.wait()
