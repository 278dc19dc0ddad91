"""The real client against the real simulator on a loopback port (no mocks of our own I/O)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support.wechat import APP, settings_for
from wxgate.clock import SystemClock
from wxgate.sim.config import SimConfig
from wxgate.sim.testing import SimHandle, running_simulator
from wxgate.wechat.client import WeChatClient


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_simulator(SimConfig(slow_s=3.0, receipt_delay_s=0.0)) as handle:
        yield handle


@pytest.fixture
async def client(sim: SimHandle) -> AsyncIterator[WeChatClient]:
    async with WeChatClient(settings_for(sim.base_url), SystemClock()) as c:
        yield c


@pytest.fixture
async def token(client: WeChatClient) -> str:
    return (await client.fetch_token(APP)).access_token
