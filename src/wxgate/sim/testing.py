"""Run the simulator inside a test's event loop: `async with running_simulator() as sim:`."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from wxgate.clock import Clock
from wxgate.sim.config import SimApp, SimConfig
from wxgate.sim.runner import Simulator
from wxgate.sim.state import SimState


class SimHandle:
    """What a test needs from a running simulator; the same operations exist at /_sim/*."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def __repr__(self) -> str:
        return f"<SimHandle {self.base_url} {self.state!r}>"

    @property
    def base_url(self) -> str:
        return self.sim.base_url

    @property
    def config(self) -> SimConfig:
        return self.sim.config

    @property
    def state(self) -> SimState:
        return self.sim.state

    @property
    def ca_file(self) -> Path | None:
        return self.sim.ca_file

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting only the simulator's CA (None without TLS)."""
        if self.sim.ca_file is None:
            return None
        return ssl.create_default_context(cafile=str(self.sim.ca_file))

    async def deliveries(
        self, openid: str | None = None, app: str | None = None, client_msg_id: str | None = None
    ) -> list[dict[str, Any]]:
        return self.sim.admin.deliveries(openid, app, client_msg_id)

    async def duplicates(self) -> list[dict[str, Any]]:
        """Deliveries whose (app, openid, client_msg_id) reached the user more than once."""
        return self.sim.admin.deliveries(duplicates=True)

    async def stats(self) -> dict[str, Any]:
        return self.sim.admin.stats()

    async def set_faults(self, app: str | None = None, **faults: Any) -> dict[str, Any]:
        """E.g. `set_faults(error_rates={"-1": 0.1}, outage_s=30)`; `clear=True` starts over."""
        return self.sim.admin.set_faults(faults, app)

    async def reset(self, tokens: bool = False) -> None:
        self.sim.admin.reset(tokens=tokens)

    async def revoke_tokens(self, appid: str | None = None) -> int:
        return self.sim.admin.revoke_tokens(appid)

    async def add_app(self, app: SimApp) -> None:
        self.sim.admin.add_app(app)

    async def subscription(
        self, appid: str, openid: str, template_id: str, accepted: bool, change: bool = False
    ) -> None:
        """A user accepts or rejects a template (POST /_sim/subscription)."""
        self.sim.admin.subscription(appid, openid, template_id, accepted, change)

    async def wait_receipts(self) -> None:
        """Wait until every receipt queued so far was posted or given up on."""
        await self.sim.receipts.join()


@asynccontextmanager
async def running_simulator(
    config: SimConfig | None = None, *, clock: Clock | None = None
) -> AsyncIterator[SimHandle]:
    """A simulator on 127.0.0.1:<free port> in the current loop, stopped cleanly on exit."""
    sim = Simulator(config, clock)
    try:
        await sim.start(host="127.0.0.1", port=0)
        yield SimHandle(sim)
    finally:
        await sim.close()
