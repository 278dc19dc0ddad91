"""BatchRecords' contract: batch records, held and cancelled batches, shared fields, rates."""

from __future__ import annotations

import pytest

from support.store import (
    HOOK,
    LEASE_S,
    enqueue_one,
    lease_one,
    make_batch,
    make_message,
    must_get,
    same_content,
    shared_batch,
)
from wxgate.clock import FakeClock
from wxgate.errors import StoreError
from wxgate.models import (
    BatchStatus,
    ErrorInfo,
    Message,
    SendResult,
    Status,
)
from wxgate.store.base import Store


class BatchContract:
    """store/base.py's BatchRecords rules, and how batches change what lease() hands out."""

    # ------------------------------------------------------------------ batches

    async def test_batch_created_with_its_messages(self, store: Store, clock: FakeClock) -> None:
        batch = make_batch(clock, 4)
        msgs = [make_message(clock, batch_id=batch.id, touser=f"o_{i}") for i in range(4)]
        res = await store.enqueue(msgs, batch=batch)
        assert all(r.created for r in res)
        got = await store.get_batch(batch.id)
        assert got is not None
        assert (got.id, got.app, got.total, got.status) == (batch.id, "app_a", 4, "running")
        assert await store.get_batch("missing") is None
        assert (await store.batch_counts(batch.id)).get("queued", 0) == 4

    async def test_batch_counts_each_message_once(self, store: Store, clock: FakeClock) -> None:
        batch = make_batch(clock, 6)
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
        batch = make_batch(clock, 3)
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
        batch = make_batch(clock, 1)
        msg = make_message(clock, batch_id=batch.id)
        await store.enqueue([msg], batch=batch)
        held = await lease_one(store, clock, msg.id)
        assert await store.set_batch_status(batch.id, "paused")
        assert await store.retry(msg.id, held.lease_token, clock.now(), ErrorInfo(-1, "x"), True)
        assert await store.lease(10, LEASE_S, clock.now() + 100) == []
        assert await store.set_batch_status(batch.id, "running")
        assert [m.id for m in await store.lease(10, LEASE_S, clock.now() + 100)] == [msg.id]

    async def test_cancelled_batch(self, store: Store, clock: FakeClock) -> None:
        batch = make_batch(clock, 5)
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
        resumed, cancelled = make_batch(clock, n), make_batch(clock, n)
        for batch in (resumed, cancelled):
            batch.status = BatchStatus.LOADING
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
        batch = make_batch(clock, n)
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
        batch = make_batch(clock, 1_500)
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
            batch = make_batch(clock, total, app="app_b" if total == 2 else "app_a")
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

    async def test_loading_batch_holds_chunks_until_it_runs(
        self, store: Store, clock: FakeClock
    ) -> None:
        batch = make_batch(clock, 0)
        batch.status = BatchStatus.LOADING
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
            batch = make_batch(clock, 0)
            batch.status = BatchStatus.LOADING
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
        batch = make_batch(clock, 25)
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

    async def test_batch_shared_fields_read_back_whole_everywhere(
        self, store: Store, clock: FakeClock
    ) -> None:
        """A batch's shared fields are the batch's; every read of a message (get, lease,
        pages, dead letters, msgid lookup, receipt, requeue) shows its effective data."""
        batch, msgs = shared_batch(clock, 5)
        await store.enqueue(msgs, batch=batch)
        want = {m.id: m for m in msgs}
        for m in msgs:
            same_content(await must_get(store, m.id), m)
        leased = await store.lease(10, LEASE_S, clock.now())
        assert len(leased) == 5
        for m in leased:
            same_content(m, want[m.id])
        first, second, third = (next(x for x in leased if x.id == m.id) for m in msgs[:3])
        assert await store.ack(first.id, first.lease_token, SendResult(501, clock.now()))
        found = await store.find_by_wechat_msgid("app_a", 501)
        assert found is not None
        same_content(found, msgs[0])
        receipted = await store.record_receipt("app_a", 501, "success", "ev-501")
        assert receipted is not None
        same_content(receipted, msgs[0])
        assert await store.dead(second.id, second.lease_token, ErrorInfo(47003, "bad"))
        assert await store.dead(third.id, third.lease_token, ErrorInfo(47003, "bad"))
        dead, _ = await store.dead_letters()
        assert {m.id for m in dead} == {msgs[1].id, msgs[2].id}
        for m in dead:
            same_content(m, want[m.id])
        page, cursor = await store.batch_messages(batch.id, limit=10)
        assert cursor is None and len(page) == 5
        for m in page:
            same_content(m, want[m.id])
        assert await store.requeue([msgs[1].id]) == 1
        [again] = await store.lease(10, LEASE_S, clock.now())
        same_content(again, msgs[1])

    async def test_streamed_chunks_share_the_loading_batch_fields(
        self, store: Store, clock: FakeClock
    ) -> None:
        """Chunks added to a batch created empty (a streamed upload) read back whole."""
        batch, msgs = shared_batch(clock, 4, status=BatchStatus.LOADING)
        assert await store.enqueue([], batch=batch) == []
        await store.enqueue(msgs[:2])
        await store.enqueue(msgs[2:])
        assert await store.set_batch_status(batch.id, "running", expect="loading")
        leased = await store.lease(10, LEASE_S, clock.now())
        want = {m.id: m for m in msgs}
        assert set(want) == {m.id for m in leased}
        for m in leased:
            same_content(m, want[m.id])

    async def test_a_batch_message_without_shared_fields_is_kept_whole(
        self, store: Store, clock: FakeClock
    ) -> None:
        """Messages that do not reference shared fields (older callers) keep their data whole,
        even in a batch that has shared fields."""
        batch, msgs = shared_batch(clock, 2)
        await store.enqueue(msgs, batch=batch)
        loose = make_message(clock, batch_id=batch.id, data={"only": {"value": "mine"}})
        await store.enqueue([loose])
        got = await must_get(store, loose.id)
        same_content(got, loose)

    async def test_batch_rates(self, store: Store, clock: FakeClock) -> None:
        assert await store.batch_rates() == {}
        fast, slow = make_batch(clock, 1), make_batch(clock, 1)
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
        batch = make_batch(clock, 2)
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
        batch = make_batch(clock, 4)
        await store.enqueue([make_message(clock, batch_id=batch.id) for _ in range(4)], batch=batch)
        leased = await store.lease(4, LEASE_S, clock.now())
        for m, code in zip(leased, (40003, 40003, 43004), strict=False):
            assert await store.dead(m.id, m.lease_token, ErrorInfo(code, "x"))
        assert await store.batch_errcodes(batch.id) == {40003: 2, 43004: 1}
        assert await store.requeue(ids=[leased[2].id]) == 1
        assert await store.batch_errcodes(batch.id) == {40003: 2}
        assert await store.batch_errcodes("missing") == {}
