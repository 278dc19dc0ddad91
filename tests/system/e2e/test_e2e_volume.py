"""20,000 single messages through the HTTP API reach WeChat exactly once, and each one's
receipt turns it from `sent` into `delivered`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from support.e2e import APP_A, running_rig, wait_status

N = 20_000


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_20000_messages_each_reach_wechat_once_and_are_delivered(tmp_path: Path) -> None:
    async with running_rig(tmp_path, latency_ms=2.0) as rig:
        ids = await rig.api.send_many(N, lambda i: f"o_user{i % 997}", concurrency=64)
        accepted = set(ids)
        assert len(accepted) == N, "every 202 carries its own message id"

        counts = await wait_status(rig.api, "delivered", N, timeout_s=120)
        assert counts["delivered"] == N
        assert sum(counts.values()) == N, f"nothing but the accepted messages is stored: {counts}"
        for bad in ("dead", "failed", "blocked", "expired", "cancelled"):
            assert counts.get(bad, 0) == 0, counts

        # What WeChat saw, over the simulator's own HTTP API.
        async with rig.api.session.get(f"{rig.sim.base_url}/_sim/deliveries") as resp:
            assert resp.status == 200
            rows = await resp.json()
        async with rig.api.session.get(f"{rig.sim.base_url}/_sim/stats") as resp:
            sim_stats = await resp.json()
        delivered_ids = [r["client_msg_id"] for r in rows]
        assert len(delivered_ids) == N, f"{len(delivered_ids)} deliveries for {N} messages"
        assert set(delivered_ids) == accepted, "the simulator got exactly the accepted ids"
        assert not await rig.sim.duplicates()
        assert {r["app"] for r in rows} == {APP_A.appid}
        # Re-sends WeChat dropped by client_msg_id are counted apart from user-visible ones.
        assert sim_stats["delivered"] == N
        assert sim_stats["accepted"] == N
        assert sim_stats["deduplicated"] >= 0
        assert sim_stats["receipts_failed"] == 0 and sim_stats["receipts_dropped"] == 0

        # Spot-check: the gateway's record of each message matches WeChat's.
        msgid_of = {r["client_msg_id"]: r["msgid"] for r in rows}
        sample = random.Random(7).sample(ids, 200)
        for view in await rig.api.messages(sample):
            assert view["status"] == "delivered", view
            assert view["receipt"] == "success", view
            assert view["wechat_msgid"] == msgid_of[view["id"]], view
            assert view["wechat_msgid"] > 2**32, "64-bit msgids survive the round trip"
            assert view["attempts"] == 1, "a first-time success is one attempt"
            assert view["last_errcode"] is None
            assert view["created_at"] <= view["sent_at"] <= view["finished_at"], view
