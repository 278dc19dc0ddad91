"""Two gateway processes on one Redis deliver 20,000 messages: each reaches WeChat exactly once,
both processes share the work, and together they keep an app's one rate limit (a token bucket
in Redis) within 5%.

App a gets 16,000 messages in batches with no rate limit (the processes go as fast as they
can); app b gets 4,000 single messages at a limit of RATE_B_PER_S, well below what the two
processes manage even on a busy 2-core machine, and room in every process's pool that a
cannot take, so the limit alone sets b's pace. Both apps
are paused (a pause in the store, which every process obeys) while the messages go in, so
delivery runs from a full backlog.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from e2e_support import APP_A, APP_B, TEMPLATE, Api, free_port, wait_until
from mp_support import (
    ServeProcess,
    gateway_config,
    max_window,
    metric,
    repeats,
    scrape,
    sim_sends,
    start_all,
    steady_rate,
)

from redis_server import RedisServer
from wxgate.clock import SystemClock
from wxgate.models import AppPause
from wxgate.sim.config import SimApp, SimConfig
from wxgate.sim.testing import running_simulator
from wxgate.store.redis import RedisStore

PROCESSES = 2
BATCHES_A, BATCH_SIZE = 16, 1_000
TOTAL_A = BATCHES_A * BATCH_SIZE
TOTAL_B = 4_000
TOTAL = TOTAL_A + TOTAL_B
RATE_B_PER_S = 400.0  # its bucket holds one second of it (the burst)


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_two_processes_deliver_20000_exactly_once_within_the_shared_rate(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    # No receipts: this test is about sends (receipts across processes: test_mp_cli.py).
    config = SimConfig(apps=[SimApp(appid=a.appid, secret=a.secret) for a in (APP_A, APP_B)])
    store = RedisStore(private_redis.url(), SystemClock(), retention_s=86_400)
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
                            private_redis.url(),
                            (APP_A, APP_B),
                            workers={"concurrency": 384, "lease_batch": 256},
                            # a's flood may not crowd out b's sends waiting for their slot.
                            per_app={
                                APP_A.name: {"max_concurrency": 128},
                                APP_B.name: {"rate_per_s": RATE_B_PER_S, "max_concurrency": 256},
                            },
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

            for app in (APP_A, APP_B):
                await store.clear_pause(app.name)
            started = time.monotonic()
            await wait_until(
                lambda: sim.state.delivered >= TOTAL,
                100,
                f"{TOTAL} deliveries",
                progress=lambda: sim.state.stats(),
            )
            deliver_s = time.monotonic() - started

            # a: every recipient got exactly one message, each with its own client_msg_id.
            rows_a = await sim.deliveries(app=APP_A.appid)
            openids = [str(r["openid"]) for r in rows_a]
            assert sorted(openids) == sorted(
                f"o_a{b}_{i}" for b in range(BATCHES_A) for i in range(BATCH_SIZE)
            )
            assert repeats([str(r["client_msg_id"]) for r in rows_a]) == []
            # b: the client_msg_ids WeChat saw are exactly the ids the API handed out.
            ids_b, times_b = await sim_sends(sim, APP_B.appid)
            assert len(accepted_b) == len(set(accepted_b)) == TOTAL_B
            assert set(ids_b) == set(accepted_b), "every accepted message reached WeChat"
            assert repeats(ids_b) == [], "none reached WeChat twice"
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

            rate = steady_rate(times_b, burst=RATE_B_PER_S)
            # Past the first second's burst, no stretch of the run beats the limit either.
            busiest = max_window(sorted(times_b)[int(RATE_B_PER_S) :], 2.0)
            print(
                f"\ningest {TOTAL / ingest_s:,.0f} msg/s ({TOTAL_B:,} singles + {TOTAL_A:,} in "
                f"batches) over {PROCESSES} processes; {TOTAL:,} sent in {deliver_s:.1f} s "
                f"({TOTAL / deliver_s:,.0f}/s), per process {sent_by}; app b at {rate:,.1f}/s "
                f"(limit {RATE_B_PER_S:,.0f}/s), busiest 2 s of b after the burst: {busiest}"
            )
            assert RATE_B_PER_S * 0.95 <= rate <= RATE_B_PER_S * 1.05, rate
            assert busiest <= RATE_B_PER_S * 2.0 * 1.05, busiest
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
