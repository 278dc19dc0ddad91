"""One simulator instance: state, receipt sender and the aiohttp site, started and stopped
inside the running event loop (aiohttp requires it)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from aiohttp import web

from wxgate.clock import Clock
from wxgate.sim.admin import Admin
from wxgate.sim.config import SimConfig
from wxgate.sim.receipts import ReceiptSender
from wxgate.sim.server import Api
from wxgate.sim.state import SimState
from wxgate.sim.templates import TemplateLists
from wxgate.sim.tls import make_certs, server_context

_MAX_BODY = 1 << 20


class Simulator:
    def __init__(self, config: SimConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SimConfig()
        self.state = SimState(self.config, clock)
        self.receipts = ReceiptSender(self.state)
        self.api = Api(self.state, self.receipts)
        self.admin = Admin(self.state, self.receipts)
        self.templates = TemplateLists(self.state)
        self.ca_file: Path | None = None
        self.host = self.config.host
        self.port = self.config.port
        self._runner: web.AppRunner | None = None
        self._tmp: str | None = None

    def __repr__(self) -> str:
        return f"<Simulator {self.base_url} {self.state!r} {self.receipts!r}>"

    @property
    def scheme(self) -> str:
        return "https" if self.config.tls else "http"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY)
        app.add_routes(self.api.routes())
        app.add_routes(self.admin.routes())
        app.add_routes(self.templates.routes())
        return app

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        self.host = host if host is not None else self.config.host
        want_port = port if port is not None else self.config.port
        ssl_context = None
        if self.config.tls:
            directory = self.config.tls_dir
            if directory is None:
                directory = self._tmp = tempfile.mkdtemp(prefix="wxgate-sim-tls-")
            ca, cert, key = make_certs(directory, (self.host,))
            self.ca_file = ca
            ssl_context = server_context(cert, key)
        await self.receipts.start()
        # No access log: a log line per request would make the simulator the bottleneck.
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.host, want_port, ssl_context=ssl_context, backlog=1024)
        await site.start()
        self.port = int(runner.addresses[0][1])

    async def close(self) -> None:
        self.api.stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.receipts.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
