"""Dispatcher.handle on one leased message, with a FakeClock for the timing rules.

The store (SQLite on a tmp file), the client, the broker and the simulator are real; only
time is fake, so waits and pauses are checked without sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.delivery import SEND_TIMEOUT_S, SIM_APPS, app_settings, worker_settings
from wxgate.clock import FakeClock
from wxgate.delivery.dispatcher import PAUSE_RECHECK_S, Dispatcher
from wxgate.delivery.outcome import Outcome
from wxgate.models import AppPause, Message, MessageKind, Status, new_id
from wxgate.policy.ratelimit import next_shanghai_midnight
from wxgate.policy.receipt_links import Match, PendingReceipt
from wxgate.settings import AppSettings, BreakerSettings, WeChatSettings
from wxgate.sim.config import SimApp, SimConfig
from wxgate.sim.testing import SimHandle, running_simulator
from wxgate.store.receipt_links import ReceiptLinker
from wxgate.store.sqlite import SQLiteStore
from wxgate.wechat.client import WeChatClient
from wxgate.wechat.tokens import TokenBroker

LEASE_S = 30.0


@dataclass
class Recorder:
    """A DeliveryMetrics that keeps every call (our own hook, not a mock of I/O)."""

    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def on_sent(self, app: str, latency_s: float, created_at: float, now: float) -> None:
        self.calls.append(("sent", (app, latency_s, created_at, now)))

    def on_failed(self, app: str, disposition: str, errcode: int) -> None:
        self.calls.append(("failed", (app, disposition, errcode)))

    def on_retry(self, app: str) -> None:
        self.calls.append(("retry", (app,)))

    def on_config_alert(self, app: str, errcode: int) -> None:
        self.calls.append(("config_alert", (app, errcode)))

    def on_dead(self, app: str) -> None:
        self.calls.append(("dead", (app,)))

    def on_expired(self, app: str) -> None:
        self.calls.append(("expired", (app,)))

    def on_released(self, app: str, reason: str) -> None:
        self.calls.append(("released", (app, reason)))

    def on_rate_wait(self, app: str, seconds: float) -> None:
        self.calls.append(("rate_wait", (app, seconds)))

    def on_receipt(self, app: str, result: str, created_at: float | None, now: float) -> None:
        self.calls.append(("receipt", (app, result)))

    def on_suppressed(self, app: str) -> None:
        self.calls.append(("suppressed", (app,)))

    def on_receipt_unlinked(self, app: str, reason: str) -> None:
        self.calls.append(("unlinked", (app, reason)))


@dataclass
class FakeRig:
    store: SQLiteStore
    sim: SimHandle
    broker: TokenBroker
    clock: FakeClock
    metrics: Recorder

    def dispatcher(self, *apps: AppSettings, **settings: Any) -> Dispatcher:
        apps = apps or (app_settings("a"),)
        return Dispatcher(
            self.store,
            self.broker,
            {a.name: a for a in apps},
            worker_settings(**settings),
            self.clock,
            self.metrics,
            send_timeout_s=SEND_TIMEOUT_S,
        )

    async def leased(self, n: int = 1, touser: str = "o_user", **kw: Any) -> list[Message]:
        now = self.clock.now()
        msgs = [
            Message(
                id=new_id(),
                app="a",
                touser=f"{touser}_{i}",
                template_id="tpl_order",
                data={"first": {"value": "hi"}},
                created_at=now,
                not_before=now,
                **kw,
            )
            for i in range(n)
        ]
        await self.store.enqueue(msgs)
        leased = await self.store.lease(n, LEASE_S, now)
        assert len(leased) == n
        return sorted(leased, key=lambda m: m.touser)

    async def get(self, msg_id: str) -> Message:
        m = await self.store.get(msg_id)
        assert m is not None
        return m


@pytest.fixture
async def frig(tmp_path: Path) -> AsyncIterator[FakeRig]:
    clock = FakeClock()
    config = SimConfig(apps=[SimApp(appid=a, secret=s) for a, s in SIM_APPS.values()])
    async with running_simulator(config) as sim:
        store = SQLiteStore(str(tmp_path / "wxgate.db"), clock, retention_s=3600)
        await store.open()
        settings = WeChatSettings(base_url=sim.base_url, total_timeout_s=SEND_TIMEOUT_S)
        async with WeChatClient(settings, clock) as client:
            yield FakeRig(store, sim, TokenBroker(client, store, clock), clock, Recorder())
        await store.close()


async def test_sent_message_is_acked_with_wechat_msgid(frig: FakeRig) -> None:
    d = frig.dispatcher()
    [m] = await frig.leased()
    assert await d.handle(m) is Outcome.SENT
    stored = await frig.get(m.id)
    assert stored.status is Status.SENT and stored.wechat_msgid is not None
    assert stored.sent_at == frig.clock.now()
    assert frig.metrics.names() == ["sent"]


async def test_retry_uses_backoff_and_counts_an_attempt(frig: FakeRig) -> None:
    d = frig.dispatcher()
    [m] = await frig.leased(touser="o_busy")
    assert await d.handle(m) is Outcome.RETRY
    stored = await frig.get(m.id)
    assert stored.status is Status.RETRYING
    assert stored.attempts == 1 and stored.last_errcode == -1
    # full jitter over base_s=0.01 for the first retry
    assert frig.clock.now() <= stored.not_before <= frig.clock.now() + 0.01
    assert frig.metrics.names() == ["failed", "retry"]
    assert frig.metrics.calls[0][1] == ("a", "retry", -1)


async def test_rate_limit_waits_and_never_fails(frig: FakeRig) -> None:
    d = frig.dispatcher(app_settings("a", rate_per_s=2.0))  # burst 2
    msgs = await frig.leased(3)
    outcomes = [await d.handle(m) for m in msgs[:2]]
    assert outcomes == [Outcome.SENT, Outcome.SENT]
    third = asyncio.create_task(d.handle(msgs[2]))
    await asyncio.sleep(0.05)
    assert not third.done()  # waiting for a token, not failed
    assert ("rate_wait", ("a", 0.5)) in frig.metrics.calls
    assert "a" in d.blocked_apps() or d.app_states()["a"]["in_flight"] == 1
    frig.clock.advance(0.5)
    assert await asyncio.wait_for(third, 5) is Outcome.SENT
    assert (await frig.get(msgs[2].id)).attempts == 1  # the send only; waiting is no attempt


async def test_rate_wait_past_the_lease_releases_instead(frig: FakeRig) -> None:
    d = frig.dispatcher(app_settings("a", rate_per_s=0.1))  # one token per 10 s
    first, second = await frig.leased(2)
    assert await d.handle(first, lease_deadline=frig.clock.monotonic() + LEASE_S) is Outcome.SENT
    # The next token is 10 s away. Had the message just been leased, 10 s + the 4 s send
    # budget would fit in its 30 s lease; say it waited 17 s in the pool: 13 s are left.
    deadline = frig.clock.monotonic() + 13.0
    assert await d.handle(second, lease_deadline=deadline) is Outcome.RELEASED
    stored = await frig.get(second.id)
    assert stored.status is Status.QUEUED and stored.attempts == 0  # held back, not failed
    assert stored.last_errcode is None
    assert ("released", ("a", "lease")) in frig.metrics.calls
    assert await frig.sim.deliveries(app="wx_a") != []  # only the first went out
    assert len(await frig.sim.deliveries(app="wx_a")) == 1


async def test_daily_quota_pauses_until_shanghai_midnight(frig: FakeRig) -> None:
    d = frig.dispatcher(app_settings("a", daily_quota=2))
    msgs = await frig.leased(3)
    assert [await d.handle(m) for m in msgs] == [Outcome.SENT, Outcome.SENT, Outcome.RELEASED]
    now = frig.clock.now()
    [pause] = await frig.store.get_pauses()
    assert pause.app == "a" and pause.reason == "daily quota (template)"
    assert pause.until == next_shanghai_midnight(now)
    stored = await frig.get(msgs[2].id)
    assert stored.attempts == 0 and stored.not_before == now + PAUSE_RECHECK_S
    assert "a" in d.blocked_apps()
    assert d.app_states()["a"]["pause_reason"] == "daily quota (template)"


async def test_paused_app_is_released_without_sending(frig: FakeRig) -> None:
    now = frig.clock.now()
    await frig.store.set_pause(AppPause("a", now + 0.5, "maintenance"))
    d = frig.dispatcher()
    [m] = await frig.leased()
    assert await d.handle(m) is Outcome.RELEASED
    stored = await frig.get(m.id)
    assert stored.not_before == now + 0.5 and stored.attempts == 0
    assert await frig.sim.deliveries() == []


async def test_open_breaker_releases_until_it_may_close(frig: FakeRig) -> None:
    d = frig.dispatcher(breaker=BreakerSettings(consecutive_failures=2, open_s=10.0))
    state = d.app_state("a")
    assert state is not None
    msgs = await frig.leased(2, touser="o_busy")  # -1 on the first two tries
    assert [await d.handle(m) for m in msgs] == [Outcome.RETRY, Outcome.RETRY]
    assert state.breaker.state == "open" and "a" in d.blocked_apps()
    again = await frig.store.lease(2, LEASE_S, frig.clock.now() + 1)
    frig.clock.advance(1)
    outcomes = [await d.handle(m) for m in again]
    assert outcomes == [Outcome.RELEASED, Outcome.RELEASED]
    for m in again:
        stored = await frig.get(m.id)
        assert stored.attempts == 1  # the breaker's refusals are not attempts
        assert stored.not_before == pytest.approx(frig.clock.now() + 9.0)
    assert d.app_states()["a"]["breaker"] == "open"


async def test_drop_and_config_do_not_trip_the_breaker(
    frig: FakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    d = frig.dispatcher(breaker=BreakerSettings(consecutive_failures=1))
    state = d.app_state("a")
    assert state is not None
    [bad] = await frig.leased(touser="o_invalid")
    assert await d.handle(bad) is Outcome.DEAD
    [cfg] = await frig.leased(touser="o_unauthorized")
    assert await d.handle(cfg) is Outcome.RELEASED
    assert state.breaker.state == "closed"
    [pause] = await frig.store.get_pauses()
    assert pause.errcode == 48001 and pause.until == frig.clock.now() + 60
    [alert] = [r for r in caplog.records if "ALERT" in r.getMessage()]
    token = await frig.broker.peek(app_settings("a"))
    assert token is not None
    text = alert.getMessage()
    assert "48001" in text and "secret_a" not in text and token.access_token not in text


async def test_store_failure_leaves_the_message_to_its_lease(frig: FakeRig, tmp_path: Path) -> None:
    d = frig.dispatcher()
    [m] = await frig.leased()
    await frig.store.close()
    assert await d.handle(m) is Outcome.STORE_ERROR
    reopened = SQLiteStore(str(tmp_path / "wxgate.db"), frig.clock, retention_s=3600)
    await reopened.open()
    try:
        stored = await reopened.get(m.id)
        assert stored is not None and stored.status is Status.SENDING  # redelivered on expiry
    finally:
        await reopened.close()


async def test_late_outcome_under_a_lost_lease_is_fenced(frig: FakeRig) -> None:
    d = frig.dispatcher()
    [m] = await frig.leased()
    frig.clock.advance(LEASE_S + 1)
    [again] = await frig.store.lease(1, LEASE_S, frig.clock.now())
    assert again.id == m.id
    assert await d.handle(m) is Outcome.FENCED  # sent (WeChat dedupes), but not recorded
    assert await d.handle(again) is Outcome.SENT
    assert len(await frig.sim.deliveries(app="wx_a")) == 1


# ---- config answers that say how long to wait (docs/wechat-api.md §4)


@pytest.mark.parametrize(
    ("errcode", "pause_s"),
    [(89503, 900.0), (89501, 900.0), (89506, 86_400.0), (89507, 3_600.0), (40243, 60.0)],
)
async def test_token_config_answer_pauses_for_its_time_with_one_alert(
    frig: FakeRig, errcode: int, pause_s: float
) -> None:
    await frig.sim.set_faults(app="wx_a", token_error_rates={str(errcode): 1.0})
    d = frig.dispatcher()
    msgs = await frig.leased(3)
    now = frig.clock.now()
    assert [await d.handle(m) for m in msgs] == [Outcome.RELEASED] * 3
    [pause] = await frig.store.get_pauses()
    assert pause.errcode == errcode
    assert pause.until == now + pause_s
    # One alert for the pause, not one per message; and one token call: each 89503 call may
    # send the admin another confirmation request.
    assert [c for c in frig.metrics.calls if c[0] == "config_alert"] == [
        ("config_alert", ("a", errcode))
    ]
    assert frig.broker.fetches["wx_a"] == 1
    # The one that met the error keeps its errcode (no attempt counted); the rest are only
    # held back by the pause: queued, untouched.
    first = await frig.get(msgs[0].id)
    assert (first.status, first.attempts, first.last_errcode) == (Status.RETRYING, 0, errcode)
    for m in msgs[1:]:
        stored = await frig.get(m.id)
        assert stored.status is Status.QUEUED and stored.attempts == 0  # held, not failed
        assert stored.last_errcode is None


async def test_not_following_50005_is_dead_at_once(frig: FakeRig) -> None:
    d = frig.dispatcher()
    [m] = await frig.leased(touser="o_notfollowing")
    assert await d.handle(m) is Outcome.DEAD
    stored = await frig.get(m.id)
    assert stored.status is Status.DEAD and stored.last_errcode == 50005
    assert await frig.store.get_pauses() == []


async def test_token_endpoint_answering_404_pauses_with_an_alert_naming_the_url(
    frig: FakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = f"{frig.sim.base_url}/not-wechat"
    settings = WeChatSettings(base_url=wrong, total_timeout_s=SEND_TIMEOUT_S)
    async with WeChatClient(settings, frig.clock) as client:
        d = Dispatcher(
            frig.store,
            TokenBroker(client, frig.store, frig.clock),
            {"a": app_settings("a")},
            worker_settings(),
            frig.clock,
            frig.metrics,
            send_timeout_s=SEND_TIMEOUT_S,
        )
        msgs = await frig.leased(2)
        with caplog.at_level("ERROR", logger="wxgate.delivery"):
            assert [await d.handle(m) for m in msgs] == [Outcome.RELEASED] * 2
    [pause] = await frig.store.get_pauses()
    assert pause.errcode == -6
    assert ("config_alert", ("a", -6)) in frig.metrics.calls
    [alert] = [r.getMessage() for r in caplog.records if "ALERT" in r.getMessage()]
    assert f"{wrong}/cgi-bin/stable_token" in alert and "HTTP 404" in alert
    assert "secret_a" not in alert
    first = await frig.get(msgs[0].id)  # not an attempt, not a breaker failure
    assert (first.status, first.attempts, first.last_errcode) == (Status.RETRYING, 0, -6)
    held = await frig.get(msgs[1].id)
    assert (held.status, held.attempts, held.last_errcode) == (Status.QUEUED, 0, None)
    assert d.app_states()["a"]["breaker"] == "closed"


async def test_daily_quota_defaults_by_kind_and_counts_each_kind_apart(frig: FakeRig) -> None:
    app = app_settings("a")
    assert app.quota_for("template") == 100_000
    assert app.quota_for("subscribe") == 10_000_000
    assert app_settings("a", daily_quota=5).quota_for("subscribe") == 5
    d = frig.dispatcher(app_settings("a", daily_quota=1))
    [tpl] = await frig.leased(1, touser="o_t")
    [sub] = await frig.leased(1, touser="o_s", kind=MessageKind.SUBSCRIBE)
    # One of each kind fits: WeChat counts template and subscribe sends apart.
    assert await d.handle(tpl) is Outcome.SENT
    assert await d.handle(sub) is Outcome.SENT
    [more] = await frig.leased(1, touser="o_s2", kind=MessageKind.SUBSCRIBE)
    assert await d.handle(more) is Outcome.RELEASED
    [pause] = await frig.store.get_pauses()
    assert pause.reason == "daily quota (subscribe)"


@pytest.mark.parametrize("kind", [MessageKind.SUBSCRIBE, MessageKind.OA_SUBSCRIBE])
async def test_a_rejected_template_is_dead_without_a_send(frig: FakeRig, kind: MessageKind) -> None:
    d = frig.dispatcher()
    [m] = await frig.leased(1, touser="o_rej", kind=kind)
    assert await frig.store.set_choice("a", m.touser, m.template_id, False, frig.clock.now())
    assert await d.handle(m) is Outcome.DEAD
    stored = await frig.get(m.id)
    assert stored.last_errcode == 43101 and stored.attempts == 1
    assert await frig.sim.deliveries() == [] and frig.metrics.names() == ["suppressed", "dead"]
    # A template message to the same user and template id is not a subscribe: sent.
    [t] = await frig.leased(1, touser="o_rej")
    assert await d.handle(t) is Outcome.SENT
    # Turned off, the message is sent and WeChat itself answers.
    off = frig.dispatcher(app_settings("a", suppress_rejected=False))
    [again] = await frig.leased(1, touser="o_rej", kind=kind)
    assert await off.handle(again) is Outcome.SENT  # the simulator knows no rejection here


async def test_a_second_message_to_one_user_and_template_waits_for_the_first_receipt(
    frig: FakeRig,
) -> None:
    app = app_settings("a", callback_token="t")
    d = frig.dispatcher(app)
    [first] = await frig.leased(1, touser="o_same", kind=MessageKind.OA_SUBSCRIBE)
    [second] = await frig.leased(1, touser="o_same", kind=MessageKind.OA_SUBSCRIBE)
    assert first.touser == second.touser
    assert await d.handle(first) is Outcome.SENT
    assert (await frig.get(first.id)).wechat_msgid is None, "bizsend answers no msgid"
    assert await d.handle(second) is Outcome.RELEASED
    assert ("released", ("a", "receipt_link")) in frig.metrics.calls
    # The first one's receipt arrives: it is linked to it, and the second may go.
    receipt = PendingReceipt(77, "success", "o_same_0:1:77", int(frig.clock.now()))
    how, msg_id = await ReceiptLinker(frig.store).match(
        "a", first.touser, first.template_id, receipt, frig.clock.now()
    )
    assert (how, msg_id) == (Match.ATTACH, first.id)
    [again] = await frig.store.lease(10, 30.0, frig.clock.now() + 2)
    assert again.id == second.id
    assert await d.handle(again) is Outcome.SENT


# ---- one bad recipient must not re-pause its app forever (issue 16: a 40 s campaign, 183 s)


async def test_a_resume_ends_the_re_pause_loop_until_the_next_real_error(frig: FakeRig) -> None:
    touser, errcode = "o_unauthorized", 48001  # the simulator answers 48001 every time
    d = frig.dispatcher()
    [bad] = await frig.leased(touser=touser)
    assert await d.handle(bad) is Outcome.RELEASED  # its error pauses the app
    [pause] = await frig.store.get_pauses()
    assert pause.errcode == errcode
    # A person resumes the app; the bad message comes round again.
    await frig.store.clear_pause("a")
    await d.refresh_pauses(force=True)
    frig.clock.advance(PAUSE_RECHECK_S)
    [again] = await frig.store.lease(1, LEASE_S, frig.clock.now())
    assert again.id == bad.id and again.last_errcode == errcode
    assert await d.handle(again) is Outcome.RETRY  # an attempt now, not another pause
    assert await frig.store.get_pauses() == []
    stored = await frig.get(bad.id)
    assert (stored.status, stored.attempts) == (Status.RETRYING, 1)
    # The app sends on...
    [good] = await frig.leased(touser="o_user_after")
    assert await d.handle(good) is Outcome.SENT
    # ...until another message meets a real config error for the first time: paused again.
    [fresh] = await frig.leased(touser=f"{touser}_other")
    assert await d.handle(fresh) is Outcome.RELEASED
    assert [p.errcode for p in await frig.store.get_pauses()] == [errcode]


async def test_a_resume_ends_a_quota_pause_until_midnight(frig: FakeRig) -> None:
    d = frig.dispatcher()
    [bad] = await frig.leased(touser="o_quota")  # 45009 on its first send only
    assert await d.handle(bad) is Outcome.RELEASED
    [pause] = await frig.store.get_pauses()
    assert pause.until == next_shanghai_midnight(frig.clock.now())
    await frig.store.clear_pause("a")  # a person resumes: not paused until midnight
    await d.refresh_pauses(force=True)
    frig.clock.advance(PAUSE_RECHECK_S)
    [again] = await frig.store.lease(1, LEASE_S, frig.clock.now())
    assert await d.handle(again) is Outcome.SENT
    assert await frig.store.get_pauses() == []


async def test_a_token_endpoint_config_error_keeps_pausing_its_app(frig: FakeRig) -> None:
    # 89503 (the admin must confirm the token call) is about the app, not the message: the same
    # message meeting it again pauses the app again, it is never counted towards a dead letter.
    await frig.sim.set_faults(app="wx_a", token_error_rates={"89503": 1.0})
    d = frig.dispatcher()
    [m] = await frig.leased()
    assert await d.handle(m) is Outcome.RELEASED
    await frig.store.clear_pause("a")  # a person resumes before the admin confirmed
    await d.refresh_pauses(force=True)
    frig.clock.advance(PAUSE_RECHECK_S)
    [again] = await frig.store.lease(1, LEASE_S, frig.clock.now())
    assert again.last_errcode == 89503
    assert await d.handle(again) is Outcome.RELEASED  # paused again, not an attempt
    assert [p.errcode for p in await frig.store.get_pauses()] == [89503]
    assert (await frig.get(m.id)).attempts == 0
