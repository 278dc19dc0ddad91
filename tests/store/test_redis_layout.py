"""A store an older wxgate wrote (key layout 1: every key under one prefix) is moved to the
per-app layout at open, on one Redis and on Cluster, and loses nothing: every message in
every state, its indexes, counters, idempotency key, early receipt, batch and pending status
webhook. The old store is data/redis_layout_v1.json (made by data/make_redis_layout_v1.py)."""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis, RedisCluster

from support.redis_server import RedisServer
from support.store import LEASE_S, make_message
from support.wait import wait_until
from wxgate.clock import FakeClock
from wxgate.errors import StoreError, StoreUnavailable
from wxgate.models import SendResult, Status
from wxgate.store.redis import RedisStore
from wxgate.store.redis.layout import LAYOUT, Migration
from wxgate.store.search import MessageQuery

OLD = json.loads((Path(__file__).parent / "data" / "redis_layout_v1.json").read_text())
IDS: dict[str, Any] = OLD["ids"]


@pytest.fixture(params=["redis", "redis-cluster"])
def url(request: pytest.FixtureRequest) -> str:
    name = "redis_url" if request.param == "redis" else "redis_cluster_url"
    return str(request.getfixturevalue(name))


async def _close(raw: Redis | RedisCluster) -> None:
    if isinstance(raw, Redis):
        await raw.aclose(close_connection_pool=True)
    else:
        await raw.aclose()


async def _old_store(url: str) -> tuple[RedisStore, FakeClock]:
    """A store (not opened) over a fresh prefix holding the layout 1 keys."""
    prefix = f"wxmig{uuid.uuid4().hex[:8]}"
    clock = FakeClock(OLD["now"])
    store = RedisStore(url, clock, retention_s=3600, key_prefix=prefix, consumer="new")
    raw = store._client()
    try:
        for entry in OLD["keys"]:
            ttl = max(0, int(entry["pttl"]))
            await raw.restore(store._p + entry["key"], ttl, bytes.fromhex(entry["dump"]))
    finally:
        await _close(raw)
    return store, clock


async def _status(store: RedisStore, name: str) -> Status:
    msg = await store.get(IDS[name])
    assert msg is not None, f"{name} lost"
    return msg.status


async def test_a_layout_1_store_is_moved_at_open_and_loses_nothing(url: str) -> None:
    store, clock = await _old_store(url)
    await store.open()
    try:
        r = store._r
        assert int(await r.get(f"{store._p}:layout") or 0) == LAYOUT
        assert not [k async for k in r.scan_iter(match=f"{store._p}:msg:*")]
        assert not await r.exists(f"{store._p}:counts")
        stats = await store.stats()
        assert {k: v for k, v in stats.by_status.items() if v} == OLD["stats"]
        assert stats.by_app["app_b"] == {"queued": 3, "retrying": 1}
        expected = {
            "dead": Status.DEAD,
            "sent": Status.SENT,
            "sending": Status.SENDING,
            "queued": Status.QUEUED,
            "idem": Status.QUEUED,
            "scheduled": Status.SCHEDULED,
            "retrying": Status.RETRYING,
        }
        for name, status in expected.items():
            assert await _status(store, name) == status, name

        # The indexes came along: dead letters, msgid, search, batch.
        dead, _ = await store.dead_letters()
        assert [(m.id, m.last_errcode) for m in dead] == [(IDS["dead"], 40003)]
        found = await store.find_by_wechat_msgid("app_a", 4242)
        assert found is not None and found.id == IDS["sent"]
        page, _ = await store.find_messages(MessageQuery(touser="o_find"), limit=5)
        assert [m.id for m in page] == [IDS["queued"]]
        everything, _ = await store.find_messages(MessageQuery(), limit=50)
        assert len(everything) == 10
        batch = await store.get_batch(IDS["batch"])
        assert batch is not None and batch.app == "app_b" and batch.total == 3
        assert await store.batch_counts(IDS["batch"]) == {"queued": 3}
        members, _ = await store.batch_messages(IDS["batch"])
        assert sorted(m.id for m in members) == sorted(IDS["batch_msgs"])
        assert [b.id for b in await store.recent_batches()] == [IDS["batch"]]

        # The idempotency key still answers with the first message.
        again = make_message(clock, idempotency_key="order-1", idempotency_digest="d1")
        [res] = await store.enqueue([again])
        assert not res.created and res.id == IDS["idem"]

        # The status webhook still waits to be sent.
        [event] = await store.lease_webhooks(10, 30, clock.now())
        assert (event.message_id, event.status) == (IDS["sent"], "sent")
        assert await store.webhook_delivered(event.id)

        # Delivery goes on: what was due is leased with tokens past the old ones; the early
        # receipt meets its ack; the expired lease and the retry come back when due.
        old_token = (
            await store._r.hget(f"{store._a('app_a')}:msg:{IDS['sending']}", "lease_token")
        ) or b"0"
        due = {m.id: m for m in await store.lease(100, LEASE_S, clock.now())}
        assert set(due) == {IDS["queued"], IDS["idem"], *IDS["batch_msgs"]}
        assert all(m.lease_token > int(old_token) for m in due.values())
        idem = due[IDS["idem"]]
        done = await store.ack(idem.id, idem.lease_token, SendResult(9999, clock.now()))
        assert done == Status.DELIVERED  # the receipt that beat the ack, kept across the move
        for m in due.values():
            if m.id != idem.id:
                assert await store.ack(m.id, m.lease_token, SendResult(None, clock.now()))
        clock.advance(61)
        later = {m.id for m in await store.lease(100, LEASE_S, clock.now())}
        assert later == {IDS["sending"], IDS["retrying"]}
    finally:
        await store.close()

    # A second process's open finds the store moved and changes nothing.
    again_store = RedisStore(url, clock, retention_s=3600, key_prefix=store._key_prefix)
    await again_store.open()
    try:
        assert (await again_store.stats()).by_status["delivered"] == 1
    finally:
        await again_store.close()


async def test_a_move_cut_short_is_finished_by_the_next_open(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = await _old_store(url)
    real = Migration._counters

    async def crash(self: Migration) -> None:
        raise ConnectionError("killed part-way")

    monkeypatch.setattr(Migration, "_counters", crash)
    with pytest.raises(Exception, match=r"killed part-way|unreachable"):
        await store.open()
    monkeypatch.setattr(Migration, "_counters", real)
    await store.open()  # the lock the dead attempt held was released by its own cleanup
    try:
        stats = await store.stats()
        assert {k: v for k, v in stats.by_status.items() if v} == OLD["stats"]
        for name in ("dead", "sent", "sending", "queued", "scheduled", "retrying"):
            await _status(store, name)
        leased = await store.lease(100, LEASE_S, store._clock.now())
        assert len(leased) == 5
    finally:
        await store.close()


async def test_a_layout_newer_than_the_code_is_refused(redis_url: str) -> None:
    prefix = f"wxmig{uuid.uuid4().hex[:8]}"
    store = RedisStore(redis_url, FakeClock(), retention_s=3600, key_prefix=prefix)
    raw = store._client()
    try:
        await raw.set(f"{prefix}:layout", LAYOUT + 1)
        with pytest.raises(StoreError, match="newer than this wxgate"):
            await store.open()
    finally:
        await raw.delete(f"{prefix}:layout")
        await _close(raw)


async def test_a_replica_opens_not_ready_but_an_old_layout_there_is_refused() -> None:
    with RedisServer() as primary, RedisServer() as replica:
        admin = redis.Redis(port=replica.port, socket_timeout=5)
        with contextlib.closing(admin):
            admin.replicaof("127.0.0.1", primary.port)

            def synced() -> bool:
                return admin.info("replication").get("master_link_status") == "up"

            await wait_until(synced, 30, "the replica synced")  # not LOADING any more
            # A store never opened on the primary: the replica opens it, not ready.
            fresh = RedisStore(replica.url(), FakeClock(), retention_s=3600, key_prefix="wxnew")
            await fresh.open()
            try:
                with pytest.raises(StoreUnavailable):
                    await fresh.ping()
            finally:
                await fresh.close()
            # The old layout, replicated: only a primary can move it, so the replica refuses.
            old, _ = await _old_store(primary.url())
            marker = f"{old._p}:counts"
            await wait_until(lambda: bool(admin.exists(marker)), 30, "the old keys replicated")
            on_replica = RedisStore(
                replica.url(), FakeClock(), retention_s=3600, key_prefix=old._key_prefix
            )
            with pytest.raises(StoreUnavailable, match="old key layout"):
                await on_replica.open()
