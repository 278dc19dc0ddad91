"""Daily quota claimed in chunks from the real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wxgate.clock import FakeClock
from wxgate.delivery.quota import QuotaClaims
from wxgate.store.sqlite import SQLiteStore

DAY = "2024-05-01"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "q.db"), FakeClock(), retention_s=3600)
    await s.open()
    yield s
    await s.close()


async def test_one_store_write_per_chunk(store: SQLiteStore) -> None:
    quota = QuotaClaims(store)
    assert all([await quota.take("a", DAY, 10_000) for _ in range(25)])
    assert quota.claims == 3  # chunks of 10 (0.1% of 10,000)
    assert await store.incr_quota("a", DAY, 0) == 30


async def test_concurrent_sends_get_exactly_the_limit(store: SQLiteStore) -> None:
    quota = QuotaClaims(store)
    results = await asyncio.gather(*(quota.take("a", DAY, 2500) for _ in range(3000)))
    assert sum(results) == 2500
    assert not await quota.take("a", DAY, 2500)


async def test_processes_share_the_limit_and_days_start_over(store: SQLiteStore) -> None:
    one, two = QuotaClaims(store), QuotaClaims(store)  # two processes on one store
    taken = [await q.take("a", DAY, 5) for _ in range(4) for q in (one, two)]
    assert sum(taken) == 5
    assert await one.take("a", "2024-05-02", 5)
    assert await one.take("b", DAY, 5)  # apps are counted apart


async def test_chunks_grow_while_claims_come_fast_but_stay_within_a_thousandth(
    store: SQLiteStore,
) -> None:
    quota = QuotaClaims(store)
    assert all([await quota.take("a", DAY, 10_000_000) for _ in range(5_000)])
    assert quota.claims == 6  # 100 + 200 + 400 + 800 + 1,600 + 3,200 >= 5,000
    assert await store.incr_quota("a", DAY, 0) == 6_300
    capped = QuotaClaims(store)
    assert all([await capped.take("b", DAY, 100_000) for _ in range(1_000)])
    assert capped.claims == 10  # never more than 0.1% of the quota at once
