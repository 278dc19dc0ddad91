"""The multi-process tests' own Redis: one per test, with AOF, that the test may kill."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.redis_server import RedisServer


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own with AOF on (appendfsync always): nothing else shares
    its keys, and the test may kill and restart it."""
    with RedisServer(appendonly=True) as server:
        yield server
