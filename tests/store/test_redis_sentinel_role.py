"""The Sentinel client checks the node's ROLE on every new connection: a node Sentinel still
names as the primary but that has become a replica (Sentinel's answer is a moment old after a
failover) gets no connection of ours, so never a write. Real servers and a real Sentinel."""

from __future__ import annotations

import contextlib

import pytest
import redis

from support.redis_sentinel import RedisSentinel
from support.redis_server import RedisServer
from wxgate.clock import FakeClock
from wxgate.errors import StoreUnavailable
from wxgate.store.redis import RedisStore


async def test_a_node_named_primary_but_now_a_replica_is_refused() -> None:
    with RedisServer() as primary, RedisServer() as other, RedisSentinel(primary.port) as sentinel:
        store = RedisStore(sentinel.url(), FakeClock(), retention_s=3600, key_prefix="wxrole")
        await store.open()  # the primary answers ROLE master
        await store.ping()
        await store.close()
        with contextlib.closing(redis.Redis(port=primary.port, socket_timeout=5)) as admin:
            admin.replicaof("127.0.0.1", other.port)  # demoted behind Sentinel's back
        assert sentinel.primary() == primary.port  # Sentinel has not noticed yet
        again = RedisStore(sentinel.url(), FakeClock(), retention_s=3600, key_prefix="wxrole")
        with pytest.raises(StoreUnavailable, match=r"is not the primary \(ROLE\)"):
            await again.open()  # PING alone would have passed on the replica
