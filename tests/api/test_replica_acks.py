"""store.min_replica_acks on real servers: a 202 only once a replica has the message (WAIT
after the group commit); too few replicas within the timeout is a 503 with Retry-After, and
the caller's retry with the same Idempotency-Key lands on the same message, once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from support.api import AUTH, make_settings, msg_body
from support.redis_server import RedisServer
from support.store import make_message
from support.wait import wait_until
from wxgate.api.app import create_app
from wxgate.clock import FakeClock
from wxgate.errors import ConfigError, StoreUnavailable
from wxgate.models import SendResult
from wxgate.settings import from_dict
from wxgate.store.redis import RedisStore


@contextlib.asynccontextmanager
async def gateway(store: RedisStore, clock: FakeClock) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    await store.open()
    app = create_app(make_settings(), store, clock)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            yield client
    finally:
        await store.close()


def replicas_in_sync(primary: RedisServer) -> bool:
    admin = redis.Redis(port=primary.port, socket_timeout=5, decode_responses=True)
    with contextlib.closing(admin):
        info = admin.info("replication")
        return bool(
            info.get("connected_slaves") == 1 and info.get("slave0", {}).get("state") == "online"
        )


async def test_a_202_waits_for_a_replica_and_a_503_retry_is_safe() -> None:
    clock = FakeClock()
    with RedisServer() as primary, RedisServer() as replica:
        store = RedisStore(
            primary.url(),
            clock,
            retention_s=3600,
            key_prefix="wxacks",
            min_replica_acks=1,
            replica_ack_timeout_ms=1000,  # a loaded machine: a synced replica answers well within
        )
        async with gateway(store, clock) as client:
            # No replica yet: the write is on the primary, unconfirmed -> 503, not 202.
            body = msg_body()
            headers = {**AUTH, "Idempotency-Key": "order-7"}
            resp = await client.post("/v1/messages", json=body, headers=headers)
            assert resp.status == 503
            assert resp.headers["Retry-After"]
            assert (await resp.json())["error"] == "store_unavailable"

            admin = redis.Redis(port=replica.port, socket_timeout=5)
            with contextlib.closing(admin):
                admin.replicaof("127.0.0.1", primary.port)
            await wait_until(lambda: replicas_in_sync(primary), 30, "the replica in sync")

            resp = await client.post("/v1/messages", json=body, headers=headers)
            assert resp.status == 202
            first = (await resp.json())["id"]
            resp = await client.post("/v1/messages", json=body, headers=headers)
            assert resp.status == 202 and (await resp.json())["id"] == first
            assert sum((await store.stats()).by_status.values()) == 1  # once, not twice

            # Acks wait for the replica too, and the replica has what the primary answered.
            [leased] = await store.lease(1, 30, clock.now())
            sent = SendResult(wechat_msgid=42, sent_at=clock.now())
            assert (await store.ack(leased.id, leased.lease_token, sent)) is not None
            mirror = redis.Redis(port=replica.port, socket_timeout=5, decode_responses=True)
            with contextlib.closing(mirror):
                key = f"{{wxacks:{leased.app}}}:msg:{first}"  # the app's keys (redis/queue.py)
                assert mirror.hget(key, "status") == "sent"

            # The replica gone: the next ack is refused as unconfirmed, not silently a success.
            replica.kill()
            await wait_until(lambda: not replicas_in_sync(primary), 30, "the replica gone")
            resp = await client.post("/v1/messages", json=msg_body(), headers=AUTH)
            assert resp.status == 503


async def test_without_min_replica_acks_a_lone_primary_accepts() -> None:
    clock = FakeClock()
    with RedisServer() as primary:
        store = RedisStore(primary.url(), clock, retention_s=3600, key_prefix="wxnoacks")
        async with gateway(store, clock) as client:
            resp = await client.post("/v1/messages", json=msg_body(), headers=AUTH)
            assert resp.status == 202


async def test_an_unconfirmed_ack_is_unavailable() -> None:
    clock = FakeClock()
    with RedisServer() as primary:
        plain = RedisStore(primary.url(), clock, retention_s=3600, key_prefix="wxack2")
        await plain.open()
        try:
            msg_id = (await plain.enqueue((make_message(clock),)))[0].id
            [leased] = await plain.lease(1, 30, clock.now())
        finally:
            await plain.close()
        strict = RedisStore(
            primary.url(),
            clock,
            retention_s=3600,
            key_prefix="wxack2",
            min_replica_acks=1,
            replica_ack_timeout_ms=50,
        )
        await strict.open()
        try:
            sent = SendResult(wechat_msgid=7, sent_at=clock.now())
            with pytest.raises(StoreUnavailable, match="0 of 1 replica"):
                await strict.ack(msg_id, leased.lease_token, sent)
        finally:
            await strict.close()


@pytest.mark.parametrize(
    ("store", "needle"),
    [
        ({"url": "sqlite:///x.db", "min_replica_acks": 1}, "SQLite has no replicas"),
        ({"url": "redis+cluster://n1:7000", "min_replica_acks": 1}, "not supported on"),
        ({"url": "redis://h:6379/0", "min_replica_acks": -1}, ">= 0"),
        ({"url": "redis://h:6379/0", "replica_ack_timeout_ms": 0}, "wait forever"),
    ],
)
def test_bad_replica_ack_settings_are_refused(store: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        from_dict({"store": store})
