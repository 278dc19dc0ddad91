"""On a real 3-master Redis Cluster each app's keys live on the master that owns its tag's
slot, so apps spread over the shards, and one store leases from all of them fairly."""

from __future__ import annotations

import uuid

import redis

from support.redis_cluster import RedisCluster
from support.store import LEASE_S, make_message
from wxgate.clock import FakeClock
from wxgate.store.redis import RedisStore


def _apps_on_distinct_masters(cluster: RedisCluster, prefix: str) -> dict[str, int]:
    """Three app names whose tags `{prefix:app}` three different masters own."""
    chosen: dict[str, int] = {}
    for i in range(200):
        app = f"app{i}"
        owner = cluster.slot_owner(f"{{{prefix}:{app}}}:counts")
        if owner not in chosen.values():
            chosen[app] = owner
        if len(chosen) == 3:
            return chosen
    raise AssertionError(f"200 names did not cover 3 masters: {chosen}")


async def test_apps_live_on_their_own_masters_and_lease_fairly(
    redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    prefix = f"wxsp{uuid.uuid4().hex[:8]}"
    owners = _apps_on_distinct_masters(redis_cluster, prefix)
    clock = FakeClock()
    store = RedisStore(redis_cluster_url, clock, retention_s=3600, key_prefix=prefix)
    await store.open()
    try:
        ids: dict[str, list[str]] = {}
        for app in owners:
            done = await store.enqueue([make_message(clock, app) for _ in range(10)])
            ids[app] = [r.id for r in done]
        for app, port in owners.items():
            node = redis.Redis(port=port, socket_timeout=5)
            try:  # the owner answers for the key itself: stored there, not redirected
                status = node.hget(f"{{{prefix}:{app}}}:msg:{ids[app][0]}", "status")
                assert status == b"queued", (app, port)
            finally:
                node.close()
        leased = await store.lease(15, LEASE_S, clock.now())
        per_app = {app: sum(m.app == app for m in leased) for app in owners}
        assert per_app == dict.fromkeys(owners, 5)  # equal shares across the shards
        rest = await store.lease(100, LEASE_S, clock.now())
        assert len(leased) + len(rest) == 30
        assert (await store.stats()).by_status["sending"] == 30
    finally:
        await store.close()
