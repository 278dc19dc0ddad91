"""The multi-process tests share the end-to-end helpers (tests/e2e/e2e_support.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_E2E = str(Path(__file__).resolve().parent.parent / "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)

from redis_server import RedisServer  # noqa: E402


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own with AOF on (appendfsync always): nothing else shares
    its keys, and the test may kill and restart it."""
    with RedisServer(appendonly=True) as server:
        yield server
