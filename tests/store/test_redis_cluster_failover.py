"""Redis Cluster failover, on a real 3-master cluster with a replica per master: the master
serving the store's slot is killed -9, its replica is promoted by the cluster, and the same
store (no restart) finds the new owner of the slot, keeps what had replicated and takes new
writes. While no node serves the slot the store answers StoreUnavailable, never StoreError."""

from __future__ import annotations

import uuid

import pytest

from support.redis_cluster import RedisCluster
from support.store import make_message
from support.wait import wait_until
from wxgate.clock import FakeClock
from wxgate.errors import StoreUnavailable
from wxgate.store.redis import RedisStore

pytestmark = pytest.mark.slow


async def test_the_store_follows_a_cluster_failover() -> None:
    prefix = f"wxfo{uuid.uuid4().hex[:8]}"
    clock = FakeClock()
    with RedisCluster(replicas=1) as cluster:
        store = RedisStore(cluster.url(), clock, retention_s=3600, key_prefix=prefix)
        await store.open()
        try:
            before = [r.id for r in await store.enqueue([make_message(clock) for _ in range(20)])]
            owner = cluster.slot_owner(f"{{{prefix}:app_a}}:counts")
            cluster.wait_replicated(owner)
            cluster.kill(owner)

            async def written() -> bool:
                try:
                    await store.enqueue((make_message(clock),))
                except StoreUnavailable:
                    return False  # the slot has no live owner yet: 503, not 500
                return True

            await wait_until(written, 60, "a write after the replica's promotion")
            assert cluster.slot_owner(f"{{{prefix}:app_a}}:counts") != owner
            await store.ping()
            for msg_id in before:
                found = await store.get(msg_id)
                assert found is not None, f"{msg_id} was replicated before the kill"
            stats = await store.stats()
            assert stats.by_status.get("queued") == 21
        finally:
            await store.close()
