"""Store test fixtures: `backend` runs the contract suite (contract/) once per backend."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from wxgate.clock import FakeClock
from wxgate.store.base import Store


def _sqlite(request: pytest.FixtureRequest, clock: FakeClock) -> Store:
    from wxgate.store.sqlite import SQLiteStore

    return SQLiteStore(request.getfixturevalue("db_path"), clock, retention_s=3600)


def _redis(request: pytest.FixtureRequest, clock: FakeClock) -> Store:
    from wxgate.store.redis import RedisStore

    # A key prefix of its own: tests share the session's Redis database.
    prefix = f"wxt{uuid.uuid4().hex[:10]}"
    store: Store = RedisStore(
        request.getfixturevalue("redis_url"), clock, retention_s=3600, key_prefix=prefix
    )
    return store


def _postgres(request: pytest.FixtureRequest, clock: FakeClock) -> Store:
    from wxgate.store.postgres import PostgresStore

    # A schema of its own: tests share the session's database.
    schema = f"wxt{uuid.uuid4().hex[:10]}"
    return PostgresStore(
        request.getfixturevalue("postgres_url"),
        clock,
        retention_s=3600,
        schema=schema,
        pool_size=4,
    )


def _redis_cluster(request: pytest.FixtureRequest, clock: FakeClock) -> Store:
    from wxgate.store.redis import RedisStore

    # The store tags every key {prefix}: one slot of the session's 3-master cluster per test.
    prefix = f"wxt{uuid.uuid4().hex[:10]}"
    store: Store = RedisStore(
        request.getfixturevalue("redis_cluster_url"), clock, retention_s=3600, key_prefix=prefix
    )
    return store


def _redis_sentinel(request: pytest.FixtureRequest, clock: FakeClock) -> Store:
    from wxgate.store.redis import RedisStore

    # The primary as one Sentinel names it (discovery, ROLE check, Sentinel's pool).
    prefix = f"wxt{uuid.uuid4().hex[:10]}"
    store: Store = RedisStore(
        request.getfixturevalue("redis_sentinel_url"), clock, retention_s=3600, key_prefix=prefix
    )
    return store


# Backend name -> a store on the test's clock, not opened yet. A new backend adds one entry.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, FakeClock], Store]] = {
    "sqlite": _sqlite,
    "redis": _redis,
    "postgres": _postgres,
    "redis-cluster": _redis_cluster,
    "redis-sentinel": _redis_sentinel,
}


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """A fresh SQLite file path (a real file: in-memory databases are refused)."""
    return str(tmp_path / "wxgate.db")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    """The backend a contract test runs on (one run per entry of BACKENDS)."""
    name: str = request.param
    return name


@pytest.fixture
async def store(
    backend: str, clock: FakeClock, request: pytest.FixtureRequest
) -> AsyncIterator[Store]:
    """An open store of `backend`, closed after the test (close() is idempotent)."""
    s = BACKENDS[backend](request, clock)
    await s.open()
    yield s
    await s.close()
