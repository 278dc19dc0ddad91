"""The webhook tests use the end-to-end helpers (tests/e2e/e2e_support.py) and a Redis of their
own (so a gateway's default key prefix cannot meet another test's keys)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_E2E = str(Path(__file__).resolve().parent.parent / "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)

from redis_server import RedisServer  # noqa: E402


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server
