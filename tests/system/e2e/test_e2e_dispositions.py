"""Each WeChat disposition end to end: HTTP API -> store -> workers -> simulator -> receipts.

drop (40003) dead-letters at once; retry (-1) sends again with backoff; throttle (45009)
pauses the app until the Asia/Shanghai midnight and loses nothing; an expired or revoked
token is refreshed once without failing a message; an outage opens the breaker and the
backlog drains after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from support.e2e import APP_A, JumpClock, Rig, cpu_s, running_rig, sim_view, wait_status
from support.wait import wait_until

PENDING = {"queued", "scheduled", "retrying"}


async def _final(rig: Rig, msg_id: str, status: str, timeout_s: float = 15.0) -> dict:
    async def reached() -> dict | None:
        view = await rig.api.message(msg_id)
        return view if view["status"] == status else None

    return await wait_until(
        reached, timeout_s, f"{msg_id} to be {status}", progress=lambda: rig.api.message(msg_id)
    )


async def test_invalid_openid_is_dead_at_once_with_errcode_40003(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        t0 = time.time()
        bad = await rig.api.send("o_invalid_1")
        good = await rig.api.send("o_alice")
        view = await _final(rig, bad, "dead")
        assert time.time() - t0 < 5.0, "a drop is not retried with backoff"
        assert view["last_errcode"] == 40003
        assert "invalid openid" in view["last_errmsg"]
        assert view["attempts"] == 1
        assert view["wechat_msgid"] is None

        # WeChat was asked once: no retry storm on a permanent error.
        assert rig.sim.state.errors[40003] == 1
        status, page = await rig.api.get("/v1/dead-letters?errcode=40003")
        assert status == 200
        assert [m["id"] for m in page["items"]] == [bad]

        # The app keeps working for everyone else.
        await _final(rig, good, "delivered")
        assert (await sim_view(rig.sim)).ids == [good]


async def test_system_busy_twice_is_sent_on_the_third_send(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        msg_id = await rig.api.send("o_busy_1")
        view = await _final(rig, msg_id, "delivered")
        # attempts counts the sends that count against max_attempts: two -1s and the success.
        assert view["attempts"] == 3, view
        assert view["receipt"] == "success"
        # The simulator saw three requests for this client_msg_id: 2 errors, then 1 delivery.
        assert rig.sim.state.tries[(APP_A.appid, "o_busy_1", msg_id)] == 3
        assert rig.sim.state.errors[-1] == 2
        rows = await rig.sim.deliveries(client_msg_id=msg_id)
        assert len(rows) == 1
        assert view["wechat_msgid"] == rows[0]["msgid"]


def _next_shanghai_midnight(epoch_s: float) -> float:
    day = 86_400.0
    return ((epoch_s + 8 * 3600) // day + 1) * day - 8 * 3600


@pytest.mark.timeout(60)
async def test_daily_quota_pauses_the_app_until_shanghai_midnight_and_loses_nothing(
    tmp_path: Path,
) -> None:
    # One clock for both sides: WeChat's day rolls over when the gateway's does.
    clock = JumpClock()
    async with running_rig(tmp_path, gw_clock=clock, sim_clock=clock) as rig:
        quota = await rig.api.send("o_quota_1")

        async def paused() -> dict | None:
            stats = await rig.api.stats()
            pauses = [p for p in stats["pauses"] if p["app"] == APP_A.name]
            return pauses[0] if pauses else None

        pause = await wait_until(paused, 10, "app a to pause", progress=rig.api.stats)
        assert pause["errcode"] == 45009
        midnight = _next_shanghai_midnight(clock.now())
        assert abs(pause["until"] - midnight) < 1.0, "45009 lasts until 00:00 Beijing time"
        stats = await rig.api.stats()
        assert stats["delivery"]["apps"][APP_A.name]["paused_until"] == pytest.approx(midnight)

        # Messages accepted while the app is paused wait; none is sent, none fails.
        later = await rig.api.send_many(30, lambda i: f"o_user{i}", concurrency=8)
        cpu_at = cpu_s()
        await asyncio.sleep(1.5)
        assert cpu_s() - cpu_at < 0.5, "a paused app keeps no core busy"
        assert rig.sim.state.delivered == 0
        views = await rig.api.messages([quota, *later])
        assert {v["status"] for v in views} <= PENDING, [v["status"] for v in views]
        assert all(v["attempts"] == 0 for v in views), "a throttle is not an attempt"
        assert rig.sim.state.errors[45009] == 1, "a paused app does not keep asking WeChat"

        # The next Beijing day: everything goes out, each message once.
        clock.jump(midnight - clock.now() + 2.0)
        counts = await wait_status(rig.api, "delivered", 31, timeout_s=20)
        assert counts.get("dead", 0) == 0 and counts.get("failed", 0) == 0
        seen = await sim_view(rig.sim)
        assert sorted(seen.ids) == sorted([quota, *later])
        assert rig.sim.state.tries[(APP_A.appid, "o_quota_1", quota)] == 2
        assert not [p for p in (await rig.api.stats())["pauses"] if p["app"] == APP_A.name]


async def _token_dies_mid_run(
    rig: Rig, kill: Callable[[], Awaitable[object]], errcode: int
) -> None:
    """Messages flow; `kill` makes WeChat reject the gateway's token (with `errcode`) mid-run.
    Every message still goes out once, none counts an attempt, and one refetch heals it."""
    n = 1_500
    sending = asyncio.create_task(rig.api.send_many(n, lambda i: f"o_user{i}", concurrency=16))
    await wait_until(lambda: rig.sim.state.delivered >= 300, 20, "300 deliveries")
    fetches_before = rig.sim.state.token_fetches[APP_A.appid]
    await kill()
    assert rig.sim.state.delivered < n, "the token died while messages were flowing"
    ids = await sending
    counts = await wait_status(rig.api, "delivered", n, timeout_s=30)

    assert rig.sim.state.errors[errcode] >= 1, "sends did hit the dead token"
    assert fetches_before == 1
    assert rig.sim.state.token_fetches[APP_A.appid] == 2, "one refetch per dead token"
    assert counts["delivered"] == n
    assert counts.get("dead", 0) == counts.get("failed", 0) == 0
    seen = await sim_view(rig.sim)
    assert len(seen.ids) == n and seen.distinct == set(ids)
    views = await rig.api.messages(ids)
    assert all(v["attempts"] == 1 for v in views), "a token refresh is not an attempt"


@pytest.mark.timeout(60)
async def test_token_expiry_mid_run_fails_no_message(tmp_path: Path) -> None:
    sim_clock = JumpClock()
    # WeChat's receipts will carry its clock, 2 h ahead of ours: opt in to a callback window
    # that wide (the default, 300 s, would refuse them as stale).
    skewed = {"callback_max_skew_s": 7_500.0}
    async with running_rig(
        tmp_path, latency_ms=5.0, sim_clock=sim_clock, app_overrides=skewed
    ) as rig:

        async def two_hours_pass_for_wechat() -> None:
            # Every token WeChat issued has expired (42001); the gateway's clock has not moved.
            sim_clock.jump(7_300.0)

        await _token_dies_mid_run(rig, two_hours_pass_for_wechat, 42001)


@pytest.mark.timeout(60)
async def test_token_revoked_mid_run_fails_no_message(tmp_path: Path) -> None:
    async with running_rig(tmp_path, latency_ms=5.0) as rig:

        async def revoke() -> None:
            # Someone else's system force-refreshed the token (40001 "not latest").
            assert await rig.sim.revoke_tokens(APP_A.appid) >= 1

        await _token_dies_mid_run(rig, revoke, 40001)


@pytest.mark.timeout(60)
async def test_breaker_opens_in_an_outage_and_the_backlog_drains_after(tmp_path: Path) -> None:
    outage_s = 4.0
    async with running_rig(
        tmp_path,
        latency_ms=5.0,
        workers={"breaker": {"consecutive_failures": 5, "open_s": 0.5, "half_open_probes": 2}},
    ) as rig:
        first = await rig.api.send_many(200, lambda i: f"o_first{i}", concurrency=16)
        await wait_status(rig.api, "delivered", 200, timeout_s=15)

        await rig.sim.set_faults(outage_s=outage_s)
        outage_ends = time.monotonic() + outage_s
        sending = asyncio.create_task(
            rig.api.send_many(1_000, lambda i: f"o_late{i}", concurrency=32)
        )

        async def breaker_open() -> bool:
            stats = await rig.api.stats()
            return stats["delivery"]["apps"][APP_A.name]["breaker"] == "open"

        await wait_until(breaker_open, outage_s, "the breaker to open", interval_s=0.05)
        assert time.monotonic() < outage_ends, "the breaker opened during the outage"
        backlog = await sending
        assert rig.sim.state.delivered == 200 or time.monotonic() >= outage_ends

        counts = await wait_status(rig.api, "delivered", 1_200, timeout_s=40)
        assert counts.get("dead", 0) == counts.get("failed", 0) == 0, counts
        failed_503 = rig.sim.state.http_errors[503]
        assert failed_503 >= 5
        # Open, the breaker only lets probes through: far fewer failures than messages waiting.
        assert failed_503 < 400, f"{failed_503} sends into the outage"
        seen = await sim_view(rig.sim)
        assert len(seen.ids) == 1_200 and seen.distinct == set(first) | set(backlog)
        stats = await rig.api.stats()
        assert stats["delivery"]["apps"][APP_A.name]["breaker"] == "closed"


async def test_admin_confirmation_89503_pauses_long_with_one_alert_and_one_token_call(
    tmp_path: Path,
) -> None:
    """docs/wechat-api.md §4: each token call may send the admin another confirmation
    request, so 89503 pauses the app for 15 minutes, alerts once, and keeps every message."""
    async with running_rig(tmp_path) as rig:
        await rig.sim.set_faults(app=APP_A.appid, token_error_rates={"89503": 1.0})
        await rig.sim.revoke_tokens(APP_A.appid)  # whatever the gateway holds dies
        ids = await rig.api.send_many(20, lambda i: f"o_user{i}", concurrency=8)

        async def paused() -> dict | None:
            stats = await rig.api.stats()
            pauses = [p for p in stats["pauses"] if p["app"] == APP_A.name]
            return pauses[0] if pauses else None

        pause = await wait_until(paused, 10, "app a to pause", progress=rig.api.stats)
        assert pause["errcode"] == 89503
        assert pause["until"] - time.time() > 600, "at least 10 minutes"

        async def alerted() -> bool:
            return 'wxgate_config_alerts_total{app="a",errcode="89503"} 1.0' in (
                await rig.api.metrics_text()
            )

        await wait_until(alerted, 10, "the config alert to be counted")

        async def all_released() -> list[dict] | None:
            # Messages leased before the pause was seen are put back once their token wait ends.
            views = await rig.api.messages(ids)
            return views if {v["status"] for v in views} <= PENDING else None

        views = await wait_until(all_released, 15, "every message back in the queue")
        assert all(v["attempts"] == 0 for v in views)
        assert rig.sim.state.errors[89503] == 1, "one token call, not one per message"
        assert rig.sim.state.delivered == 0
