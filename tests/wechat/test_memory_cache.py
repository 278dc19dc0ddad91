"""MemoryTokenCache: compare-and-invalidate and TTL locks."""

from __future__ import annotations

from wxgate.clock import FakeClock
from wxgate.models import TokenEntry
from wxgate.wechat.tokens import MemoryTokenCache


async def test_compare_and_invalidate() -> None:
    cache = MemoryTokenCache(FakeClock())
    new = TokenEntry(access_token="NEW", expires_at=10.0, fetched_at=0.0)
    await cache.set_token("wx1", new)
    assert not await cache.invalidate_token("wx1", "OLD")  # a late report about an old token
    assert await cache.get_token("wx1") == new
    assert await cache.invalidate_token("wx1", "NEW")
    assert await cache.get_token("wx1") is None
    assert not await cache.invalidate_token("wx1", "NEW")


async def test_lock_is_exclusive_until_released_or_expired() -> None:
    clock = FakeClock()
    cache = MemoryTokenCache(clock)
    assert await cache.acquire_lock("token:wx1", "a", ttl_s=5)
    assert not await cache.acquire_lock("token:wx1", "b", ttl_s=5)
    assert await cache.acquire_lock("token:wx2", "b", ttl_s=5)
    await cache.release_lock("token:wx1", "b")  # not the owner: no effect
    assert not await cache.acquire_lock("token:wx1", "b", ttl_s=5)
    clock.advance(5)
    assert await cache.acquire_lock("token:wx1", "b", ttl_s=5)  # a's lock expired
    await cache.release_lock("token:wx1", "b")
    assert await cache.acquire_lock("token:wx1", "a", ttl_s=5)
    assert "locks=2" in repr(cache)
