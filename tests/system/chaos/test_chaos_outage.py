"""A 30-second WeChat outage with the production breaker and retry settings (docs/architecture.md
§12.2): nothing is lost, the breaker opens and keeps WeChat from being hammered, and
the backlog drains once WeChat is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from support.e2e import APP_A, cpu_s, running_rig, sim_view, wait_status
from wxgate.settings import BreakerSettings, RetrySettings

OUTAGE_S = 30.0
WARM = 300
BACKLOG = 2_000


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_30s_outage_loses_nothing_and_drains_after(tmp_path: Path) -> None:
    async with running_rig(
        tmp_path,
        latency_ms=5.0,
        workers={
            "retry": msgspec.to_builtins(RetrySettings()),
            "breaker": msgspec.to_builtins(BreakerSettings()),
        },
    ) as rig:
        assert rig.settings.workers.breaker.open_s == 10.0
        assert rig.settings.workers.retry.max_attempts == 8
        warm = await rig.api.send_many(WARM, lambda i: f"o_warm{i}", concurrency=16)
        await wait_status(rig.api, "delivered", WARM, timeout_s=15)

        await rig.sim.set_faults(outage_s=OUTAGE_S)
        ends = time.monotonic() + OUTAGE_S
        backlog: list[str] = []
        breaker_seen: list[str] = []
        cpu_at, wall_at = cpu_s(), time.monotonic()
        # The backlog keeps arriving through the outage, in four waves.
        for wave in range(4):
            backlog += await rig.api.send_many(
                BACKLOG // 4, lambda i, w=wave: f"o_w{w}_{i}", concurrency=32
            )
            while time.monotonic() < ends - 1.0 - (OUTAGE_S - 1.0) * (3 - wave) / 4:
                stats = await rig.api.stats()
                breaker_seen.append(stats["delivery"]["apps"][APP_A.name]["breaker"])
                assert stats["by_status"].get("dead", 0) == 0, stats["by_status"]
                await asyncio.sleep(0.5)
        busy = (cpu_s() - cpu_at) / (time.monotonic() - wall_at)
        assert busy < 0.3, f"waiting out an outage kept {busy:.0%} of a core busy"
        assert rig.sim.state.delivered == WARM, "nothing gets through the outage"
        assert "open" in breaker_seen
        # After it trips, the breaker is open (or probing) for the rest of the outage.
        tripped = breaker_seen[breaker_seen.index("open") :]
        assert tripped.count("closed") == 0, breaker_seen
        failed = rig.sim.state.http_errors[503]
        assert failed < 150, f"{failed} sends into a 30 s outage: the breaker did not hold"

        await asyncio.sleep(max(0.0, ends - time.monotonic()))
        back = time.monotonic()
        counts = await wait_status(rig.api, "delivered", WARM + BACKLOG, timeout_s=40)
        drained_s = time.monotonic() - back
        assert counts.get("dead", 0) == counts.get("failed", 0) == 0, counts
        seen = await sim_view(rig.sim)
        assert len(seen.ids) == WARM + BACKLOG
        assert seen.distinct == set(warm) | set(backlog)
        views = await rig.api.messages(backlog[:: BACKLOG // 100])
        assert max(v["attempts"] for v in views) < rig.settings.workers.retry.max_attempts
        print(f"503s during the outage: {failed}; CPU {busy:.0%}; drained in {drained_s:.1f}s")
