"""Whole-gateway tests. `private_redis`: a redis-server per module (so a gateway's default key
prefix cannot meet another test's keys); tests/system/multiproc overrides it per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.redis_server import RedisServer


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server
