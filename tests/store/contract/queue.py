"""MessageQueue's contract, part one: enqueue, lease, stats, dead letters and requeue."""

from __future__ import annotations

import asyncio
import math

import pytest

from support.store import (
    LEASE_S,
    enqueue_one,
    lease_one,
    make_dead,
    make_message,
    must_get,
)
from wxgate.clock import FakeClock
from wxgate.errors import StoreError
from wxgate.models import (
    ErrorInfo,
    MessageKind,
    MiniProgram,
    SendResult,
    Status,
)
from wxgate.store.base import Store


class QueueContract:
    """store/base.py's MessageQueue rules for accepting, leasing and listing messages."""

    # ------------------------------------------------------------------ enqueue

    async def test_enqueue_round_trips_every_field(self, store: Store, clock: FakeClock) -> None:
        msg = make_message(
            clock,
            kind=MessageKind.SUBSCRIBE,
            url="https://example.com/o/1",
            miniprogram=MiniProgram(appid="wx_mini", pagepath="pages/index"),
            page="pages/order?id=1",
            miniprogram_state="formal",
            lang="zh_CN",
            idempotency_key="order-1",
            callback_url="https://caller.example/hook",
            priority="high",
            expire_at=clock.now() + 3600,
        )
        [res] = await store.enqueue([msg])
        assert (res.id, res.status, res.created) == (msg.id, Status.QUEUED, True)
        got = await must_get(store, msg.id)
        for field in (
            "id",
            "app",
            "kind",
            "touser",
            "template_id",
            "data",
            "url",
            "miniprogram",
            "page",
            "miniprogram_state",
            "lang",
            "idempotency_key",
            "callback_url",
            "priority",
            "created_at",
            "not_before",
            "expire_at",
        ):
            assert getattr(got, field) == getattr(msg, field), field
        assert got.status == Status.QUEUED
        assert got.attempts == 0
        assert got.wechat_msgid is None and got.receipt is None
        assert got.last_errcode is None and got.last_errmsg is None

    async def test_get_unknown_is_none(self, store: Store) -> None:
        assert await store.get("nope") is None

    async def test_future_not_before_is_scheduled(self, store: Store, clock: FakeClock) -> None:
        res = await store.enqueue(
            [make_message(clock), make_message(clock, delay_s=60), make_message(clock, delay_s=0)]
        )
        assert [r.status for r in res] == [Status.QUEUED, Status.SCHEDULED, Status.QUEUED]
        assert (await must_get(store, res[1].id)).status == Status.SCHEDULED

    async def test_results_follow_input_order(self, store: Store, clock: FakeClock) -> None:
        msgs = [make_message(clock, app=f"app_{i % 3}") for i in range(20)]
        res = await store.enqueue(msgs)
        assert [r.id for r in res] == [m.id for m in msgs]
        assert all(r.created for r in res)

    async def test_idempotency_key_dedupes_across_calls(
        self, store: Store, clock: FakeClock
    ) -> None:
        first = make_message(clock, idempotency_key="k1")
        [r1] = await store.enqueue([first])
        again = make_message(clock, idempotency_key="k1", touser="o_other")
        [r2] = await store.enqueue([again])
        assert r2.id == first.id
        assert r2.created is False
        assert r2.status == Status.QUEUED
        assert await store.get(again.id) is None
        assert (await must_get(store, first.id)).touser == "o_user_1"
        assert r1.created

    async def test_idempotency_key_dedupes_within_one_call(
        self, store: Store, clock: FakeClock
    ) -> None:
        a = make_message(clock, idempotency_key="same")
        b = make_message(clock, idempotency_key="same")
        c = make_message(clock, idempotency_key="other")
        res = await store.enqueue([a, b, c])
        assert [(r.id, r.created) for r in res] == [(a.id, True), (a.id, False), (c.id, True)]
        assert await store.get(b.id) is None

    async def test_idempotency_key_is_per_app(self, store: Store, clock: FakeClock) -> None:
        res = await store.enqueue(
            [
                make_message(clock, "app_a", idempotency_key="k"),
                make_message(clock, "app_b", idempotency_key="k"),
            ]
        )
        assert all(r.created for r in res)
        assert res[0].id != res[1].id

    async def test_concurrent_same_key_enqueues_make_one_message(
        self, store: Store, clock: FakeClock
    ) -> None:
        msgs = [make_message(clock, idempotency_key="race") for _ in range(50)]
        results = await asyncio.gather(*(store.enqueue([m]) for m in msgs))
        flat = [r for rs in results for r in rs]
        assert len({r.id for r in flat}) == 1
        assert sum(r.created for r in flat) == 1
        stats = await store.stats()
        assert stats.by_status.get("queued", 0) == 1

    async def test_concurrent_enqueues_all_committed_and_distinct(
        self, store: Store, clock: FakeClock
    ) -> None:
        msgs = [make_message(clock, app=f"app_{i % 4}") for i in range(200)]
        results = await asyncio.gather(*(store.enqueue([m]) for m in msgs))
        ids = [rs[0].id for rs in results]
        assert ids == [m.id for m in msgs]
        assert len(set(ids)) == 200
        for msg_id in ids:
            assert (await must_get(store, msg_id)).status == Status.QUEUED
        leased = await store.lease(500, LEASE_S, clock.now())
        assert sorted(m.id for m in leased) == sorted(ids)

    async def test_enqueue_is_all_or_nothing(self, store: Store, clock: FakeClock) -> None:
        existing = await enqueue_one(store, clock)
        fresh = make_message(clock)
        clash = make_message(clock, id=existing, touser="o_clash")
        with pytest.raises(StoreError):
            await store.enqueue([fresh, clash])
        assert await store.get(fresh.id) is None
        assert (await must_get(store, existing)).touser == "o_user_1"
        # The store still works after a failed call.
        await enqueue_one(store, clock)

    async def test_failed_enqueue_does_not_fail_concurrent_ones(
        self, store: Store, clock: FakeClock
    ) -> None:
        existing = await enqueue_one(store, clock)
        good = [make_message(clock) for _ in range(20)]
        bad = make_message(clock, id=existing)
        outcomes = await asyncio.gather(
            *(store.enqueue([m]) for m in [*good[:10], bad, *good[10:]]), return_exceptions=True
        )
        assert isinstance(outcomes[10], StoreError)
        for m in good:
            assert (await must_get(store, m.id)).status == Status.QUEUED

    # ------------------------------------------------------------------ lease

    async def test_lease_marks_sending_with_a_token(self, store: Store, clock: FakeClock) -> None:
        msg_id = await enqueue_one(store, clock)
        [leased] = await store.lease(10, LEASE_S, clock.now())
        assert leased.id == msg_id
        assert leased.status == Status.SENDING
        assert leased.lease_token > 0
        assert leased.data == {
            "first": {"value": "hello"},
            "amount": {"value": "9.90", "color": "#ff0000"},
        }
        got = await must_get(store, msg_id)
        assert got.status == Status.SENDING
        assert got.lease_token == leased.lease_token
        assert await store.lease(10, LEASE_S, clock.now()) == []

    async def test_lease_respects_n(self, store: Store, clock: FakeClock) -> None:
        await store.enqueue([make_message(clock) for _ in range(10)])
        first = await store.lease(4, LEASE_S, clock.now())
        second = await store.lease(100, LEASE_S, clock.now())
        assert len(first) == 4
        assert len(second) == 6
        assert not {m.id for m in first} & {m.id for m in second}

    async def test_lease_only_due_messages(self, store: Store, clock: FakeClock) -> None:
        later = await enqueue_one(store, clock, delay_s=60)
        now_id = await enqueue_one(store, clock)
        assert [m.id for m in await store.lease(10, 3600, clock.now())] == [now_id]
        assert await store.lease(10, LEASE_S, clock.now() + 59) == []
        clock.advance(60)
        [m] = await store.lease(10, LEASE_S, clock.now())
        assert m.id == later and m.status == Status.SENDING

    async def test_lease_uses_given_now(self, store: Store, clock: FakeClock) -> None:
        later = await enqueue_one(store, clock, delay_s=60)
        [m] = await store.lease(10, LEASE_S, clock.now() + 61)
        assert m.id == later

    async def test_lease_is_fair_across_apps(self, store: Store, clock: FakeClock) -> None:
        # app_a's backlog is older and larger; app_c has only two messages.
        await store.enqueue([make_message(clock, "app_a") for _ in range(100)])
        clock.advance(1)
        await store.enqueue([make_message(clock, "app_b") for _ in range(100)])
        clock.advance(1)
        await store.enqueue([make_message(clock, "app_c") for _ in range(2)])
        leased = await store.lease(30, LEASE_S, clock.now())
        per_app = {app: sum(m.app == app for m in leased) for app in ("app_a", "app_b", "app_c")}
        assert len(leased) == 30
        assert per_app["app_c"] == 2
        assert per_app["app_a"] >= math.ceil(30 / 3)
        assert per_app["app_b"] >= math.ceil(30 / 3)

    async def test_lease_skips_excluded_apps(self, store: Store, clock: FakeClock) -> None:
        await store.enqueue([make_message(clock, "app_a") for _ in range(3)])
        b = await enqueue_one(store, clock, "app_b")
        leased = await store.lease(10, LEASE_S, clock.now(), exclude_apps=frozenset({"app_a"}))
        assert [m.id for m in leased] == [b]
        assert len(await store.lease(10, LEASE_S, clock.now())) == 3

    async def test_expired_lease_is_leased_again_and_fences_the_old_holder(
        self, store: Store, clock: FakeClock
    ) -> None:
        msg_id = await enqueue_one(store, clock)
        old = await lease_one(store, clock, msg_id)
        assert await store.lease(10, LEASE_S, clock.now() + LEASE_S - 1) == []
        clock.advance(LEASE_S + 1)
        new = await lease_one(store, clock, msg_id)
        assert new.lease_token > old.lease_token
        # The old holder's outcomes are refused and change nothing.
        assert not await store.ack(msg_id, old.lease_token, SendResult(111, clock.now()))
        assert not await store.retry(msg_id, old.lease_token, clock.now(), None, False)
        assert not await store.dead(msg_id, old.lease_token, ErrorInfo(40003, "bad openid"))
        assert not await store.expire(msg_id, old.lease_token)
        got = await must_get(store, msg_id)
        assert got.status == Status.SENDING
        assert got.lease_token == new.lease_token
        assert got.wechat_msgid is None and got.attempts == 0
        assert await store.ack(msg_id, new.lease_token, SendResult(222, clock.now()))
        got = await must_get(store, msg_id)
        assert (got.status, got.wechat_msgid) == (Status.SENT, 222)
        assert got.attempts == 1  # only the holder's send that worked counts

    async def test_late_ack_without_release_is_accepted(
        self, store: Store, clock: FakeClock
    ) -> None:
        msg_id = await enqueue_one(store, clock)
        held = await lease_one(store, clock, msg_id)
        clock.advance(LEASE_S * 3)
        assert await store.ack(msg_id, held.lease_token, SendResult(5, clock.now()))
        assert (await must_get(store, msg_id)).status == Status.SENT
        assert await store.lease(10, LEASE_S, clock.now()) == []

    async def test_lease_expirations_are_counted(self, store: Store, clock: FakeClock) -> None:
        first = await enqueue_one(store, clock)
        other = await enqueue_one(store, clock, "app_b")
        held = await lease_one(store, clock, first)
        done = await must_get(store, other)
        assert await store.ack(other, done.lease_token, SendResult(1, clock.now()))
        assert (await store.stats()).lease_expirations == {}  # fresh leases are no takeover
        clock.advance(LEASE_S + 1)
        again = await lease_one(store, clock, first)
        assert again.lease_token > held.lease_token
        assert (await store.stats()).lease_expirations == {"app_a": 1}
        clock.advance(LEASE_S + 1)
        await lease_one(store, clock, first)
        assert (await store.stats()).lease_expirations == {"app_a": 2}

    # ------------------------------------------------------------------ stats

    async def test_stats(self, store: Store, clock: FakeClock) -> None:
        empty = await store.stats()
        assert sum(empty.by_status.values()) == 0
        assert empty.oldest_pending_at is None
        first_at = clock.now()
        await store.enqueue([make_message(clock, "app_a") for _ in range(3)])
        clock.advance(5)
        await store.enqueue(
            [make_message(clock, "app_b"), make_message(clock, "app_b", delay_s=99)]
        )
        [leased] = await store.lease(1, LEASE_S, clock.now(), exclude_apps=frozenset({"app_b"}))
        await store.dead(leased.id, leased.lease_token, ErrorInfo(40003, "bad"))
        stats = await store.stats()
        assert stats.by_status.get("queued", 0) == 3
        assert stats.by_status.get("scheduled", 0) == 1
        assert stats.by_status.get("dead", 0) == 1
        assert stats.by_status.get("sending", 0) == 0
        assert stats.by_app["app_a"].get("queued", 0) == 2
        assert stats.by_app["app_a"].get("dead", 0) == 1
        assert stats.by_app["app_b"].get("queued", 0) == 1
        assert stats.by_app["app_b"].get("scheduled", 0) == 1
        assert stats.oldest_pending_at == first_at

    # ------------------------------------------------------------------ dead letters

    async def test_dead_letters_paginate_newest_first(self, store: Store, clock: FakeClock) -> None:
        ids = await make_dead(store, clock, "app_a", 40003, 5)
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page, cursor = await store.dead_letters(cursor=cursor, limit=2)
            assert len(page) <= 2
            assert all(m.status == Status.DEAD for m in page)
            seen += [m.id for m in page]
            pages += 1
            if cursor is None:
                break
            assert pages < 10
        assert seen == list(reversed(ids))

    async def test_dead_letters_filters(self, store: Store, clock: FakeClock) -> None:
        a = await make_dead(store, clock, "app_a", 40003, 2)
        b = await make_dead(store, clock, "app_b", 40003, 1)
        c = await make_dead(store, clock, "app_a", 43101, 1)
        await enqueue_one(store, clock, "app_a")  # not dead: never listed
        page, cursor = await store.dead_letters(app="app_a", limit=100)
        assert {m.id for m in page} == {*a, *c} and cursor is None
        page, _ = await store.dead_letters(errcode=40003, limit=100)
        assert {m.id for m in page} == {*a, *b}
        page, _ = await store.dead_letters(app="app_a", errcode=43101)
        assert [m.id for m in page] == c
        page, _ = await store.dead_letters(app="app_c")
        assert page == []

    async def test_requeue_by_ids(self, store: Store, clock: FakeClock) -> None:
        dead = await make_dead(store, clock, "app_a", 40003, 3)
        alive = await enqueue_one(store, clock)
        moved = await store.requeue(ids=[dead[0], dead[1], alive, "missing"])
        assert moved == 2
        got = await must_get(store, dead[0])
        assert got.status == Status.QUEUED
        assert got.attempts == 0
        assert got.last_errcode == 40003  # kept: it says why the message died
        assert (await must_get(store, dead[2])).status == Status.DEAD
        leased = {m.id for m in await store.lease(10, LEASE_S, clock.now())}
        assert leased == {dead[0], dead[1], alive}
        page, _ = await store.dead_letters()
        assert [m.id for m in page] == [dead[2]]

    async def test_requeue_by_filter(self, store: Store, clock: FakeClock) -> None:
        a = await make_dead(store, clock, "app_a", 40003, 2)
        b = await make_dead(store, clock, "app_b", 40003, 1)
        c = await make_dead(store, clock, "app_a", 43101, 1)
        assert await store.requeue(app="app_a", errcode=40003) == 2
        for msg_id in a:
            assert (await must_get(store, msg_id)).status == Status.QUEUED
        assert await store.requeue(app="app_b") == 1
        assert (await must_get(store, b[0])).status == Status.QUEUED
        assert (await must_get(store, c[0])).status == Status.DEAD
        assert await store.requeue() == 1  # no ids, no filter: every dead letter
        assert (await must_get(store, c[0])).status == Status.QUEUED
        assert await store.requeue() == 0
