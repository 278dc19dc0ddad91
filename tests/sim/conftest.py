"""The simulator on a loopback port and a plain aiohttp client to talk to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from wxgate.clock import FakeClock
from wxgate.sim.config import SimConfig
from wxgate.sim.testing import SimHandle, running_simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def clock() -> FakeClock:
    # 2024-05-01 12:00 Asia/Shanghai, well away from midnight.
    return FakeClock(start=1_714_536_000.0)


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[SimHandle]:
    config = SimConfig(slow_s=0.3, receipt_delay_s=0.0, msgid_start=2**32 + 1000)
    async with running_simulator(config, clock=clock) as handle:
        yield handle
