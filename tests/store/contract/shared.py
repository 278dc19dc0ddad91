"""SharedState's contract: token cache, locks, callback nonces, pauses, quota and rate buckets."""

from __future__ import annotations

import asyncio

import pytest

from wxgate.clock import FakeClock
from wxgate.models import (
    AppPause,
    TokenEntry,
)
from wxgate.store.base import Store


class SharedContract:
    """store/base.py's SharedState rules."""

    # ------------------------------------------------------------------ tokens

    async def test_token_cache_compare_and_delete(self, store: Store, clock: FakeClock) -> None:
        assert await store.get_token("app_a") is None
        entry = TokenEntry("tok-1", clock.now() + 7200, clock.now())
        await store.set_token("app_a", entry)
        assert await store.get_token("app_a") == entry
        assert await store.get_token("app_b") is None
        assert not await store.invalidate_token("app_a", "tok-0")  # someone else's stale token
        assert await store.get_token("app_a") == entry
        newer = TokenEntry("tok-2", clock.now() + 7200, clock.now())
        await store.set_token("app_a", newer)
        assert await store.get_token("app_a") == newer
        assert await store.invalidate_token("app_a", "tok-2")
        assert await store.get_token("app_a") is None
        assert not await store.invalidate_token("app_a", "tok-2")

    # ------------------------------------------------------------------ locks

    async def test_lock_ownership_and_expiry(self, store: Store, clock: FakeClock) -> None:
        assert await store.acquire_lock("refresh:app_a", "p1", 10)
        assert not await store.acquire_lock("refresh:app_a", "p2", 10)
        assert await store.acquire_lock("refresh:app_b", "p2", 10)  # another name
        await store.release_lock("refresh:app_a", "p2")  # not the owner: no effect
        assert not await store.acquire_lock("refresh:app_a", "p2", 10)
        await store.release_lock("refresh:app_a", "p1")
        assert await store.acquire_lock("refresh:app_a", "p2", 10)
        clock.advance(11)  # p2's lock expired: anyone may take it
        assert await store.acquire_lock("refresh:app_a", "p3", 10)
        assert not await store.acquire_lock("refresh:app_a", "p2", 10)

    # ------------------------------------------------------------------ callback nonces

    async def test_remember_nonce(self, store: Store, clock: FakeClock) -> None:
        now = clock.now()
        assert await store.remember_nonce("app_a", "1700000000:n1", "d1", 600, now)
        # The same push again (WeChat's retry): still fine, for any process.
        assert await store.remember_nonce("app_a", "1700000000:n1", "d1", 600, now + 1)
        # The nonce with another body: a captured URL replayed with a forged body.
        assert not await store.remember_nonce("app_a", "1700000000:n1", "d2", 600, now + 2)
        assert await store.remember_nonce("app_b", "1700000000:n1", "d2", 600, now + 2)
        assert await store.remember_nonce("app_a", "1700000000:n2", "d2", 600, now + 2)
        # Forgotten once its time is up (the timestamp window refuses it by then anyway).
        assert await store.remember_nonce("app_a", "1700000000:n1", "d3", 600, now + 601)
        assert not await store.remember_nonce("app_a", "1700000000:n1", "d1", 600, now + 602)

    # ------------------------------------------------------------------ pauses

    async def test_pauses_expire(self, store: Store, clock: FakeClock) -> None:
        assert await store.get_pauses() == []
        pause_a = AppPause("app_a", clock.now() + 60, "45009 quota", 45009)
        pause_b = AppPause("app_b", clock.now() + 600, "config", None)
        await store.set_pause(pause_a)
        await store.set_pause(pause_b)
        assert sorted(await store.get_pauses(), key=lambda p: p.app) == [pause_a, pause_b]
        longer = AppPause("app_a", clock.now() + 120, "45009 again", 45009)
        await store.set_pause(longer)  # replaces
        assert sorted(await store.get_pauses(), key=lambda p: p.app) == [longer, pause_b]
        clock.advance(121)
        assert await store.get_pauses() == [pause_b]
        await store.clear_pause("app_b")
        assert await store.get_pauses() == []
        await store.clear_pause("app_b")  # clearing nothing is fine

    async def test_hand_made_pause_is_not_replaced_by_an_automatic_one(
        self, store: Store, clock: FakeClock
    ) -> None:
        mine = AppPause("app_a", clock.now() + 3600, "maintenance", None, by="ops-key")
        await store.set_pause(mine)
        assert await store.get_pauses() == [mine]  # `by` round-trips
        await store.set_pause(AppPause("app_a", clock.now() + 60, "config 48001", 48001))
        await store.set_pause(AppPause("app_a", clock.now() + 9e4, "daily quota", 45009))
        assert await store.get_pauses() == [mine]  # neither a shorter nor a longer one wins
        other = AppPause("app_a", clock.now() + 600, "new reason", None, by="lead-key")
        await store.set_pause(other)  # a person may replace a person's pause
        assert await store.get_pauses() == [other]
        clock.advance(601)
        auto = AppPause("app_a", clock.now() + 60, "config 48001", 48001)
        await store.set_pause(auto)  # once the hand-made one ran out, automatic ones apply
        assert await store.get_pauses() == [auto]
        await store.set_pause(mine := AppPause("app_a", clock.now() + 60, "hold", None, by="k"))
        await store.clear_pause("app_a")  # a resume ends a hand-made pause too
        assert await store.get_pauses() == []
        await store.set_pause(AppPause("app_a", clock.now() + 60, "config 48001", 48001))
        assert [p.by for p in await store.get_pauses()] == [None]
        assert mine.by == "k"

    # ------------------------------------------------------------------ quota and rate

    async def test_quota_counters(self, store: Store) -> None:
        assert await store.incr_quota("app_a", "2024-01-01") == 1
        assert await store.incr_quota("app_a", "2024-01-01", 5) == 6
        assert await store.incr_quota("app_a", "2024-01-02") == 1
        assert await store.incr_quota("app_b", "2024-01-01", 2) == 2
        assert await store.incr_quota("app_a", "2024-01-01", 0) == 6

    async def test_take_rate_waits(self, store: Store, clock: FakeClock) -> None:
        t = clock.now()
        for _ in range(10):  # the burst is free
            assert await store.take_rate("app_a", 5.0, 10.0, 1, t) == 0
        assert await store.take_rate("app_a", 5.0, 10.0, 1, t) == pytest.approx(0.2)
        assert await store.take_rate("app_a", 5.0, 10.0, 1, t) == pytest.approx(0.4)
        assert await store.take_rate("app_b", 5.0, 10.0, 10, t) == 0  # separate bucket
        # After 1 s: 5 tokens refilled, 2 owed -> 3 available.
        assert await store.take_rate("app_a", 5.0, 10.0, 3, t + 1.0) == 0
        assert await store.take_rate("app_a", 5.0, 10.0, 1, t + 1.0) == pytest.approx(0.2)
        # Refill stops at the burst.
        assert await store.take_rate("app_a", 5.0, 10.0, 10, t + 100) == 0
        assert await store.take_rate("app_a", 5.0, 10.0, 1, t + 100) == pytest.approx(0.2)

    async def test_concurrent_rate_takes_are_served_in_order(
        self, store: Store, clock: FakeClock
    ) -> None:
        """Takes made together (a backend may send them in one round trip) queue up in the
        order they were made, across apps, as if made one by one."""
        t = clock.now()
        waits = await asyncio.gather(
            *(store.take_rate("app_a", 5.0, 3.0, 1, t) for _ in range(6)),
            store.take_rate("app_b", 5.0, 3.0, 2, t),
            store.take_rate("app_a", 5.0, 3.0, 1, t),
        )
        assert waits[:3] == [0, 0, 0]  # the burst
        assert waits[3:6] == [pytest.approx(0.2), pytest.approx(0.4), pytest.approx(0.6)]
        assert waits[6] == 0  # app_b's own bucket
        assert waits[7] == pytest.approx(0.8)

    async def test_concurrent_rate_takes_refill_as_one_by_one(
        self, store: Store, clock: FakeClock
    ) -> None:
        """A group of takes on buckets that already exist, at times that move on inside the
        group (and once back), ends where the same takes made one by one end."""
        t = clock.now()
        assert await store.take_rate("app_a", 5.0, 3.0, 3, t) == 0  # bucket empty at t
        assert await store.take_rate("app_b", 5.0, 3.0, 1, t) == 0
        waits = await asyncio.gather(
            store.take_rate("app_a", 5.0, 3.0, 1, t + 0.4),  # 2 refilled -> 1 left
            store.take_rate("app_b", 5.0, 3.0, 3, t + 0.1),  # 2 + 0.5 - 3 = -0.5 owed
            store.take_rate("app_a", 5.0, 3.0, 2, t + 0.2),  # time never moves back: -1
            store.take_rate("app_a", 5.0, 3.0, 1, t + 1.0),  # -1 + 3 = 2 -> 1 left
            store.take_rate("app_a", 5.0, 3.0, 2, t + 1.0),  # -> -1 owed
        )
        assert waits == [
            0,
            pytest.approx(0.1),
            pytest.approx(0.2),
            0,
            pytest.approx(0.2),
        ]
        # The buckets were written back: the next take sees what the group left.
        assert await store.take_rate("app_a", 5.0, 3.0, 1, t + 1.0) == pytest.approx(0.4)
        assert await store.take_rate("app_b", 5.0, 3.0, 1, t + 0.1) == pytest.approx(0.3)
