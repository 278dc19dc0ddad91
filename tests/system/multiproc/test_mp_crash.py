"""Crashes in a deployment of several processes on one Redis lose nothing:

- kill -9 of one of two worker processes mid-run: the other reclaims its leases once they
  expire (lease_s is short here) and delivers them; WeChat's client_msg_id dedupe drops the
  re-sends of ones the dead process had already handed over.
- kill -9 of Redis itself (AOF, appendfsync always) mid-run: the API answers 503 while it is
  down, recovers by itself when it is back, and everything accepted is delivered once.
- a Redis at its maxmemory: 503 (retry later), not 500, until it has room again.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis

from support.e2e import APP_A, TEMPLATE, Api, build_settings, free_port, sim_config
from support.gateway_process import ServeProcess, http_status
from support.multiproc import (
    gateway_config,
    metric,
    repeats,
    scrape,
    send_keys,
    sim_sends,
    start_all,
)
from support.redis_server import RedisServer
from support.wait import wait_until
from wxgate.runtime import Runtime
from wxgate.sim.testing import running_simulator

# Short timeouts and leases: a dead process's leases come back within LEASE_S.
WECHAT = {"connect_timeout_s": 1.0, "read_timeout_s": 1.0, "total_timeout_s": 1.0}
LEASE_S = 3.5  # just above the send budget: 2 x total_timeout_s + 1 s rate look-ahead


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_kill_9_of_one_worker_its_leases_are_reclaimed_by_the_other(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    batches, batch_size = 4, 1_000
    total = batches * batch_size
    api_port, *worker_ports = (free_port() for _ in range(3))
    # 200 ms per send: the worker we kill always has sends in flight.
    async with running_simulator(sim_config(api_port, latency_ms=200.0)) as sim:

        def proc(name: str, port: int, role: str) -> ServeProcess:
            config = gateway_config(
                tmp_path,
                name,
                port,
                sim.base_url,
                private_redis.url(),
                wechat=WECHAT,
                workers={"concurrency": 128, "lease_batch": 128, "lease_s": LEASE_S},
                app_overrides={"max_concurrency": 256},
            )
            return ServeProcess(
                ["--config", str(config), "--role", role], port, tmp_path / f"{name}.log"
            )

        api_proc = proc("api", api_port, "api")
        workers = [proc(f"worker{i}", port, "worker") for i, port in enumerate(worker_ports)]
        api = Api(api_proc.url)
        try:
            await start_all([api_proc, *workers])
            # A worker serves probes and metrics only; the API process sends nothing.
            w = workers[0].url
            assert await http_status(f"{w}/healthz") == 200
            assert await http_status(f"{w}/readyz") == 200
            assert await http_status(f"{w}/v1/stats") == 404
            await api.send_batches(batches, batch_size, prefix="o_")
            await wait_until(lambda: sim.state.delivered >= total // 4, 60, "a quarter sent")

            victim = workers[1]
            in_flight = metric(await scrape(victim.url), "wxgate_sends_in_flight")
            victim.kill9()
            killed_at = time.monotonic()
            assert in_flight > 0, "the killed worker had sends in flight"
            sent_before = sim.state.delivered
            assert sent_before < total, "the kill came while work was left"

            await wait_until(
                lambda: sim.state.delivered >= total,
                60,
                f"all {total} delivered by the surviving worker",
                progress=lambda: sim.state.stats(),
            )
            took = time.monotonic() - killed_at
            rows = await sim.deliveries(app=APP_A.appid)
            assert sorted(str(r["openid"]) for r in rows) == sorted(
                f"o_{b}_{i}" for b in range(batches) for i in range(batch_size)
            ), "every recipient got the message once"
            assert repeats([str(r["client_msg_id"]) for r in rows]) == []
            assert await sim.duplicates() == []

            async def settled() -> bool:
                counts = await api.by_status()
                return counts.get("sent", 0) + counts.get("delivered", 0) == total

            await wait_until(settled, 20, "every message sent in /v1/stats", progress=api.by_status)
            assert (await api.by_status()).get("sending", 0) == 0
            api_sent = metric(await scrape(api_proc.url), "wxgate_messages_sent_total")
            assert api_sent == 0, "an api-only process delivers nothing"
            print(
                f"\nkilled a worker with {in_flight:.0f} sends in flight at {sent_before}/{total}; "
                f"the other finished {total - sent_before} in {took:.1f} s; "
                f"WeChat dropped {sim.state.deduplicated} re-sends"
            )
        finally:
            await api.close()
            for p in (api_proc, *workers):
                p.stop()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_redis_killed_and_restarted_mid_run_loses_nothing(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    keys_per_process = 1_500
    ports = [free_port() for _ in range(2)]
    async with running_simulator(sim_config(ports[0], latency_ms=20.0)) as sim:
        procs = [
            ServeProcess(
                [
                    "--config",
                    str(
                        gateway_config(
                            tmp_path,
                            f"runtime{i}",
                            port,
                            sim.base_url,
                            private_redis.url(),
                            wechat=WECHAT,
                            workers={"lease_s": LEASE_S},
                        )
                    ),
                ],
                port,
                tmp_path / f"runtime{i}.log",
            )
            for i, port in enumerate(ports)
        ]
        apis = [Api(p.url) for p in procs]
        accepted: dict[str, str] = {}
        refusals: list[int] = []
        try:
            await start_all(procs)
            senders = asyncio.gather(
                *(
                    send_keys(
                        p.url,
                        [f"k{n}_{i}" for i in range(keys_per_process)],
                        accepted,
                        refusals,
                        concurrency=4,
                    )
                    for n, p in enumerate(procs)
                )
            )
            try:
                await wait_until(lambda: len(accepted) >= 600, 30, "600 accepted")
                private_redis.kill()
                down_at = time.monotonic()
                # While Redis is down: 503 from every process, not ready, nothing accepted.
                for api in apis:
                    status, body = await api.post(
                        "/v1/messages",
                        {"touser": "o_down", "template_id": TEMPLATE, "data": {"thing1": "x"}},
                    )
                    assert status == 503, (status, body)
                    assert await http_status(f"{api.base_url}/readyz") == 503
                await asyncio.sleep(2.0)
                during = len(accepted)
                await asyncio.sleep(0.5)
                assert len(accepted) == during, "nothing is accepted while the store is down"
                private_redis.start()
                outage_s = time.monotonic() - down_at
                await asyncio.wait_for(senders, 90)
            finally:
                if not senders.done():
                    senders.cancel()
                await asyncio.gather(senders, return_exceptions=True)

            total = 2 * keys_per_process
            assert len(accepted) == total
            await wait_until(
                lambda: sim.state.delivered >= total,
                60,
                f"all {total} delivered after the restart",
                progress=lambda: sim.state.stats(),
            )
            ids, _ = await sim_sends(sim, APP_A.appid)
            assert set(ids) == set(accepted.values()), "every accepted message reached WeChat"
            assert repeats(ids) == [], "none reached WeChat twice"
            assert await sim.duplicates() == []
            for api in apis:  # both processes recovered by themselves, and agree
                assert await http_status(f"{api.base_url}/readyz") == 200

                async def all_acked(api: Api = api) -> bool:
                    # The simulator counts a send before its answer reaches the gateway: the
                    # last acks may still be on their way.
                    counts = await api.by_status()
                    return counts.get("sent", 0) + counts.get("delivered", 0) == total

                await wait_until(all_acked, 20, "every send acked", progress=api.by_status)
                assert (await api.by_status()).get("sending", 0) == 0
            print(
                f"\nRedis down {outage_s:.1f} s: {sum(1 for s in refusals if s == 503)} POSTs "
                f"got 503, {refusals.count(0)} no answer; {total} accepted, all delivered once"
            )
            assert set(refusals) <= {503, 0}, sorted(set(refusals))
            assert 503 in refusals
        finally:
            for api in apis:
                await api.close()
            for p in procs:
                p.stop()


async def test_a_full_redis_answers_503_until_it_has_room_again(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    settings = build_settings(
        tmp_path, free_port(), "http://127.0.0.1:9", store={"url": private_redis.url()}
    )
    admin = redis.Redis(port=private_redis.port)
    body = {"touser": "o_full", "template_id": TEMPLATE, "data": {"keyword1": "x" * 2000}}
    async with Runtime(settings, role="api") as runtime:
        api = Api(runtime.url)
        try:
            used = int(admin.info("memory")["used_memory"])
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", str(used + 200_000))
            statuses = [(await api.post("/v1/messages", body))[0] for _ in range(300)]
            assert statuses[0] == 202 and statuses[-1] == 503, statuses
            assert set(statuses) == {202, 503}, set(statuses)
            admin.config_set("maxmemory", "0")
            assert (await api.post("/v1/messages", body))[0] == 202
        finally:
            await api.close()
            admin.close()
