"""The worker pool end to end: exactly-once, caps, breaker, isolation between apps, drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from support.delivery import Rig, app_settings, worker_settings
from wxgate.delivery.workers import PREFETCH_DIVISOR, WorkerPool
from wxgate.models import Status
from wxgate.settings import BreakerSettings, RetrySettings


def mixed(i: int) -> str:
    """Mostly followers, with recipients that fail on their first try in every way."""
    return {0: "o_reset", 1: "o_5xx", 2: "o_busy"}.get(i % 10, "o_user") + f"_{i}"


class Watch:
    """Samples a number while a test runs and keeps the maximum."""

    def __init__(self, read: Callable[[], int]) -> None:
        self.read = read
        self.max = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.max = max(self.max, self.read())
            await asyncio.sleep(0.002)

    def stop(self) -> int:
        self._task.cancel()
        return self.max


async def test_thousand_messages_reach_wechat_exactly_once(rig: Rig) -> None:
    await thousand_exactly_once(rig)


async def test_thousand_messages_exactly_once_on_redis(redis_rig: Rig) -> None:
    await thousand_exactly_once(redis_rig)


async def test_thousand_messages_exactly_once_on_postgres(postgres_rig: Rig) -> None:
    await thousand_exactly_once(postgres_rig)


async def thousand_exactly_once(rig: Rig) -> None:
    settings = worker_settings(concurrency=24, lease_batch=50)
    pool = await rig.pool(settings=settings)
    held = Watch(lambda: pool.held)
    in_flight = Watch(lambda: pool.in_flight)
    ids = await rig.enqueue(500, "a", mixed) + await rig.enqueue(500, "b", mixed)
    done = await rig.wait_final(ids, timeout_s=30)
    # Never leased beyond the free capacity plus the prefetch, never sent more at once than
    # the workers.
    prefetch = min(settings.concurrency, settings.lease_batch) // PREFETCH_DIVISOR
    assert settings.concurrency < held.stop() <= settings.concurrency + prefetch
    assert in_flight.stop() <= settings.concurrency
    assert {m.status for m in done} == {Status.SENT}
    # Ask the simulator over HTTP, as an outside checker would.
    async with aiohttp.ClientSession(rig.sim.base_url) as http:
        async with http.get("/_sim/deliveries") as resp:
            rows = await resp.json()
        async with http.get("/_sim/deliveries", params={"duplicates": "1"}) as resp:
            duplicates = await resp.json()
        async with http.get("/_sim/stats") as resp:
            stats = await resp.json()
    assert sorted(r["client_msg_id"] for r in rows) == sorted(ids)  # each one, once
    assert duplicates == []
    assert stats["delivered"] == 1000
    assert stats["resets"] >= 100  # o_reset: delivered, then no answer; the resend was deduped
    assert stats["deduplicated"] >= 100
    assert stats["errors"]["-1"] >= 200  # o_busy: two -1 each
    assert stats["http_errors"]["502"] >= 100  # o_5xx
    assert pool.held == 0


async def test_app_at_its_cap_does_not_block_others(rig: Rig) -> None:
    settings = worker_settings(concurrency=16)
    slow = app_settings("a", max_concurrency=2)
    pool = await rig.pool(rig.dispatcher([slow, app_settings("b")], settings), settings)
    await rig.sim.set_faults(app="wx_a", latency_ms=300)
    a_in_flight = Watch(lambda: pool.app_states()["a"]["in_flight"])
    a_ids = await rig.enqueue(16, "a", lambda i: f"o_a_{i}")
    await rig.wait_for(lambda: pool.app_states()["a"]["in_flight"] == 2, what="a saturated")
    start = time.monotonic()
    b_ids = await rig.enqueue(40, "b", lambda i: f"o_b_{i}")
    pool.wake()  # what the API does after an enqueue; else the next idle poll picks them up
    b_done = await rig.wait_final(b_ids, timeout_s=10)
    # b does not wait for a's slots: a's leased backlog (16 x 300 ms / 2 = 2.4 s) holds none
    # of the 16 workers but its own 2.
    assert time.monotonic() - start < 0.6
    assert {m.status for m in b_done} == {Status.SENT}
    a_now = await rig.messages(a_ids)
    assert sum(m.status is Status.SENT for m in a_now) < len(a_ids)  # a still busy
    await rig.wait_final(a_ids, timeout_s=15)
    assert a_in_flight.stop() == 2


async def test_breaker_opens_in_outage_and_backlog_drains_after(rig: Rig) -> None:
    settings = worker_settings(
        retry=RetrySettings(max_attempts=30, base_s=0.01, cap_s=0.05),
        breaker=BreakerSettings(
            consecutive_failures=5, window=20, min_calls=10, open_s=0.3, half_open_probes=2
        ),
    )
    dispatcher = rig.dispatcher(settings=settings)
    await rig.sim.set_faults(app="wx_a", outage_s=1.5)
    await rig.pool(dispatcher, settings)
    ids = await rig.enqueue(300, "a", lambda i: f"o_user_{i}")
    state = dispatcher.app_state("a")
    assert state is not None
    await rig.wait_for(lambda: state.breaker.opens >= 1, what="breaker to open")
    assert dispatcher.app_states()["a"]["breaker"] in ("open", "half_open")
    done = await rig.wait_final(ids, timeout_s=20)
    assert {m.status for m in done} == {Status.SENT}
    assert sorted(await rig.delivered_ids("a")) == sorted(ids)
    # Without the breaker each message would burn ~30 attempts in 1.5 s of 50 ms backoffs;
    # with it only the sends in flight at the trip and the probes count.
    failed_attempts = sum(m.attempts for m in done) - len(done)  # one success each
    assert failed_attempts <= 100, failed_attempts
    assert state.breaker.state == "closed"


async def _a_rate(rig: Rig, n: int) -> float:
    start = time.monotonic()
    ids = await rig.enqueue(n, "a", lambda i: f"o_a_{i}_{int(start * 1000)}")
    done = await rig.wait_final(ids, timeout_s=20)
    assert {m.status for m in done} == {Status.SENT}
    return n / (time.monotonic() - start)


async def test_app_in_outage_does_not_slow_another(rig: Rig) -> None:
    # a is rate-limited to 100/s: its throughput is set by its limiter, not by this machine's
    # noise, so alone vs. beside a failing b compares like with like.
    settings = worker_settings(
        concurrency=24,
        retry=RetrySettings(max_attempts=1000, base_s=0.01, cap_s=0.05),
        breaker=BreakerSettings(consecutive_failures=5, open_s=0.3, half_open_probes=1),
    )
    apps = [app_settings("a", rate_per_s=100.0), app_settings("b", max_concurrency=8)]
    dispatcher = rig.dispatcher(apps, settings)
    await rig.pool(dispatcher, settings)
    alone = await _a_rate(rig, 250)
    await rig.sim.set_faults(app="wx_b", outage_s=30)
    await rig.enqueue(400, "b", lambda i: f"o_b_{i}")
    await asyncio.sleep(1.1)  # b is failing; a's bucket refills to the same start as alone
    beside = await _a_rate(rig, 250)
    state_b = dispatcher.app_state("b")
    assert state_b is not None and state_b.breaker.opens >= 1
    print(f"a alone {alone:.0f}/s, beside b in outage {beside:.0f}/s")
    assert beside >= 0.7 * alone, (alone, beside)


async def test_drain_finishes_in_flight_sends(rig: Rig) -> None:
    settings = worker_settings(concurrency=8)
    pool = await rig.pool(settings=settings)
    await rig.sim.set_faults(app="wx_a", latency_ms=400)
    ids = await rig.enqueue(40, "a", lambda i: f"o_user_{i}")
    await rig.wait_for(lambda: pool.in_flight == 8, what="8 in flight")
    start = time.monotonic()
    await pool.drain(5.0)
    assert time.monotonic() - start < 2.0
    assert pool.held == 0
    msgs = await rig.messages(ids)
    statuses = [m.status for m in msgs]
    assert Status.SENDING not in statuses  # nothing left under a lease
    assert statuses.count(Status.SENT) >= 8
    # Sent ones count their one send; released ones come back with no attempt counted.
    assert all(m.attempts == (1 if m.status is Status.SENT else 0) for m in msgs)


async def test_drain_timeout_releases_held_messages(rig: Rig) -> None:
    await drain_timeout_releases(rig)


async def test_drain_timeout_releases_held_messages_on_redis(redis_rig: Rig) -> None:
    await drain_timeout_releases(redis_rig)


async def test_drain_timeout_releases_held_messages_on_postgres(postgres_rig: Rig) -> None:
    await drain_timeout_releases(postgres_rig)


async def drain_timeout_releases(rig: Rig) -> None:
    settings = worker_settings(concurrency=8)
    pool = await rig.pool(settings=settings)
    await rig.sim.set_faults(app="wx_a", latency_ms=1500)
    ids = await rig.enqueue(20, "a", lambda i: f"o_user_{i}")
    await rig.wait_for(lambda: pool.in_flight == 8, what="8 in flight")
    start = time.monotonic()
    await pool.drain(0.1)
    assert time.monotonic() - start < 1.0
    msgs = await rig.messages(ids)
    assert all(m.status in (Status.QUEUED, Status.RETRYING) for m in msgs)
    assert all(m.attempts == 0 and m.last_errcode is None for m in msgs)  # released unharmed
    # A fresh pool sends them all; WeChat drops a resend of a cancelled-but-delivered one.
    await rig.sim.set_faults(app="wx_a", latency_ms=0)
    await rig.pool(settings=settings)
    done = await rig.wait_final(ids)
    assert {m.status for m in done} == {Status.SENT}
    assert sorted(await rig.delivered_ids("a")) == sorted(ids)


async def test_second_drain_call_stops_waiting(rig: Rig) -> None:
    pool = await rig.pool()
    await rig.sim.set_faults(app="wx_a", latency_ms=1800)
    await rig.enqueue(4, "a", lambda i: f"o_user_{i}")
    await rig.wait_for(lambda: pool.in_flight == 4, what="4 in flight")
    start = time.monotonic()
    first = asyncio.create_task(pool.drain(30.0))
    await asyncio.sleep(0.1)
    await pool.drain(30.0)
    await asyncio.wait_for(first, 1.0)
    assert time.monotonic() - start < 1.0
    assert pool.held == 0


async def test_repr_and_states_show_counts(rig: Rig) -> None:
    pool = await rig.pool()
    ids = await rig.enqueue(5)
    await rig.wait_final(ids)
    states = pool.app_states()
    assert set(states) == {"a", "b"}
    a = states["a"]
    assert a["breaker"] == "closed" and a["in_flight"] == 0 and a["sent"] == 5
    assert a["paused_until"] is None and a["rate_per_s"] == 500.0
    assert "held=0" in repr(pool) and "sent=5" in repr(rig.dispatchers[0])
    assert isinstance(pool, WorkerPool)


async def test_low_cap_app_keeps_its_slots_busy(rig: Rig) -> None:
    # Two slots and nothing else to do: each freed slot must be refilled at once, not at the
    # next idle poll (200 sends x idle_poll_s would take seconds).
    settings = worker_settings(idle_poll_s=0.05)
    capped = app_settings("a", max_concurrency=2)
    pool = await rig.pool(rig.dispatcher([capped, app_settings("b")], settings), settings)
    in_flight = Watch(lambda: pool.app_states()["a"]["in_flight"])
    start = time.monotonic()
    ids = await rig.enqueue(200, "a", lambda i: f"o_user_{i}")
    done = await rig.wait_final(ids)
    elapsed = time.monotonic() - start
    assert {m.status for m in done} == {Status.SENT}
    assert in_flight.stop() == 2
    assert elapsed < 3.0, elapsed
    print(f"capped app: 200 sends in {elapsed:.2f} s, {pool!r}")
