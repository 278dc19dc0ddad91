"""Intake semantics end to end: idempotency keys, scheduled sends (send_at) and deadlines
(expire_at), as WeChat ends up seeing them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from support.e2e import DATA, TEMPLATE, Rig, running_rig, wait_status
from support.wait import wait_until


async def _wait_delivered(rig: Rig, msg_id: str, timeout_s: float = 10.0) -> dict:
    async def done() -> dict | None:
        view = await rig.api.message(msg_id)
        return view if view["status"] == "delivered" else None

    return await wait_until(done, timeout_s, f"{msg_id} delivered", interval_s=0.05)


async def test_one_idempotency_key_makes_one_message_and_one_delivery(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        body = {"touser": "o_alice", "template_id": TEMPLATE, "data": DATA}
        status, first = await rig.api.post("/v1/messages", body, {"Idempotency-Key": "order-1"})
        assert status == 202
        msg_id = first["id"]
        # The same key as a field, and as both: still the one message.
        for again, headers in (
            ({**body, "idempotency_key": "order-1"}, None),
            ({**body, "idempotency_key": "order-1"}, {"Idempotency-Key": "order-1"}),
        ):
            status, answer = await rig.api.post("/v1/messages", again, headers)
            assert status == 202, answer
            assert answer["id"] == msg_id
        # With another body it is a mistake, said as such (Stripe's rule), and nothing is sent.
        other = {**body, "touser": "o_bob"}
        status, answer = await rig.api.post("/v1/messages", other, {"Idempotency-Key": "order-1"})
        assert status == 409 and answer["error"] == "idempotency_conflict", answer
        assert "'order-1'" in answer["message"] and msg_id in answer["message"]

        # Twenty callers racing with one key: one message between them.
        racing = await asyncio.gather(
            *(
                rig.api.post("/v1/messages", {**body, "idempotency_key": "order-2"})
                for _ in range(20)
            )
        )
        assert {s for s, _ in racing} == {202}
        race_ids = {a["id"] for _, a in racing}
        assert len(race_ids) == 1 and msg_id not in race_ids

        view = await _wait_delivered(rig, msg_id)
        assert view["idempotency_key"] == "order-1"
        assert view["touser"] == "o_alice"
        await _wait_delivered(rig, race_ids.pop())
        stats = await rig.api.stats()
        assert sum(stats["by_status"].values()) == 2
        rows = await rig.sim.deliveries()
        assert len(rows) == 2
        assert [r["openid"] for r in rows if r["client_msg_id"] == msg_id] == ["o_alice"]


async def test_scheduled_message_waits_for_send_at_then_goes_promptly(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        send_at = time.time() + 1.5
        status, answer = await rig.api.post(
            "/v1/messages",
            {"touser": "o_alice", "template_id": TEMPLATE, "data": DATA, "send_at": send_at},
        )
        assert status == 202
        assert answer["status"] == "scheduled"
        msg_id = answer["id"]
        now_msg = await rig.api.send("o_bob")  # the pipeline is live meanwhile

        await wait_until(
            lambda: rig.sim.state.delivered >= 1, 5, "the unscheduled message", interval_s=0.02
        )
        view = await rig.api.message(msg_id)
        assert view["status"] == "scheduled"
        assert view["not_before"] == send_at
        while time.time() < send_at - 0.05:
            assert not await rig.sim.deliveries(client_msg_id=msg_id), "sent before send_at"
            await asyncio.sleep(0.05)

        view = await _wait_delivered(rig, msg_id)
        (row,) = await rig.sim.deliveries(client_msg_id=msg_id)
        assert send_at <= row["time"] <= send_at + 1.0, (
            f"reached WeChat {row['time'] - send_at}s late"
        )
        assert send_at <= view["sent_at"]
        assert [r["client_msg_id"] for r in await rig.sim.deliveries()] == [now_msg, msg_id]


async def test_message_past_its_expire_at_is_expired_and_never_sent(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        status, answer = await rig.api.post(
            "/v1/messages",
            {
                "touser": "o_alice",
                "template_id": TEMPLATE,
                "data": DATA,
                "expire_at": time.time() - 10,
            },
        )
        assert status == 202
        assert answer["status"] == "expired"
        expired = answer["id"]
        # Messages accepted after it go out; by then the workers have passed it by.
        later = await rig.api.send_many(20, lambda i: f"o_user{i}", concurrency=4)
        await wait_status(rig.api, "delivered", 20, timeout_s=10)
        await asyncio.sleep(0.3)

        view = await rig.api.message(expired)
        assert view["status"] == "expired"
        assert view["wechat_msgid"] is None and view["sent_at"] is None
        rows = await rig.sim.deliveries()
        assert {r["client_msg_id"] for r in rows} == set(later)
        assert rig.sim.state.requests == 20 + 1, "20 sends and one token fetch, nothing else"
        counts = await rig.api.by_status()
        assert counts["expired"] == 1 and counts["delivered"] == 20
