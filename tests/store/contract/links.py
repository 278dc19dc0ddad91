"""ReceiptLinks' contract: the per-key blob a receipt without a msgid is linked through
(compare-and-set, expiry by the store's clock), and record_receipt's `message_id`."""

from __future__ import annotations

from support.store import HOOK, enqueue_one, lease_one, must_get, send_and_ack
from wxgate.clock import FakeClock
from wxgate.models import SendResult, Status
from wxgate.store.base import Store


async def _sent_without_msgid(store: Store, clock: FakeClock, **kw: object) -> str:
    msg_id = await enqueue_one(store, clock, **kw)
    held = await lease_one(store, clock, msg_id)
    assert await store.ack(msg_id, held.lease_token, SendResult(None, clock.now()))
    return msg_id


class LinksContract:
    """store/base.py's ReceiptLinks rules."""

    async def test_compare_and_set(self, store: Store, clock: FakeClock) -> None:
        now = clock.now()
        assert await store.get_link("app_a", "o1:tpl", now) == (0, None)
        assert not await store.put_link("app_a", "o1:tpl", 1, b"x", 60, now), "absent is 0"
        assert await store.put_link("app_a", "o1:tpl", 0, b"first", 60, now)
        assert await store.get_link("app_a", "o1:tpl", now) == (1, b"first")
        assert not await store.put_link("app_a", "o1:tpl", 0, b"lost", 60, now), "stale version"
        assert await store.put_link("app_a", "o1:tpl", 1, b"\x00second", 60, now)
        assert await store.get_link("app_a", "o1:tpl", now) == (2, b"\x00second")
        # Other keys and apps are apart.
        assert await store.get_link("app_a", "o2:tpl", now) == (0, None)
        assert await store.get_link("app_b", "o1:tpl", now) == (0, None)
        assert not await store.put_link("app_a", "o1:tpl", 1, None, 60, now)
        assert await store.put_link("app_a", "o1:tpl", 2, None, 60, now), "deleted"
        assert await store.get_link("app_a", "o1:tpl", now) == (0, None)
        assert await store.put_link("app_a", "o1:tpl", 0, b"again", 60, now)

    async def test_expiry_by_the_stores_clock(self, store: Store, clock: FakeClock) -> None:
        assert await store.put_link("app_a", "o1:tpl", 0, b"x", 30, clock.now())
        clock.advance(29)
        assert await store.get_link("app_a", "o1:tpl", clock.now()) == (1, b"x")
        clock.advance(2)
        assert await store.get_link("app_a", "o1:tpl", clock.now()) == (0, None)
        assert not await store.put_link("app_a", "o1:tpl", 1, b"y", 30, clock.now())
        assert await store.put_link("app_a", "o1:tpl", 0, b"y", 30, clock.now())

    async def test_linked_receipt_sets_the_msgid(self, store: Store, clock: FakeClock) -> None:
        first = await _sent_without_msgid(store, clock, callback_url=HOOK)
        second = await _sent_without_msgid(store, clock)
        updated = await store.record_receipt(
            "app_a", 2**63 + 9, "success", "o_user_1:1:9", "o_user_1", message_id=second
        )
        assert updated is not None and updated.id == second
        got = await must_get(store, second)
        assert (got.status, got.wechat_msgid) == (Status.DELIVERED, 2**63 + 9)
        assert (await store.find_by_wechat_msgid("app_a", 2**63 + 9)) is not None
        assert (await must_get(store, first)).status == Status.SENT, "the other is untouched"
        # The same event again changes nothing.
        again = await store.record_receipt(
            "app_a", 2**63 + 9, "success", "o_user_1:1:9", "o_user_1", message_id=first
        )
        assert again is None
        assert (await must_get(store, first)).status == Status.SENT

    async def test_linked_receipt_needs_a_sent_message_without_msgid(
        self, store: Store, clock: FakeClock
    ) -> None:
        with_msgid = await enqueue_one(store, clock)
        await send_and_ack(store, clock, with_msgid, 555)
        other_user = await _sent_without_msgid(store, clock, touser="o_user_2")
        for n, target in enumerate((with_msgid, other_user, "unknown")):
            kept = await store.record_receipt(
                "app_a", 900 + n, "success", f"ev-{n}", "o_user_1", message_id=target
            )
            assert kept is None
        assert (await must_get(store, with_msgid)).wechat_msgid == 555
        got = await must_get(store, other_user)
        assert (got.status, got.wechat_msgid) == (Status.SENT, None)
        # A receipt kept that way waits by its msgid, as any early receipt does.
        late = await enqueue_one(store, clock)
        await send_and_ack(store, clock, late, 900)
        assert (await must_get(store, late)).status == Status.DELIVERED
