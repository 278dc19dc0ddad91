"""Delivery tests run the real pipeline: SQLite store on a tmp file, the simulator on loopback,
the real WeChatClient and TokenBroker. Only timing knobs are shrunk (backoff, breaker, lease)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from support.delivery import SEND_TIMEOUT_S, SIM_APPS, Rig
from wxgate.clock import SystemClock
from wxgate.settings import WeChatSettings
from wxgate.sim.config import SimApp, SimConfig
from wxgate.sim.testing import running_simulator
from wxgate.store.base import Store
from wxgate.store.postgres import PostgresStore
from wxgate.store.redis import RedisStore
from wxgate.store.sqlite import SQLiteStore
from wxgate.wechat.client import WeChatClient
from wxgate.wechat.tokens import TokenBroker


@asynccontextmanager
async def running_rig(store: Store, clock: SystemClock) -> AsyncIterator[Rig]:
    """The simulator, the store (opened here), the client and the broker; pools drained at exit."""
    config = SimConfig(
        apps=[SimApp(appid=appid, secret=secret) for appid, secret in SIM_APPS.values()]
    )
    async with running_simulator(config) as sim:
        await store.open()
        settings = WeChatSettings(
            base_url=sim.base_url,
            connect_timeout_s=1.0,
            read_timeout_s=SEND_TIMEOUT_S,
            total_timeout_s=SEND_TIMEOUT_S,
        )
        client = WeChatClient(settings, clock)
        await client.start()
        r = Rig(store, sim, client, TokenBroker(client, store, clock), clock)
        try:
            yield r
        finally:
            for pool in r.pools:
                await pool.drain(0)
            await client.close()
            await store.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = SystemClock()
    store = SQLiteStore(str(tmp_path / "wxgate.db"), clock, retention_s=3600)
    async with running_rig(store, clock) as r:
        yield r


@pytest.fixture
async def redis_rig(redis_url: str) -> AsyncIterator[Rig]:
    clock = SystemClock()
    prefix = f"wxdel{uuid.uuid4().hex[:10]}"
    store = RedisStore(redis_url, clock, retention_s=3600, key_prefix=prefix)
    async with running_rig(store, clock) as r:
        yield r


@pytest.fixture
async def postgres_rig(postgres_url: str) -> AsyncIterator[Rig]:
    clock = SystemClock()
    schema = f"wxdel{uuid.uuid4().hex[:10]}"  # a schema of its own in the session's database
    store = PostgresStore(postgres_url, clock, retention_s=3600, schema=schema)
    async with running_rig(store, clock) as r:
        yield r
