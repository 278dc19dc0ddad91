"""/readyz is honest on Redis: 503 (with Retry-After) whenever the store cannot take a write,
not only when PING fails; and a write refused for one of those reasons is a 503, never a 500.
Real servers on free loopback ports: a replica (REPLICAOF), a primary that demands a replica
it does not have (min-replicas-to-write), and a cluster whose slot lost its only master."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from support.api import AUTH, make_settings, msg_body
from support.redis_cluster import RedisCluster
from support.redis_server import RedisServer
from support.wait import wait_until
from wxgate.api.app import create_app
from wxgate.clock import FakeClock
from wxgate.store.redis import RedisStore


@contextlib.asynccontextmanager
async def gateway_on(url: str, prefix: str = "wxr") -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    clock = FakeClock()
    store = RedisStore(url, clock, retention_s=3600, key_prefix=prefix)
    await store.open()
    app = create_app(make_settings(), store, clock)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            yield client
    finally:
        await store.close()


async def assert_not_ready(client: TestClient) -> None:  # type: ignore[type-arg]
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert resp.headers["Retry-After"]
    assert (await resp.json()) == {"status": "store_unavailable"}
    resp = await client.post("/v1/messages", json=msg_body(), headers=AUTH)
    assert resp.status == 503
    assert (await resp.json())["error"] == "store_unavailable"
    assert resp.headers["Retry-After"]


async def test_ready_on_a_primary_not_ready_on_its_replica() -> None:
    with RedisServer() as primary, RedisServer() as replica:
        admin = redis.Redis(port=replica.port, socket_timeout=5)
        with contextlib.closing(admin):
            admin.replicaof("127.0.0.1", primary.port)
            async with gateway_on(primary.url()) as client:
                assert (await client.get("/readyz")).status == 200
                resp = await client.post("/v1/messages", json=msg_body(), headers=AUTH)
                assert resp.status == 202
            async with gateway_on(replica.url()) as client:
                await assert_not_ready(client)


async def test_not_ready_while_the_primary_lacks_the_replicas_it_demands() -> None:
    with RedisServer() as primary:
        admin = redis.Redis(port=primary.port, socket_timeout=5)
        with contextlib.closing(admin):
            async with gateway_on(primary.url()) as client:
                assert (await client.get("/readyz")).status == 200
                admin.config_set("min-replicas-to-write", 1)
                await assert_not_ready(client)  # NOREPLICAS, inside a script too
                admin.config_set("min-replicas-to-write", 0)
                assert (await client.get("/readyz")).status == 200


@pytest.mark.slow
async def test_not_ready_when_the_cluster_loses_the_slot_of_our_keys() -> None:
    prefix = f"wxr{uuid.uuid4().hex[:8]}"
    with RedisCluster() as cluster:
        async with gateway_on(cluster.url(), prefix) as client:
            assert (await client.get("/readyz")).status == 200
            cluster.fail_slot_owner(f"{{{prefix}}}:counts")

            async def unready() -> bool:
                return (await client.get("/readyz")).status == 503

            await wait_until(unready, timeout_s=60, what="/readyz 503 after the slot owner died")
            await assert_not_ready(client)
