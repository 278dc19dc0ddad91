"""One app in an outage does not slow another: app a's delivery rate beside app b's outage
(with a backlog of b's own) stays within 70% of its rate alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.e2e import APP_A, APP_B, Rig, running_rig
from support.wait import wait_until

BATCH = 800
EDGE = 100  # deliveries left out at each end of a run (ramp-up and tail)


async def _batch(rig: Rig, app: str, n: int, prefix: str) -> str:
    body = {
        "app": app,
        "template_id": "tpl_order",
        "data": {"thing1": "Sale starts"},
        "recipients": [{"touser": f"{prefix}{i}"} for i in range(n)],
    }
    status, answer = await rig.api.post("/v1/batches", body)
    assert status == 202, answer
    assert answer["total"] == n
    return str(answer["id"])


async def _rate_of_a(rig: Rig, already: int) -> float:
    """Queue a batch for a, wait for all of it, and return its steady deliveries per second
    (from the simulator's own timestamps, ramp and tail cut off)."""
    await _batch(rig, APP_A.name, BATCH, f"o_a{already}_")
    await wait_until(
        lambda: _count(rig, APP_A.appid) >= already + BATCH,
        30,
        f"{already + BATCH} deliveries for a",
    )
    rows = (await rig.sim.deliveries(app=APP_A.appid))[already:]
    times = sorted(r["time"] for r in rows)
    steady = times[EDGE:-EDGE]
    return (len(steady) - 1) / (steady[-1] - steady[0])


def _count(rig: Rig, appid: str) -> int:
    return sum(1 for _ in rig.sim.state.log.indices(app=appid))


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_app_in_outage_does_not_slow_another(tmp_path: Path) -> None:
    async with running_rig(
        tmp_path,
        (APP_A, APP_B),
        latency_ms=20.0,
        # Concurrency, not CPU, bounds each app: 8 sends in flight x 20 ms = 400/s at most.
        app_overrides={"max_concurrency": 8},
        workers={
            "concurrency": 64,
            "breaker": {"consecutive_failures": 5, "open_s": 0.5, "half_open_probes": 1},
            # b must keep failing for the whole measurement without running out of attempts;
            # that an outage loses nothing is the breaker test's job.
            "retry": {"max_attempts": 1_000, "base_s": 0.05, "cap_s": 0.5},
        },
    ) as rig:
        alone = await _rate_of_a(rig, 0)

        await rig.sim.set_faults(app=APP_B.appid, outage_s=120)
        await _batch(rig, APP_B.name, BATCH, "o_b_")

        async def b_failing() -> bool:
            stats = await rig.api.stats()
            return stats["delivery"]["apps"][APP_B.name]["breaker"] == "open"

        await wait_until(b_failing, 10, "b's breaker to open", interval_s=0.05)
        beside = await _rate_of_a(rig, BATCH)
        stats = await rig.api.stats()
        assert stats["by_app"][APP_B.name].get("delivered", 0) == 0
        assert rig.sim.state.http_errors[503] > 0, "b really was failing meanwhile"
        print(f"a alone {alone:.0f}/s, beside b's outage {beside:.0f}/s")
        assert beside >= 0.7 * alone, f"a alone {alone:.0f}/s, beside b's outage {beside:.0f}/s"
        assert alone < 500, f"{alone:.0f}/s: concurrency, not CPU, should bound the rate"

        # b's backlog was kept, and goes out once WeChat is back for b.
        await rig.sim.set_faults(app=APP_B.appid, clear=True)
        await wait_until(lambda: _count(rig, APP_B.appid) >= BATCH, 30, "b's backlog to drain")
        rows = await rig.sim.deliveries(app=APP_B.appid)
        assert len({r["client_msg_id"] for r in rows}) == len(rows) == BATCH
        assert not await rig.sim.duplicates()
        stats = await rig.api.stats()
        assert stats["by_app"][APP_B.name].get("dead", 0) == 0
