"""kill -9 between the status change and the webhook: no event is lost.

The gateway runs as a `python -m wxgate serve` subprocess. The receiver hangs, so when the
gateway is killed every message is final in the store while none of its events has been
taken: some POSTs are in flight (leased), the rest wait for a retry. After a restart, with
the receiver answering, every event arrives: the outbox row was committed with the status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from support.e2e import APP_A, gateway_process
from support.redis_server import RedisServer
from support.wait import wait_until
from support.webhooks import SECRET, Receiver
from wxgate.sandbox import free_port
from wxgate.sim.config import SimApp, SimConfig
from wxgate.sim.testing import running_simulator


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(hang=True)
    await r.start()
    yield r
    await r.close()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_kill_9_before_the_webhooks_went_out_loses_none(
    tmp_path: Path, receiver: Receiver, private_redis: RedisServer, backend: str
) -> None:
    # No receipts: each message ends in one final status the test can name (sent or dead).
    sim_cfg = SimConfig(apps=[SimApp(appid=APP_A.appid, secret=APP_A.secret)])
    async with running_simulator(sim_cfg) as sim:
        port = free_port()
        store: dict[str, object] = {}
        if backend == "redis":
            redis.Redis(port=private_redis.port).flushall()
            store = {"url": private_redis.url()}
        async with gateway_process(
            tmp_path,
            port,
            sim.base_url,
            app_overrides={"callback_url": f"{receiver.url}/hooks", "webhook_secret": SECRET},
            webhooks={
                "base_s": 0.05,
                "cap_s": 0.2,
                "poll_s": 0.02,
                "lease_s": 3.0,
                "timeout_s": 2.5,
                "connect_timeout_s": 1.0,
            },
            store=store,
        ) as (gw, api):
            expected = {(await api.send(f"o_user_{i}"), "sent") for i in range(20)}
            expected |= {(await api.send(f"o_invalid_{i}"), "dead") for i in range(10)}

            async def final_and_in_flight() -> bool:
                counts = await api.by_status()
                done = counts.get("sent", 0) == 20 and counts.get("dead", 0) == 10
                return done and len(receiver.deliveries) > 0

            await wait_until(final_and_in_flight, 20, "final statuses and POSTs in flight")
            assert receiver.accepted() == {}, "nothing was delivered before the crash"
            gw.kill9()

            receiver.hang = False
            receiver.released.set()
            gw.start()
            await gw.wait_ready()

            async def all_arrived() -> bool:
                got = set(receiver.final_events(once=False))
                return expected <= got and (await api.stats())["webhooks"]["pending"] == 0

            await wait_until(all_arrived, 30, "every event after the restart", progress=gw.log)
            events = receiver.final_events(once=False)  # one event id per (message, status)
            assert set(events) == expected
            assert all(d.signature_ok for d in receiver.deliveries)
            assert {d.body["status"] for d in events.values()} == {"sent", "dead"}
