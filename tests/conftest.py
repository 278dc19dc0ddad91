"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.postgres_server import fresh_database, session_postgres_url
from support.redis_cluster import RedisCluster
from support.redis_sentinel import RedisSentinel
from support.redis_server import RedisServer, session_redis_url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the session: a spare DB of the local one, else a server of our own."""
    with session_redis_url() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL database for the session: on the local server when it answers, else
    on a private one; created for the session and dropped after it."""
    with session_postgres_url() as url:
        yield url


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[str]:
    """An empty database of this test's own on the session's server (a whole gateway uses the
    default schema), dropped after the test."""
    with fresh_database(postgres_url) as url:
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
