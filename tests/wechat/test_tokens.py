"""The token broker against the simulator: single flight, compare-and-invalidate, retry once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from support.wechat import APP, message, settings_for
from wxgate.clock import FakeClock, SystemClock
from wxgate.errors import Disposition, NotSent, WeChatError
from wxgate.models import TokenEntry
from wxgate.settings import AppSettings
from wxgate.sim.config import SimConfig
from wxgate.sim.testing import SimHandle, running_simulator
from wxgate.wechat.client import WeChatClient
from wxgate.wechat.tokens import MemoryTokenCache, TokenBroker


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    # 2 ms per answer so that concurrent sends really overlap.
    async with running_simulator(SimConfig(receipt_delay_s=0.0)) as handle:
        await handle.set_faults(latency_ms=2.0)
        yield handle


def _broker(
    client: WeChatClient, cache: MemoryTokenCache | None = None, **kw: float
) -> TokenBroker:
    return TokenBroker(client, cache or MemoryTokenCache(), SystemClock(), **kw)  # type: ignore[arg-type]


async def _fetches(sim: SimHandle) -> int:
    return int((await sim.stats())["token_fetches"].get("wx_sandbox", 0))


async def test_get_fetches_once_then_serves_from_memory(
    sim: SimHandle, client: WeChatClient
) -> None:
    broker = _broker(client)
    tokens = {await broker.get(APP) for _ in range(20)}
    assert len(tokens) == 1
    assert client.fetch_count["wx_sandbox"] == 1 and broker.fetches["wx_sandbox"] == 1
    entry = await broker.peek(APP)
    assert entry is not None and entry.access_token in tokens
    assert "fetches=1" in repr(broker) and entry.access_token not in repr(broker)


async def test_500_sends_on_an_expired_token_cause_one_fetch(
    sim: SimHandle, client: WeChatClient
) -> None:
    cache = MemoryTokenCache()
    now = time.time()
    await cache.set_token(
        "wx_sandbox", TokenEntry(access_token="expired", expires_at=now - 1, fetched_at=now - 7201)
    )
    broker = _broker(client, cache)
    results = await asyncio.gather(*(broker.send(APP, message(f"o_u{i}")) for i in range(500)))
    assert all(isinstance(msgid, int) for msgid in results)
    assert len(set(results)) == 500
    assert await _fetches(sim) == 1
    assert client.fetch_count["wx_sandbox"] == 1
    assert (await sim.stats())["delivered"] == 500


async def test_expired_token_is_refreshed_once_and_the_send_retried() -> None:
    async with running_simulator(SimConfig(token_ttl_s=1.0, stable_renew_s=0.0)) as sim:
        # The broker's clock stands still, so only WeChat knows the token has expired.
        frozen = FakeClock(time.time())
        async with WeChatClient(settings_for(sim.base_url), frozen) as client:
            broker = TokenBroker(client, MemoryTokenCache(frozen), frozen)
            assert await broker.send(APP, message())
            await asyncio.sleep(1.05)
            assert await broker.send(APP, message())
            assert broker.refresh_retries == 1
            assert client.fetch_count["wx_sandbox"] == 2
            stats = await sim.stats()
    assert stats["errors"] == {"42001": 1}
    assert stats["delivered"] == 2


async def test_revocation_mid_run_fails_no_message(sim: SimHandle) -> None:
    # A small pool and 30 ms answers: the first 16 sends are checked before the revocation,
    # the other 284 queue for a connection and reach WeChat after it.
    await sim.set_faults(latency_ms=30.0)
    async with WeChatClient(settings_for(sim.base_url, pool_size=16), SystemClock()) as client:
        broker = _broker(client)
        await broker.get(APP)

        async def revoke_soon() -> None:
            await asyncio.sleep(0.005)
            assert await sim.revoke_tokens("wx_sandbox") == 1

        sends = [broker.send(APP, message(f"o_r{i}")) for i in range(300)]
        results = await asyncio.gather(revoke_soon(), *sends)
        assert all(isinstance(msgid, int) for msgid in results[1:])
        assert broker.invalidations == 1
    stats = await sim.stats()
    assert stats["delivered"] == 300
    assert stats["errors"].get("40001", 0) >= 1  # the revocation really hit sends in flight
    assert await _fetches(sim) == 2  # the first token, and exactly one after the revocation


async def test_two_processes_share_one_fetch(sim: SimHandle) -> None:
    """Two brokers with their own clients and one shared cache stand in for two processes."""
    cache = MemoryTokenCache()
    settings = settings_for(sim.base_url)
    async with (
        WeChatClient(settings, SystemClock()) as c1,
        WeChatClient(settings, SystemClock()) as c2,
    ):
        b1 = TokenBroker(c1, cache, SystemClock(), lock_poll_s=0.005)
        b2 = TokenBroker(c2, cache, SystemClock(), lock_poll_s=0.005)
        tokens = await asyncio.gather(*(b.get(APP) for b in (b1, b2) for _ in range(50)))
        assert len(set(tokens)) == 1
        assert c1.fetch_count["wx_sandbox"] + c2.fetch_count["wx_sandbox"] == 1
    assert await _fetches(sim) == 1


async def test_stale_invalidate_does_not_clobber_the_new_token(
    sim: SimHandle, client: WeChatClient
) -> None:
    broker = _broker(client)
    old = await broker.get(APP)
    await sim.revoke_tokens("wx_sandbox")
    await broker.invalidate(APP, old)
    new = await broker.get(APP)
    assert new != old
    await broker.invalidate(APP, old)  # a late report about the old token
    assert await broker.get(APP) == new
    assert await _fetches(sim) == 2


async def test_a_token_error_is_retried_exactly_once(sim: SimHandle, client: WeChatClient) -> None:
    broker = _broker(client)
    await sim.set_faults(error_rates={"40001": 1.0})  # every send: "token not latest"
    with pytest.raises(WeChatError) as info:
        await broker.send(APP, message())
    assert info.value.disposition is Disposition.REFRESH_TOKEN
    stats = await sim.stats()
    assert stats["errors"] == {"40001": 2}  # the send and its one retry, no loop
    assert client.fetch_count["wx_sandbox"] == 2
    assert broker.refresh_retries == 1


async def test_wrong_secret_raises_config_once_and_does_not_loop(
    sim: SimHandle, client: WeChatClient
) -> None:
    bad = AppSettings(name="bad", appid="wx_sandbox", secret="wrong")
    broker = _broker(client, config_error_ttl_s=0.2)
    results = await asyncio.gather(
        *(broker.send(bad, message()) for _ in range(500)), return_exceptions=True
    )
    assert all(isinstance(r, WeChatError) for r in results)
    assert {r.disposition for r in results if isinstance(r, WeChatError)} == {Disposition.CONFIG}
    assert client.fetch_count["wx_sandbox"] == 1
    assert (await sim.stats())["requests"] == 1  # no send went out without a token
    await asyncio.sleep(0.25)  # the memory of the error is brief: a fixed secret gets through
    with pytest.raises(WeChatError):
        await broker.get(bad)
    assert client.fetch_count["wx_sandbox"] == 2


async def test_token_outage_is_not_sent_and_remembered_briefly(
    sim: SimHandle, client: WeChatClient
) -> None:
    await sim.set_faults(outage_s=60)
    broker = _broker(client, failure_ttl_s=0.2)
    results = await asyncio.gather(*(broker.get(APP) for _ in range(50)), return_exceptions=True)
    assert all(isinstance(r, NotSent) for r in results)
    assert client.fetch_count["wx_sandbox"] == 1
    await sim.set_faults(outage_s=0)
    await asyncio.sleep(0.25)
    assert await broker.get(APP)


async def test_classic_mode(sim: SimHandle, client: WeChatClient) -> None:
    classic = AppSettings(
        name="c", appid="wx_sandbox", secret="sandbox_secret", token_mode="classic"
    )
    broker = _broker(client)
    assert await broker.send(classic, message())
    assert await broker.send(classic, message())
    assert (await sim.stats())["token_fetches_by_kind"]["wx_sandbox"] == {"classic": 1}


async def test_refresh_ahead_of_expiry(sim: SimHandle) -> None:
    clock = FakeClock(time.time())
    async with WeChatClient(settings_for(sim.base_url), clock) as client:
        broker = TokenBroker(client, MemoryTokenCache(clock), clock, refresh_ahead_s=300)
        await broker.get(APP)
        clock.advance(6800)  # 400 s before expiry: still fresh
        await broker.get(APP)
        assert client.fetch_count["wx_sandbox"] == 1
        clock.advance(200)  # 200 s before expiry: refreshed ahead
        await broker.get(APP)
        await broker.get(APP)
        assert client.fetch_count["wx_sandbox"] == 2


async def test_failed_refresh_ahead_keeps_the_valid_token(sim: SimHandle) -> None:
    clock = FakeClock(time.time())
    async with WeChatClient(settings_for(sim.base_url), clock) as client:
        broker = TokenBroker(client, MemoryTokenCache(clock), clock, refresh_ahead_s=300)
        token = await broker.get(APP)
        clock.advance(7000)
        await sim.set_faults(outage_s=60)
        assert await broker.get(APP) == token  # 200 s left: use it rather than fail
        clock.advance(300)
        with pytest.raises(NotSent):
            await broker.get(APP)  # expired and no new one


async def test_short_lived_answers_do_not_cause_a_fetch_per_call() -> None:
    # stable_token hands out the old token in its last minutes; a token with less life than
    # refresh_ahead_s must still be reused, not refetched on every call.
    async with running_simulator(SimConfig(token_ttl_s=100.0, stable_renew_s=0.0)) as sim:
        async with WeChatClient(settings_for(sim.base_url), SystemClock()) as client:
            broker = _broker(client, refresh_ahead_s=300)
            for _ in range(10):
                await broker.get(APP)
            assert client.fetch_count["wx_sandbox"] == 1


async def test_lock_held_elsewhere_waits_for_the_other_token(
    sim: SimHandle, client: WeChatClient
) -> None:
    cache = MemoryTokenCache()
    assert await cache.acquire_lock("token:wx_sandbox", "other-process", ttl_s=5)
    broker = _broker(client, cache, lock_poll_s=0.01)
    waiter = asyncio.create_task(broker.get(APP))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    now = time.time()
    await cache.set_token(
        "wx_sandbox",
        TokenEntry(access_token="from-elsewhere", expires_at=now + 7200, fetched_at=now),
    )
    assert await waiter == "from-elsewhere"
    assert client.fetch_count["wx_sandbox"] == 0


async def test_lock_held_too_long_gives_up_not_sent(sim: SimHandle, client: WeChatClient) -> None:
    cache = MemoryTokenCache()
    broker = _broker(client, cache, lock_ttl_s=0.1, lock_poll_s=0.01)
    # Re-take the lock faster than its TTL, like a holder that keeps renewing and never delivers.
    stop = asyncio.Event()

    async def hog() -> None:
        while not stop.is_set():
            await cache.acquire_lock("token:wx_sandbox", "hog", ttl_s=0.05)
            await asyncio.sleep(0.005)

    task = asyncio.create_task(hog())
    await asyncio.sleep(0.01)
    try:
        with pytest.raises(NotSent, match="held elsewhere"):
            await broker.get(APP)
    finally:
        stop.set()
        await task
