"""What every role's contract uses: messages and batches made on the test's clock, and the
few steps (enqueue, lease, ack, read) most tests start with."""

from __future__ import annotations

from typing import Any

from wxgate.clock import FakeClock
from wxgate.models import (
    Batch,
    BatchStatus,
    ErrorInfo,
    Message,
    MiniProgram,
    SendResult,
    SharedFields,
    WebhookEvent,
    new_id,
)
from wxgate.store.base import Store

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


async def make_dead(
    store: Store, clock: FakeClock, app: str, errcode: int, count: int
) -> list[str]:
    ids = []
    for _ in range(count):
        msg_id = await enqueue_one(store, clock, app)
        held = await lease_one(store, clock, msg_id)
        assert await store.dead(msg_id, held.lease_token, ErrorInfo(errcode, f"err {errcode}"))
        ids.append(msg_id)
        clock.advance(1)
    return ids


def make_batch(clock: FakeClock, total: int, app: str = "app_a") -> Batch:
    return Batch(id=new_id(), app=app, template_id="tpl_order", total=total, created_at=clock.now())


def shared_batch(
    clock: FakeClock, n: int, status: BatchStatus = BatchStatus.RUNNING
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
    batch = make_batch(clock, n)
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


def same_content(got: Message, want: Message) -> None:
    assert (got.data, got.url, got.miniprogram, got.page) == (
        want.data,
        want.url,
        want.miniprogram,
        want.page,
    ), got.id


async def due_events(store: Store, clock: FakeClock) -> dict[str, WebhookEvent]:
    """Every event due now, by message id (leasing them)."""
    events = await store.lease_webhooks(1000, LEASE_S, clock.now())
    assert len({e.id for e in events}) == len(events)
    return {e.message_id: e for e in events}
