"""MessageQueue's contract, part two: what becomes of a leased message (ack, retry, dead,
expire, cancel) and WeChat's receipts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from support.store import (
    HOOK,
    LEASE_S,
    enqueue_one,
    lease_one,
    must_get,
    send_and_ack,
)
from wxgate.clock import FakeClock
from wxgate.models import (
    ErrorInfo,
    SendResult,
    Status,
)
from wxgate.store.base import CancelOutcome, Store


class OutcomesContract:
    """Fenced outcomes of a lease, cancels and receipts (store/base.py's MessageQueue)."""

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
        assert got.status == Status.QUEUED  # held back is not failed: never `retrying`
        again = await lease_one(store, clock, msg_id)
        assert again.attempts == 1

    async def test_release_for_later_is_queued_not_retrying(
        self, store: Store, clock: FakeClock
    ) -> None:
        # What a pause, a batch's rate or quiet hours do: back, due later, not a failure.
        msg_id = await enqueue_one(store, clock)
        held = await lease_one(store, clock, msg_id)
        at = clock.now() + 30
        assert await store.retry(msg_id, held.lease_token, at, None, False)
        got = await must_get(store, msg_id)
        assert (got.status, got.attempts, got.last_errcode, got.not_before) == (
            Status.QUEUED,
            0,
            None,
            at,
        )
        stats = await store.stats()
        assert stats.by_status.get("queued", 0) == 1
        assert stats.by_status.get("retrying", 0) == 0
        assert await store.lease(10, LEASE_S, clock.now() + 29) == []  # still due at `at`
        clock.advance(30)
        assert (await lease_one(store, clock, msg_id)).attempts == 0

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
