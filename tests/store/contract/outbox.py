"""WebhookOutbox's contract: status events written with the change, leased, retried, given up."""

from __future__ import annotations

import pytest

from support.store import (
    HOOK,
    LEASE_S,
    due_events,
    enqueue_one,
    lease_one,
    make_batch,
    make_message,
    must_get,
    send_and_ack,
)
from wxgate.clock import FakeClock
from wxgate.models import (
    ErrorInfo,
    SendResult,
    Status,
    WebhookEvent,
)
from wxgate.store.base import CancelOutcome, Store


class OutboxContract:
    """store/base.py's WebhookOutbox rules (the transactional outbox)."""

    # ------------------------------------------------------------------ status webhooks

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
        events = await due_events(store, clock)
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
        batch = make_batch(clock, 3)
        msgs = [make_message(clock, batch_id=batch.id, callback_url=HOOK) for _ in range(3)]
        await store.enqueue(msgs, batch=batch)
        [in_flight] = await store.lease(1, LEASE_S, clock.now())
        assert await store.set_batch_status(batch.id, "cancelled")
        events = await due_events(store, clock)
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

    # ------------------------------------------------------------------ trace context

    async def test_trace_context_kept_with_the_message_and_its_events(
        self, store: Store, clock: FakeClock
    ) -> None:
        """Message.trace round-trips through every read, and every status event of the
        message carries it (the webhook POST passes it on as traceparent/tracestate)."""
        trace = f"00-{'4b' * 16}-{'00f0' * 4}-01\nvendor=abc,other@x=1"
        single = await enqueue_one(store, clock, callback_url=HOOK, trace=trace)
        plain = await enqueue_one(store, clock, callback_url=HOOK)
        batch = make_batch(clock, 2)
        members = [
            make_message(clock, batch_id=batch.id, callback_url=HOOK, trace=trace) for _ in range(2)
        ]
        await store.enqueue(members, batch=batch)
        assert (await must_get(store, single)).trace == trace
        assert (await must_get(store, plain)).trace is None
        leased = {m.id: m for m in await store.lease(10, LEASE_S, clock.now())}
        assert leased[single].trace == trace and leased[plain].trace is None
        assert {leased[m.id].trace for m in members} == {trace}
        page, _ = await store.batch_messages(batch.id)
        assert {m.trace for m in page} == {trace}
        assert await store.ack(single, leased[single].lease_token, SendResult(81, clock.now()))
        assert await store.ack(plain, leased[plain].lease_token, SendResult(82, clock.now()))
        assert await store.record_receipt("app_a", 81, "success", "ev-81")
        a, b = members
        assert await store.dead(a.id, leased[a.id].lease_token, ErrorInfo(40003, "bad openid"))
        [dead], _ = await store.dead_letters()
        assert dead.trace == trace
        await store.retry(b.id, leased[b.id].lease_token, clock.now() + 60, None, False)
        assert await store.set_batch_status(batch.id, "cancelled")  # the batch-cancel event
        events = await store.lease_webhooks(100, LEASE_S, clock.now())
        got = sorted((e.message_id, e.status, e.trace) for e in events)
        assert got == sorted(
            [
                (single, "sent", trace),
                (single, "delivered", trace),
                (plain, "sent", None),
                (a.id, "dead", trace),
                (b.id, "cancelled", trace),
            ]
        )
