"""Eight gateway processes that all need a token at once fetch one per app, not one each: the
broker's cross-process lock (a lease in Redis) lets one fetch, and the others re-check the
shared cache and take that token.

App a's cached token has expired; app b has none. The messages arrive once every process is
ready, so all eight lease some of both apps within one idle poll and ask for both tokens at
once; the simulator answers every call 300 ms late, so the first fetch is still running when
the others arrive.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from support.e2e import APP_A, APP_B, TEMPLATE, free_port, sim_config
from support.gateway_process import ServeProcess
from support.multiproc import gateway_config, metric, scrape, start_all
from support.redis_server import RedisServer
from support.wait import wait_until
from wxgate.clock import SystemClock
from wxgate.models import Message, TokenEntry, new_id
from wxgate.sim.testing import running_simulator
from wxgate.store.redis import RedisStore

PROCESSES = 8
PER_APP = 400


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_eight_processes_starting_together_fetch_one_token_per_app(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    apps = (APP_A, APP_B)
    ports = [free_port() for _ in range(PROCESSES)]
    store = RedisStore(private_redis.url(), SystemClock(), retention_s=86_400)
    await store.open()
    async with running_simulator(sim_config(ports[0], apps, latency_ms=300.0)) as sim:
        procs = [
            ServeProcess(
                [
                    "--role",
                    "worker",
                    "--config",
                    str(
                        gateway_config(
                            tmp_path,
                            f"gw{i}",
                            port,
                            sim.base_url,
                            private_redis.url(),
                            apps,
                            workers={"concurrency": 16, "lease_batch": 8},
                            # Few per process at a time, so every process gets some of each.
                            app_overrides={"max_concurrency": 4},
                        )
                    ),
                ],
                port,
                tmp_path / f"gw{i}.log",
            )
            for i, port in enumerate(ports)
        ]
        try:
            now = time.time()
            await store.set_token(APP_A.appid, TokenEntry("expired-token", now - 60, now - 7260))
            await start_all(procs)
            assert sim.state.stats()["token_fetches"] == {}

            now = time.time()
            await store.enqueue(
                [
                    Message(
                        id=new_id(),
                        app=app.name,
                        touser=f"o_{app.name}_{i}",
                        template_id=TEMPLATE,
                        data={"thing1": {"value": "x"}},
                        created_at=now,
                        not_before=now,
                    )
                    for app in apps
                    for i in range(PER_APP)
                ]
            )
            total = PER_APP * len(apps)
            await wait_until(
                lambda: sim.state.delivered >= total,
                60,
                f"{total} deliveries",
                progress=lambda: sim.state.stats(),
            )

            texts = [await scrape(p.url) for p in procs]
            sent = {
                app.name: [metric(t, "wxgate_messages_sent_total", app=app.name) for t in texts]
                for app in apps
            }
            print(f"\nsends per process and app: {sent}")
            for app in apps:
                assert all(n > 0 for n in sent[app.name]), f"every process sent for {app.name}"
                assert sum(sent[app.name]) == PER_APP
            stats = sim.state.stats()
            assert stats["token_fetches"] == {APP_A.appid: 1, APP_B.appid: 1}, stats
            assert stats["errors"] == {}, stats
        finally:
            for p in procs:
                p.stop()
            await store.close()
