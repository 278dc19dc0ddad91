"""Each WeChat disposition, through the real pool, store, client, broker and simulator."""

from __future__ import annotations

from collections import Counter

from support.delivery import Rig, app_settings, worker_settings
from wxgate.models import Status
from wxgate.settings import RetrySettings


async def test_invalid_openid_is_dead_at_once(rig: Rig) -> None:
    await rig.pool()
    [msg_id] = await rig.enqueue(touser="o_invalid_1")
    [msg] = await rig.wait_final([msg_id])
    assert msg.status is Status.DEAD
    assert msg.last_errcode == 40003
    assert msg.last_errmsg
    assert msg.attempts == 1
    assert await rig.delivered_ids() == []


async def test_busy_is_retried_until_sent(rig: Rig) -> None:
    await rig.pool()
    [msg_id] = await rig.enqueue(touser="o_busy_1")
    [msg] = await rig.wait_final([msg_id])
    assert msg.status is Status.SENT
    assert msg.attempts == 3  # two -1 answers, then the send that went through
    assert msg.wechat_msgid is not None
    assert await rig.delivered_ids() == [msg_id]
    stats = await rig.sim.stats()
    assert stats["errors"] == {"-1": 2} and stats["accepted"] == 1  # three sends


async def test_max_attempts_then_dead(rig: Rig) -> None:
    settings = worker_settings(retry=RetrySettings(max_attempts=3, base_s=0.01, cap_s=0.02))
    await rig.sim.set_faults(app="wx_a", error_rates={"-1": 1.0})
    await rig.pool(settings=settings)
    [msg_id] = await rig.enqueue()
    [msg] = await rig.wait_final([msg_id])
    assert msg.status is Status.DEAD
    assert msg.attempts == 3
    assert msg.last_errcode == -1


async def test_expired_message_is_not_sent(rig: Rig) -> None:
    await rig.pool()
    now = rig.clock.now()
    [msg_id] = await rig.enqueue(expire_at=now - 1)
    [msg] = await rig.wait_final([msg_id])
    assert msg.status is Status.EXPIRED
    assert msg.attempts == 0
    assert await rig.delivered_ids() == []


async def _wait_paused(rig: Rig, app: str) -> None:
    async def paused() -> bool:
        return any(p.app == app for p in await rig.store.get_pauses())

    await rig.wait_for(paused, what=f"app {app} paused")


async def test_daily_quota_45009_pauses_app_and_keeps_message(rig: Rig) -> None:
    pool = await rig.pool()
    [msg_id] = await rig.enqueue(touser="o_quota_1")
    await _wait_paused(rig, "a")
    [pause] = await rig.store.get_pauses()
    assert pause.errcode == 45009
    assert pause.until - rig.clock.now() > 0
    [msg] = await rig.messages([msg_id])
    assert msg.status in (Status.RETRYING, Status.QUEUED)
    assert msg.attempts == 0
    assert pool.app_states()["a"]["paused_until"] == pause.until
    # Another app keeps flowing while "a" is paused.
    [other] = await rig.enqueue(app="b")
    [sent_b] = await rig.wait_final([other])
    assert sent_b.status is Status.SENT
    # The operator clears the quota (clear_quota) and the pause: the message goes out.
    await rig.store.clear_pause("a")
    [msg] = await rig.wait_final([msg_id])
    assert msg.status is Status.SENT
    assert msg.attempts == 1  # the throttled try did not count, the successful one does
    assert await rig.delivered_ids("a") == [msg_id]


async def test_minute_quota_45011_pauses_until_next_minute(rig: Rig) -> None:
    await rig.pool()
    [msg_id] = await rig.enqueue(touser="o_minute_1")
    await _wait_paused(rig, "a")
    [pause] = await rig.store.get_pauses()
    assert pause.errcode == 45011
    assert pause.until <= rig.clock.now() + 60
    await rig.store.clear_pause("a")
    [msg] = await rig.wait_final([msg_id])
    assert msg.status is Status.SENT
    assert msg.attempts == 1  # only the send that went through


async def test_short_pause_expires_by_itself(rig: Rig) -> None:
    from wxgate.models import AppPause

    await rig.store.set_pause(AppPause("a", rig.clock.now() + 0.6, "test"))
    pool = await rig.pool()
    [msg_id] = await rig.enqueue()
    start = rig.clock.now()
    [msg] = await rig.wait_final([msg_id])
    assert msg.status is Status.SENT
    assert rig.clock.now() - start >= 0.4
    assert pool.app_states()["a"]["paused_until"] is None


async def test_config_error_pauses_app_and_keeps_message(rig: Rig) -> None:
    await rig.pool()
    [msg_id] = await rig.enqueue(touser="o_unauthorized_1")  # 48001 api unauthorized
    await _wait_paused(rig, "a")
    [pause] = await rig.store.get_pauses()
    assert pause.errcode == 48001
    [msg] = await rig.messages([msg_id])
    assert msg.status in (Status.RETRYING, Status.QUEUED)
    assert msg.attempts == 0


async def test_token_revoked_mid_run_fails_nothing(rig: Rig) -> None:
    await rig.pool()
    ids = await rig.enqueue(400)

    async def some_sent() -> bool:
        return len(await rig.delivered_ids("a")) >= 50

    await rig.wait_for(some_sent, what="first sends")
    assert await rig.sim.revoke_tokens("wx_a") >= 1
    done = await rig.wait_final(ids)
    summary = (
        Counter((m.status.value, m.attempts, m.last_errcode) for m in done),
        rig.broker,
        await rig.sim.stats(),
    )
    assert {m.status for m in done} == {Status.SENT}, summary
    assert all(m.attempts == 1 for m in done), summary  # a token error is not an attempt
    assert rig.broker.refresh_retries >= 1, summary  # the revocation hit sends in flight
    assert rig.broker.fetches["wx_a"] == 2, summary  # one at start, one for the revocation
    assert sorted(await rig.delivered_ids("a")) == sorted(ids)


async def test_unknown_app_stays_queued(rig: Rig) -> None:
    d = rig.dispatcher(apps=[app_settings("a")])
    await rig.pool(dispatcher=d)
    [msg_id] = await rig.enqueue(app="b")

    async def looked_at() -> bool:
        [m] = await rig.messages([msg_id])
        return m.status is Status.QUEUED and m.not_before > m.created_at  # put back for later

    await rig.wait_for(looked_at, what="unknown app's message released")
    [m] = await rig.messages([msg_id])
    assert m.attempts == 0
    assert m.not_before > rig.clock.now() + 30
