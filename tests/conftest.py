"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.redis_cluster import RedisCluster
from support.redis_sentinel import RedisSentinel
from support.redis_server import RedisServer, session_redis_url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the session: a spare DB of the local one, else a server of our own."""
    with session_redis_url() as url:
        yield url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster on free loopback ports, for the session."""
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    return redis_cluster.url()


@pytest.fixture(scope="session")
def redis_sentinel_url() -> Iterator[str]:
    """A primary of our own watched by one real Sentinel: `redis+sentinel://` for the session."""
    with RedisServer() as primary, RedisSentinel(primary.port) as sentinel:
        yield sentinel.url()
