"""The store contract suite: every backend subclasses StoreContract and passes it unchanged.

Usage (in tests/store/test_<backend>.py):

    from contract import StoreContract

    class TestMyBackend(StoreContract):
        @pytest.fixture
        async def store(self, clock: FakeClock) -> AsyncIterator[Store]:
            s = MyStore(..., clock, retention_s=3600)
            await s.open()
            yield s
            await s.close()

The store must be built with the `clock` fixture: tests move time with `clock.advance`.
`close()` must be idempotent (a test closes the store itself). Tests speak only through the
Store protocol, never a backend's internals.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from wxgate.clock import FakeClock
from wxgate.errors import StoreError, StoreUnavailable
from wxgate.models import (
    AppPause,
    Batch,
    ErrorInfo,
    Message,
    MessageKind,
    MiniProgram,
    SendResult,
    SharedFields,
    Status,
    TokenEntry,
    WebhookEvent,
    new_id,
)
from wxgate.store.base import CancelOutcome, Store

LEASE_S = 30.0
HOOK = "https://caller.example/wxgate-events"


def make_message(clock: FakeClock, app: str = "app_a", **overrides: Any) -> Message:
    """A valid message created now; `delay_s` schedules it that far ahead."""
    now = clock.now()
    delay_s = overrides.pop("delay_s", 0.0)
    fields: dict[str, Any] = {
        "id": new_id(),
        "app": app,
        "touser": "o_user_1",
        "template_id": "tpl_order",
        "data": {"first": {"value": "hello"}, "amount": {"value": "9.90", "color": "#ff0000"}},
        "created_at": now,
        "not_before": now + delay_s,
    }
    fields.update(overrides)
    return Message(**fields)


async def enqueue_one(store: Store, clock: FakeClock, app: str = "app_a", **kw: Any) -> str:
    [res] = await store.enqueue([make_message(clock, app, **kw)])
    assert res.created
    return res.id


async def lease_one(store: Store, clock: FakeClock, msg_id: str) -> Message:
    leased = await store.lease(100, LEASE_S, clock.now())
    by_id = {m.id: m for m in leased}
    assert msg_id in by_id, f"{msg_id} was not leased"
    return by_id[msg_id]


async def send_and_ack(store: Store, clock: FakeClock, msg_id: str, wechat_msgid: int) -> None:
    msg = await lease_one(store, clock, msg_id)
    assert await store.ack(msg_id, msg.lease_token, SendResult(wechat_msgid, clock.now()))


async def must_get(store: Store, msg_id: str) -> Message:
    msg = await store.get(msg_id)
    assert msg is not None, f"{msg_id} not found"
    return msg


class StoreContract:
    """Rules of store/base.py, checked through the Store protocol only."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    async def store(self, clock: FakeClock) -> AsyncIterator[Store]:
        raise NotImplementedError("a backend's test class overrides the `store` fixture")
        yield  # pragma: no cover

    # ------------------------------------------------------------------ enqueue

    async def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)
        await store.ping()

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

    # ------------------------------------------------------------------ outcomes

    async def test_ack_is_fenced(self, store: Store, clock: FakeClock) -> None:
        msg_id = await enqueue_one(store, clock)
        assert not await store.ack(msg_id, 1, SendResult(1, clock.now()))  # not leased
        held = await lease_one(store, clock, msg_id)
        assert not await store.ack(msg_id, held.lease_token + 1, SendResult(1, clock.now()))
        assert not await store.ack("unknown", held.lease_token, SendResult(1, clock.now()))
        result = SendResult(987654321, clock.now())
        assert await store.ack(msg_id, held.lease_token, result)
        assert not await store.ack(msg_id, held.lease_token, result)  # twice
        got = await must_get(store, msg_id)
        assert got.status == Status.SENT
        assert got.wechat_msgid == 987654321
        assert got.sent_at == result.sent_at
        assert await store.lease(10, LEASE_S, clock.now() + 10 * LEASE_S) == []

    async def test_ack_without_msgid(self, store: Store, clock: FakeClock) -> None:
        msg_id = await enqueue_one(store, clock)
        await send_and_ack(store, clock, msg_id, 1)
        other = await enqueue_one(store, clock)
        held = await lease_one(store, clock, other)
        assert await store.ack(other, held.lease_token, SendResult(None, clock.now()))
        got = await must_get(store, other)
        assert got.status == Status.SENT and got.wechat_msgid is None

    async def test_concurrent_acks_each_get_their_own_outcome(
        self, store: Store, clock: FakeClock
    ) -> None:
        """Acks submitted together (a backend may run them as one batch) are judged one by one:
        fences, a second ack of one message, receipts that came first, events, other apps."""
        plain = [await enqueue_one(store, clock) for _ in range(5)]
        hooked = await enqueue_one(store, clock, callback_url=HOOK)
        early = await enqueue_one(store, clock, callback_url=HOOK)
        other_app = await enqueue_one(store, clock, "app_b")
        no_msgid = await enqueue_one(store, clock)
        stale = await enqueue_one(store, clock)
        leased = {m.id: m for m in await store.lease(100, LEASE_S, clock.now())}
        assert len(leased) == 10
        assert await store.record_receipt("app_a", 4242, "failed:user block", "ev-early") is None
        now = clock.now() + 0.123456789  # sent_at and finished_at must come back exactly

        def ack(msg_id: str, msgid: int | None, token_delta: int = 0) -> Any:
            return store.ack(
                msg_id, leased[msg_id].lease_token + token_delta, SendResult(msgid, now)
            )

        results = await asyncio.gather(
            *(ack(m, 1000 + i) for i, m in enumerate(plain)),
            ack(hooked, 2**64 - 616),  # WeChat msgids are unsigned 64-bit
            ack(early, 4242),
            ack(other_app, 4242),  # the same msgid in another app: not that receipt
            ack(no_msgid, None),
            ack(stale, 3000, token_delta=1),  # fenced
            ack(plain[0], 1000),  # the same message again: already sent
            store.ack("no-such-id", 1, SendResult(1, now)),
        )
        sent, blocked = Status.SENT, Status.BLOCKED  # `early` ends as its waiting receipt says
        assert results == [sent] * 5 + [sent, blocked, sent, sent, None, None, None]
        for i, m in enumerate(plain):
            got = await must_get(store, m)
            assert (got.status, got.wechat_msgid, got.attempts) == (Status.SENT, 1000 + i, 1)
            assert got.sent_at == now
        assert (await must_get(store, hooked)).wechat_msgid == 2**64 - 616
        assert (await must_get(store, early)).status == Status.BLOCKED
        assert (await must_get(store, early)).receipt == "failed:user block"
        assert (await must_get(store, other_app)).status == Status.SENT
        got = await must_get(store, no_msgid)
        assert got.status == Status.SENT and got.wechat_msgid is None
        assert (await must_get(store, stale)).status == Status.SENDING
        events = await store.lease_webhooks(100, LEASE_S, clock.now())
        assert sorted((e.message_id, e.status) for e in events) == sorted(
            [(hooked, "sent"), (early, "blocked")]
        )
        stats = await store.stats()
        assert stats.by_app["app_a"].get("sent", 0) == 7
        assert stats.by_app["app_a"].get("blocked", 0) == 1
        assert stats.by_app["app_a"].get("sending", 0) == 1
        assert stats.by_app["app_b"].get("sent", 0) == 1

    async def test_retry_counts_attempt_and_waits(self, store: Store, clock: FakeClock) -> None:
        msg_id = await enqueue_one(store, clock)
        held = await lease_one(store, clock, msg_id)
        at = clock.now() + 10
        assert await store.retry(msg_id, held.lease_token, at, ErrorInfo(-1, "system busy"), True)
        got = await must_get(store, msg_id)
        assert got.status == Status.RETRYING
        assert got.attempts == 1
        assert (got.last_errcode, got.last_errmsg) == (-1, "system busy")
        assert got.not_before == at
        assert await store.lease(10, LEASE_S, clock.now() + 9) == []
        clock.advance(10)
        again = await lease_one(store, clock, msg_id)
        assert again.lease_token > held.lease_token
        assert again.attempts == 1
        assert not await store.retry(msg_id, held.lease_token, at, None, True)  # old token

    async def test_retry_without_counting_keeps_attempts(
        self, store: Store, clock: FakeClock
    ) -> None:
        msg_id = await enqueue_one(store, clock)
        held = await lease_one(store, clock, msg_id)
        assert await store.retry(msg_id, held.lease_token, clock.now(), ErrorInfo(-1, "busy"), True)
        held = await lease_one(store, clock, msg_id)
        assert await store.retry(
            msg_id, held.lease_token, clock.now() + 60, ErrorInfo(45009, "quota"), False
        )
        got = await must_get(store, msg_id)
        assert got.attempts == 1
        assert got.last_errcode == 45009

    async def test_release_goes_back_unharmed(self, store: Store, clock: FakeClock) -> None:
        msg_id = await enqueue_one(store, clock)
        held = await lease_one(store, clock, msg_id)
        assert await store.retry(msg_id, held.lease_token, clock.now(), ErrorInfo(-1, "busy"), True)
        held = await lease_one(store, clock, msg_id)
        assert await store.retry(msg_id, held.lease_token, clock.now(), None, False)  # release
        got = await must_get(store, msg_id)
        assert got.attempts == 1
        assert got.last_errcode == -1
        assert got.status in (Status.RETRYING, Status.QUEUED)
        again = await lease_one(store, clock, msg_id)
        assert again.attempts == 1

    async def test_dead_is_final(self, store: Store, clock: FakeClock) -> None:
        msg_id = await enqueue_one(store, clock)
        held = await lease_one(store, clock, msg_id)
        assert await store.dead(msg_id, held.lease_token, ErrorInfo(40003, "invalid openid"))
        got = await must_get(store, msg_id)
        assert got.status == Status.DEAD
        assert got.attempts == 1
        assert (got.last_errcode, got.last_errmsg) == (40003, "invalid openid")
        assert got.finished_at is not None
        assert await store.lease(10, LEASE_S, clock.now() + 10 * LEASE_S) == []
        assert not await store.dead(msg_id, held.lease_token, ErrorInfo(1, "again"))

    async def test_expire(self, store: Store, clock: FakeClock) -> None:
        msg_id = await enqueue_one(store, clock, expire_at=clock.now() + 1)
        held = await lease_one(store, clock, msg_id)
        assert not await store.expire(msg_id, held.lease_token + 1)
        assert await store.expire(msg_id, held.lease_token)
        assert (await must_get(store, msg_id)).status == Status.EXPIRED
        assert await store.lease(10, LEASE_S, clock.now() + 10 * LEASE_S) == []

    # ------------------------------------------------------------------ cancel

    async def test_cancel_pending_messages(self, store: Store, clock: FakeClock) -> None:
        retrying = await enqueue_one(store, clock)
        held = await lease_one(store, clock, retrying)
        await store.retry(retrying, held.lease_token, clock.now() + 5, ErrorInfo(-1, "busy"), True)
        queued = await enqueue_one(store, clock)
        scheduled = await enqueue_one(store, clock, delay_s=300)
        for msg_id in (queued, scheduled, retrying):
            assert await store.cancel(msg_id) == CancelOutcome.CANCELLED
            got = await must_get(store, msg_id)
            assert got.status == Status.CANCELLED
        assert await store.lease(10, LEASE_S, clock.now() + 1000) == []
        assert await store.cancel(queued) == CancelOutcome.CONFLICT

    async def test_cancel_in_flight_or_finished_conflicts(
        self, store: Store, clock: FakeClock
    ) -> None:
        sending = await enqueue_one(store, clock)
        held = await lease_one(store, clock, sending)
        assert await store.cancel(sending) == CancelOutcome.CONFLICT
        assert (await must_get(store, sending)).status == Status.SENDING
        assert await store.ack(sending, held.lease_token, SendResult(1, clock.now()))
        assert await store.cancel(sending) == CancelOutcome.CONFLICT
        assert await store.cancel("missing") == CancelOutcome.NOT_FOUND

    # ------------------------------------------------------------------ receipts

    @pytest.mark.parametrize(
        ("receipt", "status"),
        [
            ("success", Status.DELIVERED),
            ("failed:user block", Status.BLOCKED),
            ("failed: user  block", Status.BLOCKED),
            ("failed: system failed", Status.FAILED),
        ],
    )
    async def test_receipt_after_ack(
        self, store: Store, clock: FakeClock, receipt: str, status: Status
    ) -> None:
        msg_id = await enqueue_one(store, clock)
        await send_and_ack(store, clock, msg_id, 2000001)
        found = await store.find_by_wechat_msgid("app_a", 2000001)
        assert found is not None and found.id == msg_id
        updated = await store.record_receipt(
            "app_a", 2000001, receipt, "o_user_1:1700000000:2000001"
        )
        assert updated is not None
        assert updated.id == msg_id
        assert updated.status == status
        assert updated.receipt == receipt
        got = await must_get(store, msg_id)
        assert (got.status, got.receipt) == (status, receipt)

    async def test_receipt_event_key_dedupes(self, store: Store, clock: FakeClock) -> None:
        msg_id = await enqueue_one(store, clock)
        await send_and_ack(store, clock, msg_id, 77)
        assert await store.record_receipt("app_a", 77, "success", "ev1") is not None
        assert await store.record_receipt("app_a", 77, "failed: system failed", "ev1") is None
        assert (await must_get(store, msg_id)).status == Status.DELIVERED

    async def test_receipt_before_ack_is_applied_at_ack(
        self, store: Store, clock: FakeClock
    ) -> None:
        msg_id = await enqueue_one(store, clock)
        held = await lease_one(store, clock, msg_id)
        # WeChat's callback beats our ack commit.
        assert await store.record_receipt("app_a", 31337, "failed:user block", "ev-early") is None
        assert await store.record_receipt("app_a", 31337, "failed:user block", "ev-early") is None
        assert (await must_get(store, msg_id)).status == Status.SENDING
        assert await store.ack(msg_id, held.lease_token, SendResult(31337, clock.now()))
        got = await must_get(store, msg_id)
        assert got.status == Status.BLOCKED
        assert got.receipt == "failed:user block"
        assert got.wechat_msgid == 31337

    async def test_receipt_is_per_app(self, store: Store, clock: FakeClock) -> None:
        msg_id = await enqueue_one(store, clock, "app_a")
        await send_and_ack(store, clock, msg_id, 555)
        assert await store.record_receipt("app_b", 555, "success", "ev-b") is None
        assert (await must_get(store, msg_id)).status == Status.SENT
        assert await store.find_by_wechat_msgid("app_b", 555) is None
        assert await store.record_receipt("app_a", 555, "success", "ev-a") is not None

    async def test_receipt_for_finished_message_changes_nothing(
        self, store: Store, clock: FakeClock
    ) -> None:
        msg_id = await enqueue_one(store, clock)
        await send_and_ack(store, clock, msg_id, 808)
        assert await store.record_receipt("app_a", 808, "success", "ev-1") is not None
        assert await store.record_receipt("app_a", 808, "failed: system failed", "ev-2") is None
        assert (await must_get(store, msg_id)).status == Status.DELIVERED

    async def test_64_bit_msgid(self, store: Store, clock: FakeClock) -> None:
        big = 2**63 + 12345  # WeChat msgids are 64-bit; do not assume they fit a signed int
        msg_id = await enqueue_one(store, clock)
        await send_and_ack(store, clock, msg_id, big)
        assert (await must_get(store, msg_id)).wechat_msgid == big
        found = await store.find_by_wechat_msgid("app_a", big)
        assert found is not None and found.id == msg_id
        updated = await store.record_receipt("app_a", big, "success", "ev-big")
        assert updated is not None and updated.wechat_msgid == big

    async def test_find_by_unknown_msgid(self, store: Store) -> None:
        assert await store.find_by_wechat_msgid("app_a", 4242) is None

    async def test_receipt_naming_another_openid_is_dropped(
        self, store: Store, clock: FakeClock
    ) -> None:
        """A signed push can still be forged in plain mode: a receipt only changes a message
        sent to the event's FromUserName (make_message sends to o_user_1)."""
        msg_id = await enqueue_one(store, clock, callback_url=HOOK)
        await send_and_ack(store, clock, msg_id, 919)
        before = (await store.webhook_stats()).pending
        assert (
            await store.record_receipt("app_a", 919, "failed: x", "o_evil:1:919", "o_evil") is None
        )
        assert (await must_get(store, msg_id)).status == Status.SENT
        assert (await store.webhook_stats()).pending == before  # no status webhook either
        assert await store.record_receipt("app_a", 919, "failed: x", ":1:919", "") is None
        assert (await must_get(store, msg_id)).status == Status.SENT  # "" is not unchecked
        updated = await store.record_receipt("app_a", 919, "success", "o_user_1:1:919", "o_user_1")
        assert updated is not None and updated.status == Status.DELIVERED

    async def test_early_receipt_naming_another_openid_is_dropped_at_ack(
        self, store: Store, clock: FakeClock
    ) -> None:
        """Receipts that beat their ack wait with their openid: planting one for a msgid
        WeChat has yet to hand out does not decide that message."""
        msg_id = await enqueue_one(store, clock)
        held = await lease_one(store, clock, msg_id)
        assert (
            await store.record_receipt("app_a", 929, "failed: x", "o_evil:1:929", "o_evil") is None
        )
        assert (
            await store.ack(msg_id, held.lease_token, SendResult(929, clock.now())) == Status.SENT
        )
        assert (await must_get(store, msg_id)).status == Status.SENT
        other = await enqueue_one(store, clock)
        held = await lease_one(store, clock, other)
        assert (
            await store.record_receipt("app_a", 939, "success", "o_user_1:1:939", "o_user_1")
            is None
        )
        assert await store.ack(other, held.lease_token, SendResult(939, clock.now())) == (
            Status.DELIVERED
        )

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

    async def _make_dead(
        self, store: Store, clock: FakeClock, app: str, errcode: int, count: int
    ) -> list[str]:
        ids = []
        for _ in range(count):
            msg_id = await enqueue_one(store, clock, app)
            held = await lease_one(store, clock, msg_id)
            assert await store.dead(msg_id, held.lease_token, ErrorInfo(errcode, f"err {errcode}"))
            ids.append(msg_id)
            clock.advance(1)
        return ids

    async def test_dead_letters_paginate_newest_first(self, store: Store, clock: FakeClock) -> None:
        ids = await self._make_dead(store, clock, "app_a", 40003, 5)
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
        a = await self._make_dead(store, clock, "app_a", 40003, 2)
        b = await self._make_dead(store, clock, "app_b", 40003, 1)
        c = await self._make_dead(store, clock, "app_a", 43101, 1)
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
        dead = await self._make_dead(store, clock, "app_a", 40003, 3)
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
        a = await self._make_dead(store, clock, "app_a", 40003, 2)
        b = await self._make_dead(store, clock, "app_b", 40003, 1)
        c = await self._make_dead(store, clock, "app_a", 43101, 1)
        assert await store.requeue(app="app_a", errcode=40003) == 2
        for msg_id in a:
            assert (await must_get(store, msg_id)).status == Status.QUEUED
        assert await store.requeue(app="app_b") == 1
        assert (await must_get(store, b[0])).status == Status.QUEUED
        assert (await must_get(store, c[0])).status == Status.DEAD
        assert await store.requeue() == 1  # no ids, no filter: every dead letter
        assert (await must_get(store, c[0])).status == Status.QUEUED
        assert await store.requeue() == 0

    # ------------------------------------------------------------------ batches

    def _batch(self, clock: FakeClock, total: int, app: str = "app_a") -> Batch:
        return Batch(
            id=new_id(), app=app, template_id="tpl_order", total=total, created_at=clock.now()
        )

    async def test_batch_created_with_its_messages(self, store: Store, clock: FakeClock) -> None:
        batch = self._batch(clock, 4)
        msgs = [make_message(clock, batch_id=batch.id, touser=f"o_{i}") for i in range(4)]
        res = await store.enqueue(msgs, batch=batch)
        assert all(r.created for r in res)
        got = await store.get_batch(batch.id)
        assert got is not None
        assert (got.id, got.app, got.total, got.status) == (batch.id, "app_a", 4, "running")
        assert await store.get_batch("missing") is None
        assert (await store.batch_counts(batch.id)).get("queued", 0) == 4

    async def test_batch_counts_each_message_once(self, store: Store, clock: FakeClock) -> None:
        batch = self._batch(clock, 6)
        msgs = [make_message(clock, batch_id=batch.id) for _ in range(6)]
        await store.enqueue(msgs, batch=batch)
        leased = await store.lease(4, LEASE_S, clock.now())
        await store.ack(leased[0].id, leased[0].lease_token, SendResult(1, clock.now()))
        await store.ack(leased[1].id, leased[1].lease_token, SendResult(2, clock.now()))
        await store.record_receipt("app_a", 1, "success", "ev1")
        await store.dead(leased[2].id, leased[2].lease_token, ErrorInfo(40003, "bad"))
        await store.retry(leased[3].id, leased[3].lease_token, clock.now() + 5, None, True)
        counts = await store.batch_counts(batch.id)
        assert sum(counts.values()) == 6
        assert {k: v for k, v in counts.items() if v} == {
            "queued": 2,
            "delivered": 1,
            "sent": 1,
            "dead": 1,
            "retrying": 1,
        }
        assert not any((await store.batch_counts("missing")).values())

    async def test_paused_batch_is_not_leased(self, store: Store, clock: FakeClock) -> None:
        batch = self._batch(clock, 3)
        msgs = [make_message(clock, batch_id=batch.id) for _ in range(3)]
        await store.enqueue(msgs, batch=batch)
        loose = await enqueue_one(store, clock)
        assert await store.set_batch_status(batch.id, "paused")
        assert (await store.get_batch(batch.id)).status == "paused"  # type: ignore[union-attr]
        assert [m.id for m in await store.lease(10, LEASE_S, clock.now())] == [loose]
        assert await store.set_batch_status(batch.id, "running")
        leased = await store.lease(10, LEASE_S, clock.now())
        assert {m.id for m in leased} == {m.id for m in msgs}

    async def test_retry_inside_paused_batch_waits_for_resume(
        self, store: Store, clock: FakeClock
    ) -> None:
        batch = self._batch(clock, 1)
        msg = make_message(clock, batch_id=batch.id)
        await store.enqueue([msg], batch=batch)
        held = await lease_one(store, clock, msg.id)
        assert await store.set_batch_status(batch.id, "paused")
        assert await store.retry(msg.id, held.lease_token, clock.now(), ErrorInfo(-1, "x"), True)
        assert await store.lease(10, LEASE_S, clock.now() + 100) == []
        assert await store.set_batch_status(batch.id, "running")
        assert [m.id for m in await store.lease(10, LEASE_S, clock.now() + 100)] == [msg.id]

    async def test_cancelled_batch(self, store: Store, clock: FakeClock) -> None:
        batch = self._batch(clock, 5)
        msgs = [make_message(clock, batch_id=batch.id) for _ in range(5)]
        await store.enqueue(msgs, batch=batch)
        in_flight = await store.lease(2, LEASE_S, clock.now())
        assert await store.set_batch_status(batch.id, "cancelled")
        assert (await store.get_batch(batch.id)).status == "cancelled"  # type: ignore[union-attr]
        counts = await store.batch_counts(batch.id)
        assert counts.get("cancelled", 0) == 3
        assert counts.get("sending", 0) == 2
        # In-flight messages may finish; a retried one is never leased again.
        assert await store.ack(
            in_flight[0].id, in_flight[0].lease_token, SendResult(9, clock.now())
        )
        await store.retry(in_flight[1].id, in_flight[1].lease_token, clock.now(), None, True)
        assert await store.lease(10, LEASE_S, clock.now() + 1000) == []
        assert not await store.set_batch_status("missing", "paused")

    async def test_large_batches_resume_and_cancel_whole(
        self, store: Store, clock: FakeClock
    ) -> None:
        """Larger than any chunk a store works a batch status change in (Redis: 1,000)."""
        n = 2_345
        resumed, cancelled = self._batch(clock, n), self._batch(clock, n)
        for batch in (resumed, cancelled):
            batch.status = "loading"
            await store.enqueue([], batch=batch)
            for start in range(0, n, 1000):
                chunk = range(start, min(n, start + 1000))
                await store.enqueue([make_message(clock, batch_id=batch.id) for _ in chunk])
        assert await store.lease(10, LEASE_S, clock.now()) == []
        assert await store.set_batch_status(resumed.id, "running", expect="loading")
        assert await store.set_batch_status(cancelled.id, "cancelled")
        assert await store.batch_counts(cancelled.id) == {"cancelled": n}
        leased: set[str] = set()
        while got := await store.lease(500, LEASE_S, clock.now()):
            leased.update(m.id for m in got)
        assert len(leased) == n
        assert {(await must_get(store, i)).batch_id for i in list(leased)[:50]} == {resumed.id}
        by_status = {k: v for k, v in (await store.stats()).by_status.items() if v}
        assert by_status == {"sending": n, "cancelled": n}

    async def test_large_batch_in_one_call(self, store: Store, clock: FakeClock) -> None:
        """More recipients than a store writes per step (Redis: 1,000): one call, one batch,
        every message leasable once it returns."""
        n = 2_345
        batch = self._batch(clock, n)
        msgs = [make_message(clock, batch_id=batch.id) for _ in range(n)]
        results = await store.enqueue(msgs, batch=batch)
        assert [r.id for r in results] == [m.id for m in msgs] and all(r.created for r in results)
        got = await store.get_batch(batch.id)
        assert got is not None and (got.status, got.total) == ("running", n)
        assert await store.batch_counts(batch.id) == {"queued": n}
        leased: set[str] = set()
        while more := await store.lease(1000, LEASE_S, clock.now()):
            leased.update(m.id for m in more)
        assert leased == {m.id for m in msgs}

    async def test_large_batch_refused_part_way_sends_nothing(
        self, store: Store, clock: FakeClock
    ) -> None:
        """A message id clash past the first thousand: the call fails and none of the batch is
        ever sent (SQLite writes nothing; Redis cancels the chunks it had written)."""
        existing = await enqueue_one(store, clock)
        assert await lease_one(store, clock, existing)
        batch = self._batch(clock, 1_500)
        msgs = [make_message(clock, batch_id=batch.id, callback_url=HOOK) for _ in range(1_499)]
        msgs.append(make_message(clock, batch_id=batch.id, id=existing))
        with pytest.raises(StoreError):
            await store.enqueue(msgs, batch=batch)
        assert await store.lease(2000, LEASE_S, clock.now() + 1) == []
        # The caller never got these ids: no status webhook names them.
        assert await store.lease_webhooks(100, LEASE_S, clock.now()) == []
        assert not (await store.batch_counts(batch.id)).get("queued")
        got = await store.get_batch(batch.id)
        assert got is None or got.status == "cancelled"

    async def test_recent_batches_newest_first(self, store: Store, clock: FakeClock) -> None:
        assert await store.recent_batches(10) == []
        made = []
        for total in (1, 2, 3):
            batch = self._batch(clock, total, app="app_b" if total == 2 else "app_a")
            msgs = [make_message(clock, batch.app, batch_id=batch.id) for _ in range(total)]
            await store.enqueue(msgs, batch=batch)
            made.append(batch)
            clock.advance(1.0)
        assert await store.set_batch_status(made[0].id, "paused")
        got = await store.recent_batches(10)
        assert [b.id for b in got] == [b.id for b in reversed(made)]
        assert [(b.app, b.total, b.status) for b in got] == [
            ("app_a", 3, "running"),
            ("app_b", 2, "running"),
            ("app_a", 1, "paused"),
        ]
        assert got[0].created_at == made[2].created_at
        assert [b.id for b in await store.recent_batches(2)] == [made[2].id, made[1].id]
        await enqueue_one(store, clock)  # a loose message is no batch
        assert len(await store.recent_batches(10)) == 3

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

    async def test_loading_batch_holds_chunks_until_it_runs(
        self, store: Store, clock: FakeClock
    ) -> None:
        batch = self._batch(clock, 0)
        batch.status = "loading"
        assert await store.enqueue([], batch=batch) == []
        chunks = [
            [make_message(clock, batch_id=batch.id, touser=f"o_{c}_{i}") for i in range(3)]
            for c in range(2)
        ]
        chunks[1].append(make_message(clock, batch_id=batch.id, delay_s=50))
        for chunk in chunks:
            await store.enqueue(chunk)
        loose = await enqueue_one(store, clock)
        assert [m.id for m in await store.lease(10, 3600, clock.now())] == [loose]
        assert await store.set_batch_total(batch.id, 7)
        assert not await store.set_batch_total("missing", 7)
        got = await store.get_batch(batch.id)
        assert got is not None and (got.status, got.total) == ("loading", 7)
        assert (await store.batch_counts(batch.id)) == {"queued": 6, "scheduled": 1}
        # Compare-and-set: only a batch still loading becomes running.
        assert not await store.set_batch_status(batch.id, "running", expect="paused")
        assert await store.set_batch_status(batch.id, "running", expect="loading")
        assert not await store.set_batch_status(batch.id, "incomplete", expect="loading")
        leased = await store.lease(10, 3600, clock.now())
        assert {m.id for m in leased} == {m.id for m in chunks[0] + chunks[1][:3]}
        clock.advance(51)
        assert [m.id for m in await store.lease(10, LEASE_S, clock.now())] == [chunks[1][3].id]

    async def test_incomplete_batch_waits_for_resume_or_cancel(
        self, store: Store, clock: FakeClock
    ) -> None:
        batches = []
        for _ in range(2):
            batch = self._batch(clock, 0)
            batch.status = "loading"
            await store.enqueue([], batch=batch)
            await store.enqueue([make_message(clock, batch_id=batch.id) for _ in range(2)])
            assert await store.set_batch_status(batch.id, "incomplete", expect="loading")
            batches.append(batch)
        assert await store.lease(10, LEASE_S, clock.now()) == []
        resumed, cancelled = batches
        assert await store.set_batch_status(resumed.id, "running")
        assert await store.set_batch_status(cancelled.id, "cancelled")
        assert await store.set_batch_status(cancelled.id, "cancelled")  # idempotent
        assert not await store.set_batch_status(cancelled.id, "running")
        leased = await store.lease(10, LEASE_S, clock.now())
        assert {m.batch_id for m in leased} == {resumed.id} and len(leased) == 2
        assert await store.batch_counts(cancelled.id) == {"cancelled": 2}

    async def test_batch_messages_page_through_every_message_once(
        self, store: Store, clock: FakeClock
    ) -> None:
        batch = self._batch(clock, 25)
        msgs = [make_message(clock, batch_id=batch.id, touser=f"o_{i}") for i in range(25)]
        await store.enqueue(msgs[:10], batch=batch)
        await enqueue_one(store, clock)  # another message between the batch's chunks
        await store.enqueue(msgs[10:])
        [one] = await store.lease(1, LEASE_S, clock.now())
        assert await store.ack(one.id, one.lease_token, SendResult(77, clock.now()))
        seen: list[Message] = []
        cursor: str | None = None
        pages = 0
        while True:
            page, cursor = await store.batch_messages(batch.id, cursor, limit=7)
            seen += page
            pages += 1
            if cursor is None:
                break
        assert pages == 4
        assert sorted(m.id for m in seen) == sorted(m.id for m in msgs)
        by_id = {m.id: m for m in seen}
        if one.batch_id == batch.id:
            assert (by_id[one.id].status, by_id[one.id].wechat_msgid) == (Status.SENT, 77)
        assert await store.batch_messages("missing") == ([], None)

    def _shared_batch(
        self, clock: FakeClock, n: int, status: str = "running"
    ) -> tuple[Batch, list[Message]]:
        """A batch whose messages reference one SharedFields, as the API builds them: the
        first without data of its own (its data IS the shared dict), the second with a
        recipient's override and an extra key, the third with a shared value changed (as a
        template check truncates one), the rest without overrides."""
        shared = SharedFields(
            data={"first": {"value": "shared " * 50}, "amount": {"value": "9.90"}},
            url="https://example.com/campaign",
            miniprogram=MiniProgram(appid="wx_mini", pagepath="pages/a"),
        )
        batch = self._batch(clock, n)
        batch.status, batch.shared = status, shared
        own = [
            shared.data,
            {**shared.data, "amount": {"value": "1.00"}, "name": {"value": "Li"}},
            {**shared.data, "first": {"value": "shared..."}},
        ]
        msgs = [
            make_message(
                clock,
                batch_id=batch.id,
                touser=f"o_{i}",
                data=own[i] if i < len(own) else shared.data,
                url=shared.url,
                miniprogram=shared.miniprogram,
                shared=shared,
            )
            for i in range(n)
        ]
        return batch, msgs

    @staticmethod
    def _same_content(got: Message, want: Message) -> None:
        assert (got.data, got.url, got.miniprogram, got.page) == (
            want.data,
            want.url,
            want.miniprogram,
            want.page,
        ), got.id

    async def test_batch_shared_fields_read_back_whole_everywhere(
        self, store: Store, clock: FakeClock
    ) -> None:
        """A batch's shared fields are the batch's; every read of a message (get, lease,
        pages, dead letters, msgid lookup, receipt, requeue) shows its effective data."""
        batch, msgs = self._shared_batch(clock, 5)
        await store.enqueue(msgs, batch=batch)
        want = {m.id: m for m in msgs}
        for m in msgs:
            self._same_content(await must_get(store, m.id), m)
        leased = await store.lease(10, LEASE_S, clock.now())
        assert len(leased) == 5
        for m in leased:
            self._same_content(m, want[m.id])
        first, second, third = (next(x for x in leased if x.id == m.id) for m in msgs[:3])
        assert await store.ack(first.id, first.lease_token, SendResult(501, clock.now()))
        found = await store.find_by_wechat_msgid("app_a", 501)
        assert found is not None
        self._same_content(found, msgs[0])
        receipted = await store.record_receipt("app_a", 501, "success", "ev-501")
        assert receipted is not None
        self._same_content(receipted, msgs[0])
        assert await store.dead(second.id, second.lease_token, ErrorInfo(47003, "bad"))
        assert await store.dead(third.id, third.lease_token, ErrorInfo(47003, "bad"))
        dead, _ = await store.dead_letters()
        assert {m.id for m in dead} == {msgs[1].id, msgs[2].id}
        for m in dead:
            self._same_content(m, want[m.id])
        page, cursor = await store.batch_messages(batch.id, limit=10)
        assert cursor is None and len(page) == 5
        for m in page:
            self._same_content(m, want[m.id])
        assert await store.requeue([msgs[1].id]) == 1
        [again] = await store.lease(10, LEASE_S, clock.now())
        self._same_content(again, msgs[1])

    async def test_streamed_chunks_share_the_loading_batch_fields(
        self, store: Store, clock: FakeClock
    ) -> None:
        """Chunks added to a batch created empty (a streamed upload) read back whole."""
        batch, msgs = self._shared_batch(clock, 4, status="loading")
        assert await store.enqueue([], batch=batch) == []
        await store.enqueue(msgs[:2])
        await store.enqueue(msgs[2:])
        assert await store.set_batch_status(batch.id, "running", expect="loading")
        leased = await store.lease(10, LEASE_S, clock.now())
        want = {m.id: m for m in msgs}
        assert set(want) == {m.id for m in leased}
        for m in leased:
            self._same_content(m, want[m.id])

    async def test_a_batch_message_without_shared_fields_is_kept_whole(
        self, store: Store, clock: FakeClock
    ) -> None:
        """Messages that do not reference shared fields (older callers) keep their data whole,
        even in a batch that has shared fields."""
        batch, msgs = self._shared_batch(clock, 2)
        await store.enqueue(msgs, batch=batch)
        loose = make_message(clock, batch_id=batch.id, data={"only": {"value": "mine"}})
        await store.enqueue([loose])
        got = await must_get(store, loose.id)
        self._same_content(got, loose)

    async def test_batch_rates(self, store: Store, clock: FakeClock) -> None:
        assert await store.batch_rates() == {}
        fast, slow = self._batch(clock, 1), self._batch(clock, 1)
        slow.rate_per_s = 2.5
        for b in (fast, slow):
            await store.enqueue([make_message(clock, batch_id=b.id)], batch=b)
        assert await store.batch_rates() == {slow.id: 2.5}
        assert await store.set_batch_rate(fast.id, 10.0)
        assert await store.set_batch_rate(slow.id, None)
        assert not await store.set_batch_rate("missing", 1.0)
        assert await store.batch_rates() == {fast.id: 10.0}
        got = await store.get_batch(fast.id)
        assert got is not None and got.rate_per_s == 10.0
        got = await store.get_batch(slow.id)
        assert got is not None and got.rate_per_s is None
        assert await store.set_batch_status(fast.id, "cancelled")
        assert await store.batch_rates() == {}

    async def test_rate_change_makes_held_back_messages_due(
        self, store: Store, clock: FakeClock
    ) -> None:
        batch = self._batch(clock, 2)
        batch.rate_per_s = 1.0
        await store.enqueue([make_message(clock, batch_id=batch.id) for _ in range(2)], batch=batch)
        for m in await store.lease(2, LEASE_S, clock.now()):  # the rate sends them back for later
            assert await store.retry(m.id, m.lease_token, clock.now() + 500, None, False)
        assert await store.lease(10, LEASE_S, clock.now()) == []
        assert await store.set_batch_rate(batch.id, 100.0)
        assert len(await store.lease(10, LEASE_S, clock.now())) == 2

    async def test_batch_errcodes_count_its_dead_letters(
        self, store: Store, clock: FakeClock
    ) -> None:
        batch = self._batch(clock, 4)
        await store.enqueue([make_message(clock, batch_id=batch.id) for _ in range(4)], batch=batch)
        leased = await store.lease(4, LEASE_S, clock.now())
        for m, code in zip(leased, (40003, 40003, 43004), strict=False):
            assert await store.dead(m.id, m.lease_token, ErrorInfo(code, "x"))
        assert await store.batch_errcodes(batch.id) == {40003: 2, 43004: 1}
        assert await store.requeue(ids=[leased[2].id]) == 1
        assert await store.batch_errcodes(batch.id) == {40003: 2}
        assert await store.batch_errcodes("missing") == {}

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

    # ------------------------------------------------------------------ status webhooks

    async def _events(self, store: Store, clock: FakeClock) -> dict[str, WebhookEvent]:
        """Every event due now, by message id (leasing them)."""
        events = await store.lease_webhooks(1000, LEASE_S, clock.now())
        assert len({e.id for e in events}) == len(events)
        return {e.message_id: e for e in events}

    async def test_webhook_event_written_with_the_final_status(
        self, store: Store, clock: FakeClock
    ) -> None:
        hooked = await enqueue_one(store, clock, callback_url=HOOK)
        held = await lease_one(store, clock, hooked)
        # The failed attempt's error is not in the success event.
        await store.retry(hooked, held.lease_token, clock.now(), ErrorInfo(-1, "busy"), True)
        held = await lease_one(store, clock, hooked)
        assert await store.ack(hooked, held.lease_token, SendResult(2**63 + 5, clock.now()))
        plain = await enqueue_one(store, clock)
        await send_and_ack(store, clock, plain, 6)
        events = await self._events(store, clock)
        assert set(events) == {hooked}, "no callback_url, no event"
        event = events[hooked]
        assert event.id.startswith("evt_")
        assert (event.app, event.status, event.url) == ("app_a", "sent", HOOK)
        assert event.wechat_msgid == 2**63 + 5
        assert (event.errcode, event.errmsg, event.batch_id) == (None, None, None)
        assert event.occurred_at == pytest.approx(clock.now())
        assert event.attempts == 0
        stats = await store.webhook_stats()
        assert (stats.pending, stats.failed) == (1, 0)

    async def test_webhook_events_for_every_final_status(
        self, store: Store, clock: FakeClock
    ) -> None:
        dead = await enqueue_one(store, clock, callback_url=HOOK)
        expired = await enqueue_one(store, clock, callback_url=HOOK, expire_at=clock.now() + 1)
        cancelled = await enqueue_one(store, clock, callback_url=HOOK, delay_s=60)
        receipted = await enqueue_one(store, clock, callback_url=HOOK)
        early = await enqueue_one(store, clock, callback_url=HOOK)
        held = {m.id: m for m in await store.lease(10, LEASE_S, clock.now())}
        assert await store.dead(dead, held[dead].lease_token, ErrorInfo(40003, "invalid openid"))
        assert await store.expire(expired, held[expired].lease_token)
        assert await store.cancel(cancelled) == CancelOutcome.CANCELLED
        assert await store.ack(receipted, held[receipted].lease_token, SendResult(71, clock.now()))
        assert await store.record_receipt("app_a", 71, "failed:user block", "ev-71")
        # A receipt that beats the ack: one event, for the status the message ends in.
        assert await store.record_receipt("app_a", 72, "success", "ev-72") is None
        ended = await store.ack(early, held[early].lease_token, SendResult(72, clock.now()))
        assert ended == Status.DELIVERED

        events = await store.lease_webhooks(100, LEASE_S, clock.now())
        by_status: dict[str, list[WebhookEvent]] = {}
        for e in events:
            by_status.setdefault(e.status, []).append(e)
        assert {s: [e.message_id for e in es] for s, es in by_status.items()} == {
            "dead": [dead],
            "expired": [expired],
            "cancelled": [cancelled],
            "sent": [receipted],
            "blocked": [receipted],
            "delivered": [early],
        }
        assert (by_status["dead"][0].errcode, by_status["dead"][0].errmsg) == (
            40003,
            "invalid openid",
        )
        assert by_status["blocked"][0].wechat_msgid == 71
        assert by_status["delivered"][0].wechat_msgid == 72

    async def test_webhook_events_for_a_cancelled_batch(
        self, store: Store, clock: FakeClock
    ) -> None:
        batch = self._batch(clock, 3)
        msgs = [make_message(clock, batch_id=batch.id, callback_url=HOOK) for _ in range(3)]
        await store.enqueue(msgs, batch=batch)
        [in_flight] = await store.lease(1, LEASE_S, clock.now())
        assert await store.set_batch_status(batch.id, "cancelled")
        events = await self._events(store, clock)
        assert set(events) == {m.id for m in msgs} - {in_flight.id}
        assert {(e.status, e.batch_id) for e in events.values()} == {("cancelled", batch.id)}
        # The one in flight comes back as a retry: cancelled then, with its event.
        await store.retry(in_flight.id, in_flight.lease_token, clock.now(), None, False)
        await store.lease(10, LEASE_S, clock.now())
        assert (await must_get(store, in_flight.id)).status == Status.CANCELLED
        [last] = await store.lease_webhooks(10, LEASE_S, clock.now())
        assert (last.message_id, last.status) == (in_flight.id, "cancelled")

    async def test_no_webhook_event_for_a_fenced_outcome(
        self, store: Store, clock: FakeClock
    ) -> None:
        msg_id = await enqueue_one(store, clock, callback_url=HOOK)
        held = await lease_one(store, clock, msg_id)
        assert not await store.ack(msg_id, held.lease_token + 1, SendResult(1, clock.now()))
        assert not await store.dead(msg_id, held.lease_token + 1, ErrorInfo(1, "x"))
        assert await store.lease_webhooks(10, LEASE_S, clock.now()) == []
        assert (await store.webhook_stats()).pending == 0

    async def test_webhook_lease_hides_an_event_and_keeps_its_id(
        self, store: Store, clock: FakeClock
    ) -> None:
        msg_id = await enqueue_one(store, clock, callback_url=HOOK)
        assert await store.cancel(msg_id) == CancelOutcome.CANCELLED
        [first] = await store.lease_webhooks(10, LEASE_S, clock.now())
        assert await store.lease_webhooks(10, LEASE_S, clock.now() + LEASE_S - 1) == []
        # The holder vanished (a crash): once its lease ends the same event is due again.
        [again] = await store.lease_webhooks(10, LEASE_S, clock.now() + LEASE_S)
        assert again == first
        assert (await store.webhook_stats()).pending == 1

    async def test_webhook_retry_failed_delivered_and_stats(
        self, store: Store, clock: FakeClock
    ) -> None:
        ids = [await enqueue_one(store, clock, callback_url=HOOK) for _ in range(3)]
        for msg_id in ids:
            await store.cancel(msg_id)
        events = await store.lease_webhooks(10, LEASE_S, clock.now())
        assert len(events) == 3
        retried, failing, delivered = events
        t = clock.now()
        assert await store.webhook_retry(retried.id, t + 5, "HTTP 500")
        assert await store.lease_webhooks(10, LEASE_S, t + 4) == []
        [back] = await store.lease_webhooks(10, LEASE_S, t + 5)
        assert (back.id, back.attempts, back.last_error) == (retried.id, 1, "HTTP 500")
        assert await store.webhook_failed(failing.id, "HTTP 410")
        assert not await store.webhook_retry(failing.id, t, "late"), "failed is final"
        assert await store.webhook_delivered(delivered.id)
        assert not await store.webhook_delivered(delivered.id), "once only"
        assert not await store.webhook_delivered("evt_unknown_1")
        assert not await store.webhook_delivered("nonsense")
        stats = await store.webhook_stats()
        assert (stats.pending, stats.failed, stats.delivered) == (1, 1, 1)
        assert await store.webhook_delivered(retried.id)
        stats = await store.webhook_stats()
        assert (stats.pending, stats.failed, stats.delivered) == (0, 1, 2)

    async def test_webhook_event_ids_are_never_reused(self, store: Store, clock: FakeClock) -> None:
        msg_id = await enqueue_one(store, clock, callback_url=HOOK)
        seen: set[str] = set()
        for _ in range(2):  # dead, requeued, dead again: two events, two ids
            held = await lease_one(store, clock, msg_id)
            assert await store.dead(msg_id, held.lease_token, ErrorInfo(40003, "no"))
            [event] = await store.lease_webhooks(10, LEASE_S, clock.now())
            assert event.id not in seen
            seen.add(event.id)
            assert await store.webhook_delivered(event.id)
            assert await store.requeue([msg_id]) == 1

    # ------------------------------------------------------------------ lifecycle

    async def test_closed_store_is_unavailable(self, store: Store, clock: FakeClock) -> None:
        await store.close()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.enqueue([make_message(clock)])
