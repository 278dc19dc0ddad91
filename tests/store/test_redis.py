"""RedisStore: what only several processes on one Redis show (the contract: test_contract.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from contract import LEASE_S, enqueue_one, make_message, must_get, send_and_ack
from redis.asyncio import Redis

from support.redis_server import RedisServer
from wxgate.clock import FakeClock, SystemClock
from wxgate.errors import StoreError, StoreUnavailable
from wxgate.models import Batch, SendResult, SharedFields, Status, new_id
from wxgate.store.redis import RedisStore, batches
from wxgate.store.search import MessageQuery


def unique_prefix() -> str:
    return f"wxt{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------- Redis-only fixtures


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
async def stores(redis_url: str, clock: FakeClock, prefix: str) -> AsyncIterator[list[RedisStore]]:
    """Four stores on one Redis and one prefix: four wxgate processes of one deployment."""
    opened = [
        RedisStore(redis_url, clock, retention_s=3600, key_prefix=prefix, consumer=f"proc{i}")
        for i in range(4)
    ]
    for s in opened:
        await s.open()
    yield opened
    for s in opened:
        await s.close()


@pytest.fixture
async def store(redis_url: str, clock: FakeClock, prefix: str) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_url, clock, retention_s=3600, key_prefix=prefix)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def aof_server() -> Iterator[RedisServer]:
    """A redis-server of our own with AOF (appendfsync always), for kill -9 and restarts."""
    with RedisServer(appendonly=True) as server:
        yield server


# ---------------------------------------------------------------------- several processes


async def test_concurrent_leasers_never_share_a_message(
    stores: list[RedisStore], clock: FakeClock
) -> None:
    msgs = [make_message(clock, app=f"app_{i % 3}") for i in range(1500)]
    await stores[0].enqueue(msgs)
    taken: list[list[str]] = [[] for _ in stores]

    async def leaser(i: int) -> None:
        while leased := await stores[i].lease(37, LEASE_S, clock.now()):
            taken[i] += [m.id for m in leased]
            await asyncio.sleep(0)

    await asyncio.gather(*(leaser(i) for i in range(len(stores))))
    flat = [msg_id for ids in taken for msg_id in ids]
    assert len(flat) == len(set(flat)) == len(msgs)
    assert set(flat) == {m.id for m in msgs}
    assert all(taken), "every process got a share"


async def test_dead_consumer_is_reclaimed_with_a_new_token(
    stores: list[RedisStore], clock: FakeClock
) -> None:
    dying, survivor, late = stores[0], stores[1], stores[2]
    msg_id = await enqueue_one(dying, clock)
    [held] = await dying.lease(10, LEASE_S, clock.now())
    await dying.close()  # the process dies holding the lease: no ack, no release
    assert await survivor.lease(10, LEASE_S, clock.now() + LEASE_S - 1) == []
    clock.advance(LEASE_S + 1)
    [again] = await survivor.lease(10, LEASE_S, clock.now())
    assert again.id == msg_id and again.lease_token > held.lease_token
    assert not await late.ack(msg_id, held.lease_token, SendResult(1, clock.now()))
    assert await survivor.ack(msg_id, again.lease_token, SendResult(2, clock.now()))
    got = await must_get(late, msg_id)
    assert (got.status, got.wechat_msgid) == (Status.SENT, 2)
    assert {k: v for k, v in (await late.stats()).by_status.items() if v} == {"sent": 1}


async def test_prune_drops_the_consumers_of_processes_that_died(
    redis_url: str, clock: FakeClock, prefix: str
) -> None:
    """A process killed without closing leaves its consumer in the app's group; a live
    process's next prune removes it once idle past consumer_idle_max_s, and keeps its own
    and recently active ones."""
    live = RedisStore(
        redis_url,
        clock,
        retention_s=3600,
        key_prefix=prefix,
        consumer="live",
        consumer_idle_max_s=0.3,
    )
    await live.open()
    raw = Redis.from_url(redis_url)
    key = f"{{{prefix}:app_a}}:due"
    try:
        await enqueue_one(live, clock)
        assert await live.lease(10, LEASE_S, clock.now())  # "live" joins; the first prune ran
        await raw.xgroup_createconsumer(key, "wxgate", "killed-1")  # as a dead process left it
        await raw.xgroup_createconsumer(key, "wxgate", "killed-2")
        await asyncio.sleep(0.5)
        await raw.xgroup_createconsumer(key, "wxgate", "busy-3")  # active a moment ago

        async def names() -> set[str]:
            return {c["name"].decode() for c in await raw.xinfo_consumers(key, "wxgate")}

        assert await names() == {"live", "killed-1", "killed-2", "busy-3"}
        clock.advance(61)  # the next lease prunes
        await enqueue_one(live, clock)
        assert await live.lease(10, LEASE_S, clock.now())
        assert await names() == {"live", "busy-3"}
    finally:
        await raw.aclose()
        await live.close()


async def test_batch_work_a_dead_process_left_is_finished_by_prune(
    stores: list[RedisStore], clock: FakeClock, prefix: str, redis_url: str
) -> None:
    """A process that dies after a batch's status change but before the chunks that move its
    messages leaves the batch in P:batch_work; another process's next prune finishes it."""
    dying, other = stores[0], stores[1]
    batch = Batch(id=new_id(), app="app_a", template_id="t", total=0, created_at=clock.now())
    batch.status = "loading"
    await dying.enqueue([], batch)
    msgs = [make_message(clock, batch_id=batch.id) for _ in range(1500)]
    await dying.enqueue(msgs)
    assert await dying.lease(10, LEASE_S, clock.now()) == []  # parked; its first prune ran
    # The status change alone, as the dying process got it done.
    status_change = (batches.BATCH_STATUS, batch.id, "running", "loading")
    assert await dying._msg_script("app_a", *status_change) == 1
    raw = Redis.from_url(redis_url)
    try:
        assert await raw.smembers(f"{{{prefix}:app_a}}:batch_work") == {batch.id.encode()}
        assert await dying.lease(10, LEASE_S, clock.now()) == []  # still parked
        leased = await other.lease(2000, LEASE_S, clock.now())  # its first prune works it off
        assert {m.id for m in leased} == {m.id for m in msgs}
        assert await raw.smembers(f"{{{prefix}:app_a}}:batch_work") == set()
    finally:
        await raw.aclose()


async def test_take_rate_is_shared_across_processes(stores: list[RedisStore]) -> None:
    rate_per_s, burst, duration_s = 400.0, 20.0, 2.0
    clock = SystemClock()
    # Connections and scripts first, so the measured window is all rate limiting.
    await asyncio.gather(
        *(s.take_rate("warm_up", 1e6, 1e6, 1, clock.now()) for s in stores for _ in range(8))
    )
    start = clock.now()
    deadline = start + duration_s
    granted = 0

    async def sender(store: RedisStore) -> None:
        nonlocal granted
        while True:
            wait_s = await store.take_rate("app_rate", rate_per_s, burst, 1, clock.now())
            if clock.now() + wait_s > deadline:
                return
            await asyncio.sleep(wait_s)
            granted += 1

    await asyncio.gather(*(sender(s) for s in stores for _ in range(8)))  # 8 per process
    expected = burst + rate_per_s * duration_s
    assert abs(granted - expected) <= 0.05 * expected, (granted, expected)


# ---------------------------------------------------------------------- a server we can kill


async def test_restart_with_aof_loses_nothing(aof_server: RedisServer, clock: FakeClock) -> None:
    store = RedisStore(aof_server.url(), clock, retention_s=3600)
    await store.open()
    try:
        due = [make_message(clock, app=f"app_{i % 2}") for i in range(300)]
        later = [make_message(clock, delay_s=60) for _ in range(20)]
        for chunk in (due[:100], due[100:], later):
            await store.enqueue(chunk)
        [held] = await store.lease(1, LEASE_S, clock.now())
        assert await store.ack(held.id, held.lease_token, SendResult(7, clock.now()))
        before = await store.stats()

        aof_server.kill()  # SIGKILL: no chance to flush anything more
        with pytest.raises(StoreUnavailable):
            await store.ping()
        aof_server.start()

        # The same store carries on (new connections, scripts loaded again).
        assert await store.stats() == before
        assert (await must_get(store, held.id)).status == Status.SENT
        clock.advance(61)
        leased = await store.lease(1000, LEASE_S, clock.now())
        assert {m.id for m in leased} == {m.id for m in [*due, *later]} - {held.id}
    finally:
        await store.close()


async def test_unavailable_while_down_then_recovers(
    aof_server: RedisServer, clock: FakeClock
) -> None:
    store = RedisStore(aof_server.url(), clock, retention_s=3600)
    await store.open()
    try:
        first = await enqueue_one(store, clock)
        aof_server.kill()
        calls: list[Callable[[], Awaitable[object]]] = [
            store.ping,
            lambda: store.enqueue([make_message(clock)]),
            lambda: store.lease(10, LEASE_S, clock.now()),
            lambda: store.ack(first, 1, SendResult(1, clock.now())),
            store.stats,
            lambda: store.get(first),
            lambda: store.take_rate("app_a", 10.0, 10.0, 1, clock.now()),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable):
                await call()
        aof_server.start()
        await store.ping()
        second = await enqueue_one(store, clock)
        leased = {m.id for m in await store.lease(10, LEASE_S, clock.now())}
        assert leased == {first, second}
    finally:
        await store.close()


# ---------------------------------------------------------------------- housekeeping, lifecycle


async def test_finished_messages_leave_after_retention(store: RedisStore, clock: FakeClock) -> None:
    done = await enqueue_one(store, clock, idempotency_key="k-old")
    await send_and_ack(store, clock, done, 4242)
    waiting = await enqueue_one(store, clock, delay_s=7200)
    clock.advance(3600 + 61)
    assert await store.lease(10, LEASE_S, clock.now()) == []  # leasing also prunes
    assert await store.get(done) is None
    assert await store.find_by_wechat_msgid("app_a", 4242) is None
    stats = await store.stats()
    assert {k: v for k, v in stats.by_status.items() if v} == {"scheduled": 1}
    assert stats.pruned_by_app == {"app_a": {"sent": 1}}  # kept for rates
    assert (await must_get(store, waiting)).status == Status.SCHEDULED
    # The idempotency key went with the message: the key makes a new one now.
    [again] = await store.enqueue([make_message(clock, idempotency_key="k-old")])
    assert again.created and again.id != done
    # ... and so did its entries in the search indexes (redis/find.py)
    redis = store._r
    a = store._a("app_a")
    created = [m.decode() for m in await redis.zrange(f"{a}:created", 0, -1)]
    assert not any(m.endswith(done) for m in created) and len(created) == 2
    assert await redis.zcard(f"{a}:to:o_user_1") == 2  # the two still kept
    page, _ = await store.find_messages(MessageQuery(touser="o_user_1"), limit=10)
    assert {m.id for m in page} == {waiting, again.id}


async def test_ten_thousand_in_one_call_is_all_or_nothing(
    store: RedisStore, clock: FakeClock
) -> None:
    existing = await enqueue_one(store, clock)
    msgs = [make_message(clock, touser=f"o_{i}") for i in range(10_000)]
    with pytest.raises(StoreError):
        await store.enqueue([*msgs, make_message(clock, id=existing)])
    assert await store.get(msgs[0].id) is None
    assert (await store.stats()).by_status["queued"] == 1
    results = await store.enqueue(msgs)
    assert all(r.created for r in results)
    assert (await store.stats()).by_status["queued"] == 10_001


async def test_acked_stream_entries_are_trimmed(
    store: RedisStore, clock: FakeClock, redis_url: str, prefix: str
) -> None:
    for _ in range(5):
        await store.enqueue([make_message(clock) for _ in range(400)])
        while leased := await store.lease(128, LEASE_S, clock.now()):
            for m in leased:
                assert await store.ack(m.id, m.lease_token, SendResult(None, clock.now()))
    raw = Redis.from_url(redis_url)
    try:
        # Trimming drops whole stream nodes (100 entries by default), never live entries.
        assert await raw.xlen(f"{{{prefix}:app_a}}:due") <= 200
    finally:
        await raw.aclose()


async def test_open_while_down_fails_then_works(clock: FakeClock) -> None:
    server = RedisServer()  # not started yet
    try:
        store = RedisStore(server.url(), clock, retention_s=3600)
        with pytest.raises(StoreUnavailable):
            await store.open()
        server.start()
        await store.open()
        await enqueue_one(store, clock)
        await store.close()
    finally:
        server.close()


async def test_batch_docs_keep_only_their_own_data(
    stores: list[RedisStore], clock: FakeClock, redis_url: str, prefix: str
) -> None:
    """The shared data is the batch hash's `shared` field, once; a message's doc holds only
    its own data, and another process (nothing cached) reads and leases every message whole."""
    shared = SharedFields(data={"first": {"value": "x" * 2000}}, url="https://example.com/c")
    batch = Batch(
        id=new_id(), app="app_a", template_id="tpl", total=6, created_at=clock.now(), shared=shared
    )
    msgs = [
        make_message(
            clock,
            batch_id=batch.id,
            touser=f"o_{i}",
            data={**shared.data, "name": {"value": f"n{i}"}} if i % 2 else shared.data,
            url=shared.url,
            shared=shared,
        )
        for i in range(6)
    ]
    await stores[0].enqueue(msgs, batch)
    raw = Redis.from_url(redis_url)
    try:
        docs = [await raw.hget(f"{{{prefix}:app_a}}:msg:{m.id}", "doc") for m in msgs]
        assert all(d is not None and b"xxxx" not in d for d in docs)
        assert len(await raw.hget(f"{{{prefix}:app_a}}:batch:{batch.id}", "shared") or b"") > 2000
        assert b"xxxx" not in (await raw.hget(f"{{{prefix}:app_a}}:batch:{batch.id}", "doc") or b"")
    finally:
        await raw.aclose()
    for m in msgs:
        got = await must_get(stores[1], m.id)
        assert (got.data, got.url) == (m.data, m.url)
    leased = await stores[2].lease(20, LEASE_S, clock.now())
    assert {m.id: m.data for m in leased} == {m.id: m.data for m in msgs}
