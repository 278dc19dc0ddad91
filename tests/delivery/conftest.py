"""Delivery tests run the real pipeline: SQLite store on a tmp file, the simulator on loopback,
the real WeChatClient and TokenBroker. Only timing knobs are shrunk (backoff, breaker, lease)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from delivery_support import SEND_TIMEOUT_S, SIM_APPS, Rig

from wxgate.clock import SystemClock
from wxgate.settings import WeChatSettings
from wxgate.sim.config import SimApp, SimConfig
from wxgate.sim.testing import running_simulator
from wxgate.store.sqlite import SQLiteStore
from wxgate.wechat.client import WeChatClient
from wxgate.wechat.tokens import TokenBroker


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = SystemClock()
    config = SimConfig(
        apps=[SimApp(appid=appid, secret=secret) for appid, secret in SIM_APPS.values()]
    )
    async with running_simulator(config) as sim:
        store = SQLiteStore(str(tmp_path / "wxgate.db"), clock, retention_s=3600)
        await store.open()
        client = WeChatClient(
            WeChatSettings(
                base_url=sim.base_url,
                connect_timeout_s=1.0,
                read_timeout_s=SEND_TIMEOUT_S,
                total_timeout_s=SEND_TIMEOUT_S,
            ),
            clock,
        )
        await client.start()
        broker = TokenBroker(client, store, clock)
        r = Rig(store, sim, client, broker, clock)
        try:
            yield r
        finally:
            for pool in r.pools:
                await pool.drain(0)
            await client.close()
            await store.close()
