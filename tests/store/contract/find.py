"""MessageQueue.find_messages' contract: newest first, every filter, cursor pages that never
repeat or skip a message, and a page that looks at a bounded number of messages."""

from __future__ import annotations

import pytest

from support.store import (
    enqueue_one,
    lease_one,
    make_batch,
    make_dead,
    make_message,
    send_and_ack,
)
from wxgate.clock import FakeClock
from wxgate.errors import ValidationError
from wxgate.models import Status
from wxgate.store import search
from wxgate.store.base import Store
from wxgate.store.search import MessageQuery


async def _all_pages(store: Store, query: MessageQuery, limit: int) -> tuple[list[str], int]:
    """Every id the query finds, paging to the end; and how many pages it took."""
    ids: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await store.find_messages(query, cursor=cursor, limit=limit)
        pages += 1
        ids += [m.id for m in page]
        if cursor is None:
            return ids, pages
        assert pages < 1000, "the cursor never ended"


class FindContract:
    """store/base.py's find_messages rules."""

    async def test_newest_first_with_whole_messages(self, store: Store, clock: FakeClock) -> None:
        ids = []
        for _ in range(3):
            ids.append(await enqueue_one(store, clock, touser="o_find"))
            clock.advance(1)
        page, cursor = await store.find_messages(MessageQuery(), limit=10)
        assert [m.id for m in page] == ids[::-1]
        assert cursor is None
        assert page[0].touser == "o_find" and page[0].data["first"] == {"value": "hello"}

    async def test_cursor_pages_neither_repeat_nor_skip(
        self, store: Store, clock: FakeClock
    ) -> None:
        ids = []
        for k in range(7):
            ids.append(await enqueue_one(store, clock))
            if k % 2:  # some share their created_at: the id breaks the tie
                clock.advance(1)
        found, pages = await _all_pages(store, MessageQuery(), limit=2)
        assert sorted(found) == sorted(ids) and len(found) == len(set(found))
        assert pages == 4
        times = [(await store.get(i)) for i in found]
        keys = [(m.created_at, m.id) for m in times if m is not None]
        assert keys == sorted(keys, reverse=True)

    async def test_filters_by_touser_app_status_and_batch(
        self, store: Store, clock: FakeClock
    ) -> None:
        mine = await enqueue_one(store, clock, "app_a", touser="o_alice")
        await enqueue_one(store, clock, "app_a", touser="o_bob")
        other_app = await enqueue_one(store, clock, "app_b", touser="o_alice")
        sent = await enqueue_one(store, clock, "app_a", touser="o_bob")
        await send_and_ack(store, clock, sent, 7001)
        [dead] = await make_dead(store, clock, "app_b", 45009, 1)

        async def ids(**kw: object) -> set[str]:
            page, _ = await store.find_messages(MessageQuery(**kw), limit=50)  # type: ignore[arg-type]
            return {m.id for m in page}

        assert await ids(touser="o_alice") == {mine, other_app}
        assert await ids(touser="o_alice", app="app_a") == {mine}
        assert await ids(status=Status.SENT) == {sent}
        assert await ids(app="app_b", status=Status.DEAD) == {dead}
        assert await ids(touser="o_nobody") == set()

    async def test_batch_filter(self, store: Store, clock: FakeClock) -> None:
        batch = make_batch(clock, 2)
        msgs = [make_message(clock, batch_id=batch.id, touser=f"o_b{k}") for k in range(2)]
        await store.enqueue(msgs, batch)
        await enqueue_one(store, clock)
        page, _ = await store.find_messages(MessageQuery(batch_id=batch.id), limit=50)
        assert {m.id for m in page} == {m.id for m in msgs}

    async def test_since_and_until_bound_created_at(self, store: Store, clock: FakeClock) -> None:
        t0 = clock.now()
        ids = []
        for _ in range(5):
            ids.append(await enqueue_one(store, clock))
            clock.advance(10)
        query = MessageQuery(since=t0 + 10, until=t0 + 40)  # created at +10, +20, +30
        found, _ = await _all_pages(store, query, limit=2)
        assert found == [ids[3], ids[2], ids[1]]

    async def test_a_rare_filter_pages_with_a_bounded_look(
        self, store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A status (no backend indexes it): an app's messages may have an index of their own.
        monkeypatch.setattr(search, "SCAN_BUDGET", 5)
        rare = await enqueue_one(store, clock, "app_a")
        assert await store.cancel(rare) == "cancelled"
        clock.advance(1)
        for _ in range(12):
            await enqueue_one(store, clock, "app_a")
        query = MessageQuery(status=Status.CANCELLED)
        page, cursor = await store.find_messages(query, limit=10)
        assert page == [] and cursor is not None  # looked at 5, found none, more to look at
        found, pages = await _all_pages(store, query, limit=10)
        assert found == [rare] and pages >= 3

    async def test_finds_leased_messages_with_their_status(
        self, store: Store, clock: FakeClock
    ) -> None:
        msg_id = await enqueue_one(store, clock, touser="o_lease")
        await lease_one(store, clock, msg_id)
        page, _ = await store.find_messages(MessageQuery(touser="o_lease"), limit=5)
        assert [(m.id, m.status) for m in page] == [(msg_id, Status.SENDING)]

    async def test_a_foreign_cursor_is_a_validation_error(self, store: Store) -> None:
        with pytest.raises(ValidationError):
            await store.find_messages(MessageQuery(), cursor="nonsense", limit=5)
