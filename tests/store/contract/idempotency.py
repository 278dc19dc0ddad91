"""MessageQueue's idempotency contract: a key keeps its body fingerprint (Stripe's meaning).

The same key with the same fingerprint is the first message again; with another fingerprint
it is a conflict (EnqueueResult.conflict, the API's 409), answered with the first id and
storing nothing. A side without a fingerprint (a key taken before fingerprints existed) is
never a conflict.
"""

from __future__ import annotations

import asyncio

from support.store import make_message, must_get, send_and_ack
from wxgate.clock import FakeClock
from wxgate.models import Status
from wxgate.store.base import Store


class IdempotencyContract:
    async def test_same_key_same_fingerprint_is_the_first_message(
        self, store: Store, clock: FakeClock
    ) -> None:
        first = make_message(clock, idempotency_key="k1", idempotency_digest="d1")
        [r1] = await store.enqueue([first])
        again = make_message(clock, idempotency_key="k1", idempotency_digest="d1")
        [r2] = await store.enqueue([again])
        assert (r1.created, r1.conflict) == (True, False)
        assert (r2.id, r2.created, r2.conflict) == (first.id, False, False)
        assert await store.get(again.id) is None

    async def test_same_key_other_fingerprint_is_a_conflict(
        self, store: Store, clock: FakeClock
    ) -> None:
        first = make_message(clock, idempotency_key="k1", idempotency_digest="d1")
        await store.enqueue([first])
        other = make_message(clock, idempotency_key="k1", idempotency_digest="d2", touser="o_2")
        [r2] = await store.enqueue([other])
        assert (r2.id, r2.created, r2.conflict) == (first.id, False, True)
        assert await store.get(other.id) is None  # nothing stored for the refused one
        assert (await must_get(store, first.id)).touser == "o_user_1"
        stats = await store.stats()
        assert stats.by_status.get("queued", 0) == 1

    async def test_conflict_within_one_call(self, store: Store, clock: FakeClock) -> None:
        a = make_message(clock, idempotency_key="same", idempotency_digest="d1")
        b = make_message(clock, idempotency_key="same", idempotency_digest="d2")
        c = make_message(clock, idempotency_key="same", idempotency_digest="d1")
        res = await store.enqueue([a, b, c])
        assert [(r.id, r.created, r.conflict) for r in res] == [
            (a.id, True, False),
            (a.id, False, True),
            (a.id, False, False),
        ]

    async def test_fingerprint_is_kept_after_the_message_finished(
        self, store: Store, clock: FakeClock
    ) -> None:
        first = make_message(clock, idempotency_key="k-done", idempotency_digest="d1")
        await store.enqueue([first])
        await send_and_ack(store, clock, first.id, 777)
        [same] = await store.enqueue(
            [make_message(clock, idempotency_key="k-done", idempotency_digest="d1")]
        )
        [other] = await store.enqueue(
            [make_message(clock, idempotency_key="k-done", idempotency_digest="d9")]
        )
        assert (same.id, same.status, same.conflict) == (first.id, Status.SENT, False)
        assert (other.id, other.conflict) == (first.id, True)

    async def test_no_fingerprint_on_either_side_is_never_a_conflict(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.enqueue([make_message(clock, idempotency_key="old")])  # no fingerprint
        [r1] = await store.enqueue(
            [make_message(clock, idempotency_key="old", idempotency_digest="d1")]
        )
        await store.enqueue([make_message(clock, idempotency_key="new", idempotency_digest="d1")])
        [r2] = await store.enqueue([make_message(clock, idempotency_key="new")])
        assert (r1.created, r1.conflict) == (False, False)
        assert (r2.created, r2.conflict) == (False, False)

    async def test_concurrent_reuses_with_other_bodies_all_conflict_but_one(
        self, store: Store, clock: FakeClock
    ) -> None:
        msgs = [
            make_message(clock, idempotency_key="race", idempotency_digest=f"d{i}")
            for i in range(30)
        ]
        calls = await asyncio.gather(*(store.enqueue([m]) for m in msgs))
        results = [r for rs in calls for r in rs]
        [winner] = [r for r in results if r.created]
        assert all(r.conflict and r.id == winner.id for r in results if not r.created)
