"""Adaptive rate end to end, on both stores: a burst of -1 from the simulator halves the app's
send rate (seen live in /v1/stats and the metrics gauge), the rate climbs back once the burst
ends, nothing is lost, and waiting for the (lowered) rate never counts as an attempt."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from support.e2e import TEMPLATE, AppSpec, Rig, running_rig
from support.wait import wait_until

MAX_RATE = 200.0
N = 300
ADAPTIVE = {
    "interval_s": 0.25,
    "window": 50,
    "min_samples": 5,
    "threshold": 0.2,
    "increase_ratio": 0.25,  # +50/s per clean interval: back to the maximum within ~1 s
    # Above the default 5/s: from this floor the rate is back to MAX_RATE in 4 clean
    # intervals even when a loaded machine stretches the burst over many halvings.
    "floor_per_s": 25.0,
}
# A burst of 50% -1 sits right at the breaker's default failure ratio (0.5), so whether it
# opens (and stops every send for open_s) would be a coin toss: this test is about the rate.
BREAKER = {"failure_ratio": 0.95, "consecutive_failures": 1000}


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if request.param == "postgres":
        yield {"url": request.getfixturevalue("postgres_db")}
    elif request.param == "redis":
        # The gateway uses the default key prefix: start from an empty DB, so what another
        # whole-gateway test left there (the dashboard's dead letters) is not counted here.
        url = request.getfixturevalue("redis_url")
        with redis.Redis.from_url(url) as r:
            r.flushdb()
        yield {"url": url}
    else:
        yield {}


async def _rate(rig: Rig, app: str) -> float:
    return float((await rig.api.stats())["delivery"]["apps"][app]["rate_per_s"])


def _gauge(text: str, app: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "wxgate_app_rate_per_second" and s.labels.get("app") == app:
                return float(s.value)
    raise AssertionError("no wxgate_app_rate_per_second sample")


async def test_a_burst_of_busy_halves_the_rate_and_it_recovers(
    tmp_path: Path, store: dict[str, Any]
) -> None:
    tag = uuid.uuid4().hex[:8]  # a shared Redis may hold another run's rows for app "a"
    app = AppSpec(f"ad{tag}", f"wx_ad_{tag}", "secret_ad", "token_ad")
    async with running_rig(
        tmp_path,
        (app,),
        app_overrides={"rate_per_s": MAX_RATE},
        workers={
            "adaptive": ADAPTIVE,
            "breaker": BREAKER,
            "retry": {"max_attempts": 30, "base_s": 0.05, "cap_s": 0.2},
        },
        store=store,
    ) as rig:
        assert await _rate(rig, app.name) == MAX_RATE
        await rig.sim.set_faults(error_rates={"-1": 0.5})
        status, batch = await rig.api.post(
            "/v1/batches",
            {
                "app": app.name,
                "template_id": TEMPLATE,
                "data": {"thing1": "x"},
                "recipients": [{"touser": f"o_{i}"} for i in range(N)],
            },
        )
        assert status == 202

        async def lowered() -> float | None:
            rate = await _rate(rig, app.name)
            return rate if rate <= MAX_RATE / 2 else None

        low = await wait_until(lowered, 10, "the rate to halve", interval_s=0.02)
        gauge = _gauge(await rig.api.metrics_text(), app.name)
        assert gauge < MAX_RATE  # the gauge shows the live rate, not the configured one
        busy_until = time.monotonic() + 1.0
        rates = [low]
        while time.monotonic() < busy_until:  # the burst goes on: the rate stays down
            rates.append(await _rate(rig, app.name))
            await asyncio.sleep(0.05)
        assert max(rates[len(rates) // 2 :]) <= MAX_RATE / 2, rates

        await rig.sim.set_faults(clear=True)  # the burst ends
        await wait_until(
            lambda: _is(rig, app.name, MAX_RATE), 10, "the rate to recover", interval_s=0.05
        )
        assert _gauge(await rig.api.metrics_text(), app.name) == MAX_RATE

        async def done() -> bool:
            _, progress = await rig.api.get(f"/v1/batches/{batch['id']}")
            sent = sum(progress["counts"].get(s, 0) for s in ("sent", "delivered"))
            return bool(sent == N)

        await wait_until(done, 20, f"{N} sent")
        _, page = await rig.api.get("/v1/dead-letters")
        assert page["items"] == []
        busy = rig.sim.state.errors[-1]
        assert busy > 0
        # Every attempt is one request WeChat answered: waits for the rate were not counted.
        attempts = 0
        assert rig.runtime.store is not None
        for row in await rig.sim.deliveries(app=app.appid):
            m = await rig.runtime.store.get(str(row["client_msg_id"]))
            assert m is not None
            attempts += m.attempts
        assert attempts == N + busy


async def _is(rig: Rig, app: str, rate: float) -> bool:
    return await _rate(rig, app) == rate
