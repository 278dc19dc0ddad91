"""Two gateway processes on one shared store (Redis, then PostgreSQL) deliver 20,000 messages:
each reaches WeChat exactly once, both processes share the work, and together they keep an
app's one rate limit (a token bucket in the store) within 5%.

Both apps are paused (a pause in the store, which every process obeys) while the messages go
in, so delivery runs from a full backlog. Then app b's 3,000 single messages go out alone at
b's limit (well below what two processes manage even on a busy 2-core machine, so the limit
alone sets the pace), and then app a's 17,000, sent in batches, with no limit: as fast as the
two processes can.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from support.e2e import APP_A, APP_B, TEMPLATE, Api, free_port
from support.gateway_process import ServeProcess
from support.multiproc import (
    gateway_config,
    metric,
    repeats,
    scrape,
    sim_sends,
    start_all,
    steady_rate,
)
from support.wait import wait_until
from wxgate.clock import SystemClock
from wxgate.models import AppPause
from wxgate.sim.config import SimApp, SimConfig
from wxgate.sim.testing import running_simulator
from wxgate.store.factory import open_store

PROCESSES = 2
BATCHES_A, BATCH_SIZE = 17, 1_000
TOTAL_A = BATCHES_A * BATCH_SIZE
TOTAL_B = 3_000
TOTAL = TOTAL_A + TOTAL_B
RATE_B_PER_S = 250.0
BURST_B = RATE_B_PER_S * 1.0  # the bucket holds one second of the rate (app_state.RATE_BURST_S)


@pytest.fixture(params=["redis", "postgres"])
def shared_url(request: pytest.FixtureRequest) -> str:
    """The store both processes share: this test's own Redis, or a database of its own."""
    if request.param == "redis":
        url: str = request.getfixturevalue("private_redis").url()
    else:
        url = request.getfixturevalue("postgres_db")
    return url


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_two_processes_deliver_20000_exactly_once_within_the_shared_rate(
    tmp_path: Path, shared_url: str
) -> None:
    # No receipts: this test is about sends (receipts across processes: test_mp_cli.py).
    config = SimConfig(apps=[SimApp(appid=a.appid, secret=a.secret) for a in (APP_A, APP_B)])
    store = open_store(shared_url, SystemClock(), retention_s=86_400)
    await store.open()
    async with running_simulator(config) as sim:
        procs = [
            ServeProcess(
                [
                    "--config",
                    str(
                        gateway_config(
                            tmp_path,
                            f"gw{i}",
                            port,
                            sim.base_url,
                            shared_url,
                            (APP_A, APP_B),
                            workers={"concurrency": 256, "lease_batch": 256},
                            app_overrides={"max_concurrency": 256},
                            per_app={APP_B.name: {"rate_per_s": RATE_B_PER_S}},
                        )
                    ),
                ],
                port,
                tmp_path / f"gw{i}.log",
            )
            for i, port in enumerate(free_port() for _ in range(PROCESSES))
        ]
        apis = [Api(p.url) for p in procs]
        try:
            for app in (APP_A, APP_B):
                await store.set_pause(AppPause(app.name, time.time() + 600, "test: fill first"))
            await start_all(procs)

            # In: half of b's singles and of a's batches through each process's API.
            started = time.monotonic()
            singles, _ = await asyncio.gather(
                asyncio.gather(
                    *(
                        api.send_many(
                            TOTAL_B // PROCESSES, lambda i, n=n: f"o_b{n}_{i}", app=APP_B.name
                        )
                        for n, api in enumerate(apis)
                    )
                ),
                asyncio.gather(*(_batch(apis[b % PROCESSES], b) for b in range(BATCHES_A))),
            )
            accepted_b = [i for part in singles for i in part]
            ingest_s = time.monotonic() - started
            assert sim.state.requests == 0, "every process keeps to the shared pauses"

            # b alone, at its limit.
            await store.clear_pause(APP_B.name)
            resumed_at = time.time()  # b's bucket is created after this, full
            await wait_until(
                lambda: sim.state.delivered >= TOTAL_B,
                60,
                f"{TOTAL_B} deliveries to b",
                progress=lambda: sim.state.stats(),
            )
            ids_b, times_b = await sim_sends(sim, APP_B.appid)

            # Then a, as fast as the two processes go.
            await store.clear_pause(APP_A.name)
            started = time.monotonic()
            await wait_until(
                lambda: sim.state.delivered >= TOTAL,
                90,
                f"{TOTAL} deliveries",
                progress=lambda: sim.state.stats(),
            )
            deliver_a_s = time.monotonic() - started

            # b: the client_msg_ids WeChat saw are exactly the ids the API handed out.
            assert len(accepted_b) == len(set(accepted_b)) == TOTAL_B
            assert set(ids_b) == set(accepted_b), "every accepted message reached WeChat"
            assert repeats(ids_b) == [], "none reached WeChat twice"
            # a: every recipient got exactly one message, each with its own client_msg_id.
            rows_a = await sim.deliveries(app=APP_A.appid)
            assert sorted(str(r["openid"]) for r in rows_a) == sorted(
                f"o_a{b}_{i}" for b in range(BATCHES_A) for i in range(BATCH_SIZE)
            )
            assert repeats([str(r["client_msg_id"]) for r in rows_a]) == []
            assert await sim.duplicates() == []

            # Both processes sent, and each one's /v1/stats has the whole deployment's count.
            texts = [await scrape(p.url) for p in procs]
            sent_by = [int(metric(t, "wxgate_messages_sent_total")) for t in texts]
            assert all(n > 0 for n in sent_by), sent_by
            assert sum(sent_by) == TOTAL, sent_by
            for api in apis:
                await wait_until(
                    lambda api=api: _all_sent(api), 10, "sent in /v1/stats", progress=api.by_status
                )

            # Never more than the bucket allows: its burst, then the rate from its creation
            # (a hard bound: a send can be late for its reservation, never early).
            allowed = BURST_B + RATE_B_PER_S * (max(times_b) - resumed_at)
            # From 2 s in (the burst spent, start-up lag behind), within 5% of the limit.
            rate = steady_rate(times_b, skip_s=2.0)
            print(
                f"\ningest {TOTAL / ingest_s:,.0f} msg/s ({TOTAL_B:,} singles + {TOTAL_A:,} in "
                f"batches) over {PROCESSES} processes; b: {TOTAL_B:,} sends at {rate:,.1f}/s "
                f"(limit {RATE_B_PER_S:,.0f}/s, {allowed:,.0f} allowed); a: {TOTAL_A:,} in "
                f"{deliver_a_s:.1f} s ({TOTAL_A / deliver_a_s:,.0f}/s); per process {sent_by}"
            )
            assert TOTAL_B <= allowed
            assert RATE_B_PER_S * 0.95 <= rate <= RATE_B_PER_S * 1.05, rate
        finally:
            for api in apis:
                await api.close()
            for p in procs:
                p.stop()
            await store.close()


async def _batch(api: Api, b: int) -> None:
    recipients = [{"touser": f"o_a{b}_{i}"} for i in range(BATCH_SIZE)]
    status, answer = await api.post(
        "/v1/batches",
        {
            "app": APP_A.name,
            "template_id": TEMPLATE,
            "data": {"thing1": "x"},
            "recipients": recipients,
        },
    )
    assert status == 202, answer


async def _all_sent(api: Api) -> bool:
    counts = await api.by_status()
    return counts.get("sent", 0) + counts.get("delivered", 0) >= TOTAL
