"""Quiet hours end to end: the real gateway and simulator, the gateway's clock set to 23:00 in
Shanghai. Messages that may wait are held to 08:00 at ingest, and again at delivery when they
come due inside the window (a retry or scheduled send landing there), with no attempt counted;
urgent ones go at once; a deadline before 08:00 means expired, never sent late."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from support.e2e import APP_A, TEMPLATE, JumpClock, Rig, running_rig, sim_view
from support.wait import wait_until
from wxgate.models import Message, new_id

SH = ZoneInfo("Asia/Shanghai")


def next_23h() -> float:
    """The next 23:00 in Shanghai at least an hour ahead of the real clock."""
    local = datetime.fromtimestamp(time.time() + 3600, SH)
    target = local.replace(hour=23, minute=0, second=0, microsecond=0)
    if target.timestamp() < time.time() + 3600:
        target += timedelta(days=1)
    return target.timestamp()


async def _status(rig: Rig, msg_id: str, *status: str, timeout_s: float = 10.0) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        view = await rig.api.message(msg_id)
        return view if view["status"] in status else None

    result: dict[str, Any] = await wait_until(
        reached, timeout_s, f"{msg_id} {status}", progress=lambda: rig.api.message(msg_id)
    )
    return result


async def test_held_overnight_at_ingest_and_at_delivery(tmp_path: Path) -> None:
    clock = JumpClock()
    night = next_23h()
    clock.jump(night - time.time())
    morning = night + 9 * 3600  # 08:00 the next day
    # The simulator's receipts carry real time, up to 25 h behind the gateway's jumped clock:
    # opt in to a callback window that wide (the default, 300 s, would refuse them).
    quiet = {
        "quiet_hours": "22:00-08:00",
        "timezone": "Asia/Shanghai",
        "callback_max_skew_s": 93_600.0,
    }
    async with running_rig(tmp_path, gw_clock=clock, app_overrides=quiet) as rig:
        # At ingest: normal and low wait for 08:00, urgent (and its alias high) go now.
        normal = await rig.api.send("o_normal")
        low = await rig.api.send("o_low", priority="low")
        urgent = await rig.api.send("o_urgent", priority="urgent")
        high = await rig.api.send("o_high", priority="high")
        status, batch = await rig.api.post(
            "/v1/batches",
            {
                "template_id": TEMPLATE,
                "data": {"thing1": "sale"},
                "recipients": [{"touser": "o_b"}],
            },
        )
        assert status == 202
        # Due at 08:00 but useless after 06:00: expired at once, never sent.
        status, late = await rig.api.post(
            "/v1/messages",
            {
                "touser": "o_late",
                "template_id": TEMPLATE,
                "data": {"x": "y"},
                "expire_at": night + 7 * 3600,
            },
        )
        assert status == 202 and late["status"] == "expired"
        for msg_id in (normal, low):
            view = await rig.api.message(msg_id)
            assert view["status"] == "scheduled" and view["not_before"] == morning
        await _status(rig, urgent, "delivered")
        await _status(rig, high, "delivered")
        stored = await rig.runtime.store.get(high) if rig.runtime.store is not None else None
        assert stored is not None and stored.priority == "urgent"  # high is urgent's alias

        # At delivery: rows that come due inside the window (as a retry or a scheduled send
        # would), written to the store directly so ingest has no say.
        assert rig.runtime.store is not None
        now = clock.now()
        due = [
            _message("o_due_normal", now, "normal"),
            _message("o_due_expiring", now, "normal", expire_at=night + 3600),
            _message("o_due_urgent", now, "urgent"),
        ]
        await rig.runtime.store.enqueue(due)
        assert rig.runtime.pool is not None
        rig.runtime.pool.wake()
        await _status(rig, due[2].id, "delivered")
        await _status(rig, due[1].id, "expired")

        # Held to the window's end: back as `queued` (held back is not a failed send).
        async def held_back() -> dict[str, Any] | None:
            view = await rig.api.message(due[0].id)
            return view if view["not_before"] == morning else None

        held = await wait_until(held_back, 10, "the normal message to be held to 08:00")
        assert held["status"] == "queued"
        assert held["attempts"] == 0 and held["last_errcode"] is None

        seen = await sim_view(rig.sim)
        assert sorted(seen.ids) == sorted([urgent, high, due[2].id])

        # 08:00: everything held goes, once each, with one attempt. (The simulator's receipts
        # carry its own, unjumped time, so "sent" is as far as these get.)
        clock.jump(morning - clock.now() + 1)
        rig.runtime.pool.wake()
        for msg_id in (normal, low, due[0].id):
            view = await _status(rig, msg_id, "sent", "delivered")
            assert view["attempts"] == 1 and view["sent_at"] >= morning
        _, progress = await rig.api.get(f"/v1/batches/{batch['id']}")
        assert progress["total"] == 1
        await wait_until(lambda: rig.sim.state.delivered >= 7, 10, "7 deliveries")
        seen = await sim_view(rig.sim)
        assert len(seen.ids) == len(seen.distinct) == 7  # 3 at night, 3 held + the batch's one
        assert not {late["id"], due[1].id} & seen.distinct
        text = await rig.api.metrics_text()
        assert 'wxgate_messages_released_total{app="a",reason="quiet_hours"} 1.0' in text


def _message(touser: str, now: float, priority: str, expire_at: float | None = None) -> Message:
    return Message(
        id=new_id(),
        app=APP_A.name,
        touser=touser,
        template_id=TEMPLATE,
        data={"thing1": {"value": "x"}},
        priority=priority,
        created_at=now,
        not_before=now,
        expire_at=expire_at,
    )
