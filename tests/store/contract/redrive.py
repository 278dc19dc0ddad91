"""MessageQueue.redrive's contract: only the app's dead letters with a listed errcode, dead
long enough, with rounds left, move back to queued (attempts reset, rounds counted), up to
the limit, oldest death first; every read shows the rounds."""

from __future__ import annotations

from support.store import lease_one, make_dead, must_get
from wxgate.clock import FakeClock
from wxgate.models import ErrorInfo, Status
from wxgate.store.base import Store


async def _die_again(store: Store, clock: FakeClock, msg_id: str, errcode: int) -> None:
    held = await lease_one(store, clock, msg_id)
    assert await store.dead(msg_id, held.lease_token, ErrorInfo(errcode, "again"))


class RedriveContract:
    """store/base.py's redrive rules."""

    async def test_moves_only_what_the_policy_names(self, store: Store, clock: FakeClock) -> None:
        busy = await make_dead(store, clock, "app_a", -1, 2)
        permanent = await make_dead(store, clock, "app_a", 40003, 1)
        other_app = await make_dead(store, clock, "app_b", -1, 1)
        clock.advance(100)
        moved = await store.redrive("app_a", [-1, 45009], clock.now() - 50, 3, 100)
        assert moved == 2
        for msg_id in busy:
            m = await must_get(store, msg_id)
            assert (m.status, m.attempts, m.redrive_rounds) == (Status.QUEUED, 0, 1)
            assert m.last_errcode == -1  # why it died stays, as with requeue
        for msg_id in permanent + other_app:
            m = await must_get(store, msg_id)
            assert (m.status, m.redrive_rounds) == (Status.DEAD, 0)
        stats = await store.stats()
        assert stats.by_app["app_a"].get("queued") == 2 and stats.by_app["app_a"]["dead"] == 1

    async def test_waits_for_every_s_and_stops_after_the_rounds(
        self, store: Store, clock: FakeClock
    ) -> None:
        [msg_id] = await make_dead(store, clock, "app_a", 45009, 1)
        assert await store.redrive("app_a", [45009], clock.now() - 60, 2, 10) == 0  # too fresh
        for round_ in (1, 2):
            clock.advance(61)
            assert await store.redrive("app_a", [45009], clock.now() - 60, 2, 10) == 1
            assert (await must_get(store, msg_id)).redrive_rounds == round_
            await _die_again(store, clock, msg_id, 45009)
        clock.advance(61)
        assert await store.redrive("app_a", [45009], clock.now() - 60, 2, 10) == 0
        m = await must_get(store, msg_id)
        assert (m.status, m.redrive_rounds) == (Status.DEAD, 2)
        page, _ = await store.dead_letters(app="app_a")
        assert [(d.id, d.redrive_rounds) for d in page] == [(msg_id, 2)]

    async def test_limit_takes_the_oldest_deaths_first(
        self, store: Store, clock: FakeClock
    ) -> None:
        ids = await make_dead(store, clock, "app_a", -1, 5)  # one second apart
        clock.advance(10)
        assert await store.redrive("app_a", [-1], clock.now(), 1, 2) == 2
        statuses = [(await must_get(store, i)).status for i in ids]
        assert statuses == [Status.QUEUED] * 2 + [Status.DEAD] * 3
        assert await store.redrive("app_a", [-1], clock.now(), 1, 100) == 3

    async def test_nothing_listed_moves_nothing(self, store: Store, clock: FakeClock) -> None:
        await make_dead(store, clock, "app_a", -1, 1)
        clock.advance(10)
        assert await store.redrive("app_a", [], clock.now(), 3, 10) == 0
        assert await store.redrive("app_a", [-1], clock.now(), 0, 10) == 0
