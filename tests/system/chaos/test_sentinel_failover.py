"""Sentinel failover under load, on real servers: a primary, two replicas and one Sentinel on
free loopback ports; the in-process gateway on `redis+sentinel://` with min_replica_acks = 1
while messages are posted at a steady rate with idempotency keys. The primary is killed -9,
Sentinel promotes a replica and points the other at it (so min_replica_acks = 1 can be met
again without waiting for the dead node), and the gateway follows without a restart; the old
primary is started again, with its stale data and its old role until Sentinel reconfigures
it (which may take Sentinel tens of seconds on a loaded machine: not waited for).

Every message answered 202 reaches WeChat exactly once (0 lost, 0 twice), and the old
primary, once back, never received a write from the gateway (no client of ours on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
import redis

from support.e2e import APP_A, running_rig, send_through_crashes
from support.multiproc import repeats, sim_sends
from support.redis_sentinel import RedisSentinel
from support.redis_server import RedisServer
from support.wait import wait_until

pytestmark = pytest.mark.slow

KEYS = 240


def _admin(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, socket_timeout=2, decode_responses=True)


def _replicas_online(primary: RedisServer) -> int:
    with contextlib.closing(_admin(primary)) as c:
        info = c.info("replication")
        if info.get("role") != "master":
            return 0
        return sum(
            1
            for k, v in info.items()
            if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
        )


def _our_clients(server: RedisServer) -> list[str]:
    """Client connections on `server` that are not replication or Sentinel links."""
    with contextlib.closing(_admin(server)) as c:
        return [
            str(cl.get("addr"))
            for cl in c.client_list()
            if "S" not in str(cl.get("flags", ""))
            and "M" not in str(cl.get("flags", ""))
            and cl.get("name") != "sentinel"
            and not str(cl.get("name", "")).startswith("sentinel")
            and cl.get("cmd") not in ("client|list", "client")
        ]


async def test_failover_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    with (
        RedisServer(appendonly=True) as first,
        RedisServer(appendonly=True) as second,
        RedisServer(appendonly=True) as third,
    ):
        for replica in (second, third):
            with contextlib.closing(_admin(replica)) as c:
                c.replicaof("127.0.0.1", first.port)
        await wait_until(lambda: _replicas_online(first) == 2, 30, "both replicas in sync")
        with RedisSentinel(first.port) as sentinel:
            sentinel.wait(lambda: sentinel.replicas_known() == 2, "Sentinel to see the replicas")
            store = {
                "url": sentinel.url(),
                "min_replica_acks": 1,
                "replica_ack_timeout_ms": 500,
            }
            workers = {"concurrency": 32, "lease_batch": 32}
            async with running_rig(tmp_path, store=store, workers=workers) as rig:
                accepted: dict[str, str] = {}
                keys = [f"fo{i}" for i in range(KEYS)]
                senders = asyncio.create_task(
                    send_through_crashes(
                        rig.runtime.url, keys, accepted, concurrency=4, pause_s=0.02, give_up_s=150
                    )
                )
                try:
                    await wait_until(lambda: len(accepted) >= KEYS // 4, 60, "a quarter accepted")
                    first.kill()
                    killed_at = time.monotonic()
                    await wait_until(
                        lambda: sentinel.primary() in (second.port, third.port),
                        90,
                        "Sentinel to promote a replica",
                        progress=lambda: sentinel.log()[-1500:],
                    )
                    promoted_s = time.monotonic() - killed_at
                    first.start()  # back with its old data, a primary until Sentinel says not
                    assert _our_clients(first) == [], "the gateway never talks to the old primary"
                    await asyncio.wait_for(senders, 150)
                finally:
                    if not senders.done():
                        senders.cancel()
                    await asyncio.gather(senders, return_exceptions=True)

                assert len(accepted) == KEYS
                await wait_until(
                    lambda: rig.sim.state.delivered >= KEYS,
                    90,
                    f"all {KEYS} delivered",
                    progress=lambda: rig.sim.state.stats(),
                )
                ids, _ = await sim_sends(rig.sim, APP_A.appid)
                assert set(ids) == set(accepted.values()), "every 202 reached WeChat"
                assert repeats(ids) == [], "none reached WeChat twice"

                async def all_acked() -> bool:
                    counts = await rig.api.by_status()
                    return counts.get("sent", 0) + counts.get("delivered", 0) == KEYS

                await wait_until(all_acked, 60, "every send acked", progress=rig.api.by_status)
                assert _our_clients(first) == [], "still nothing of ours on the old primary"
                print(f"\nSentinel promoted the replica {promoted_s:.1f} s after kill -9")
