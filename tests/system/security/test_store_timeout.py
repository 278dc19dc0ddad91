"""Issue 11, medium 6: a store that hangs is answered fast and honestly.

With Redis frozen (SIGSTOP), a POST waited for the 10 s socket timeout and got 503
store_unavailable although its message had been stored and was later sent: a caller retrying
without an idempotency key sent the user a duplicate. Now a request-path store call is cut at
server.store_timeout_s and a write is answered 503 store_timeout with the id it was given.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from support.api import AUTH, make_settings, msg_body, running_gateway
from support.redis_server import RedisServer
from wxgate.api.app import create_app
from wxgate.clock import SystemClock
from wxgate.store.redis import RedisStore

DEADLINE_S = 1.0
# The old answer took the 10 s socket timeout; anything near the deadline is the fix.
ANSWER_WITHIN_S = DEADLINE_S + 3.0


@contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """SIGSTOP our own redis-server (never the shared one); SIGCONT whatever happens."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.proc.send_signal(signal.SIGCONT)


@asynccontextmanager
async def redis_gateway(
    server: RedisServer,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    clock = SystemClock()
    store = RedisStore(server.url(), clock, retention_s=3600)
    await store.open()
    app = create_app(make_settings(store_timeout_s=DEADLINE_S), store, clock)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            yield client
    finally:
        await store.close()


async def call(
    client: TestClient[web.Request, web.Application], method: str, path: str, **kw: Any
) -> tuple[int, Any, dict[str, str], float]:
    started = time.monotonic()
    resp = await client.request(method, path, headers={**AUTH, **kw.pop("headers", {})}, **kw)
    body = msgspec.json.decode(await resp.read())
    return resp.status, body, dict(resp.headers), time.monotonic() - started


async def found(client: TestClient[web.Request, web.Application], msg_id: str) -> bool:
    """Whether GET finds the message, once the store answers again (bounded wait)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status, _, _, _ = await call(client, "GET", f"/v1/messages/{msg_id}")
        if status in (200, 404):
            return status == 200
        await asyncio.sleep(0.05)  # 503 while the store recovers: poll again
    raise AssertionError("the store did not answer GET again within 15 s")


def assert_store_timeout(status: int, body: Any, headers: dict[str, str], took_s: float) -> None:
    assert status == 503, body
    assert body["error"] == "store_timeout", body
    assert "unknown" in body["message"]
    assert headers.get("Retry-After")
    assert took_s < ANSWER_WITHIN_S, f"answered after {took_s:.1f} s"


@pytest.mark.timeout(60)
async def test_frozen_redis_post_is_a_fast_store_timeout_with_the_id() -> None:
    with RedisServer() as server:
        async with redis_gateway(server) as client:
            status, _, _, _ = await call(client, "POST", "/v1/messages", json=msg_body())
            assert status == 202  # warm: scripts loaded, connections open
            key = {"Idempotency-Key": "order-42"}
            with frozen(server):
                status, body, headers, took = await call(
                    client, "POST", "/v1/messages", json=msg_body(), headers=key
                )
                assert_store_timeout(status, body, headers, took)
                msg_id = body["id"]
                assert msg_id and body["batch_id"] is None
                assert msg_id in body["message"]
                # A read is cut at the deadline too.
                status, body, headers, took = await call(client, "GET", f"/v1/messages/{msg_id}")
                assert_store_timeout(status, body, headers, took)
            was_stored = await found(client, msg_id)
            status, again, _, _ = await call(
                client, "POST", "/v1/messages", json=msg_body(), headers=key
            )
            assert status == 202
            if was_stored:
                assert again["id"] == msg_id  # the retry is the same message: no duplicate
            status, stats, _, _ = await call(client, "GET", "/v1/stats")
            assert sum(stats["by_status"].values()) == 2  # the warm-up and order-42, once

            # A batch: its id, to look it up with GET /v1/batches/{id}.
            batch = {
                "template_id": "tpl_order",
                "data": {"first": "Sale"},
                "recipients": [{"touser": f"o_{i}"} for i in range(3)],
            }
            with frozen(server):
                status, body, headers, took = await call(client, "POST", "/v1/batches", json=batch)
                assert_store_timeout(status, body, headers, took)
                assert body["batch_id"] and body["id"] is None
            deadline = time.monotonic() + 15
            while (await call(client, "GET", f"/v1/batches/{body['batch_id']}"))[0] == 503:
                assert time.monotonic() < deadline, "the store did not come back"
                await asyncio.sleep(0.05)

            # Refused outright (nothing sent): the plain store_unavailable, as before.
            server.kill()
            status, body, _, took = await call(client, "POST", "/v1/messages", json=msg_body())
            assert (status, body["error"]) == (503, "store_unavailable"), body
            assert took < ANSWER_WITHIN_S


@pytest.mark.timeout(60)
async def test_locked_sqlite_post_is_a_fast_store_timeout_and_then_stored(
    tmp_path: Path,
) -> None:
    """Another process holding the SQLite file's write lock: the writer waits its 5 s busy
    timeout; the request does not."""
    db = tmp_path / "wx.db"
    async with running_gateway(db, make_settings(store_timeout_s=DEADLINE_S)) as gw:
        other = sqlite3.connect(db, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            started = time.monotonic()
            resp = await gw.client.post(
                "/v1/messages", json=msg_body(), headers={**AUTH, "Idempotency-Key": "k-1"}
            )
            took = time.monotonic() - started
            body = msgspec.json.decode(await resp.read())
            assert_store_timeout(resp.status, body, dict(resp.headers), took)
            msg_id = body["id"]
        finally:
            other.execute("ROLLBACK")  # within the writer's busy timeout: its write goes in
            other.close()
        deadline = time.monotonic() + 15
        while (status := (await gw.get(f"/v1/messages/{msg_id}"))[0]) != 200:
            assert status == 404 and time.monotonic() < deadline, status
            await asyncio.sleep(0.05)
        status, again = await gw.post(
            "/v1/messages", msg_body(), headers={"Idempotency-Key": "k-1"}
        )
        assert (status, again["id"]) == (202, msg_id)
        assert sum((await gw.store.stats()).by_status.values()) == 1


@pytest.mark.timeout(60)
async def test_locked_sqlite_streamed_upload_names_its_batch(tmp_path: Path) -> None:
    db = tmp_path / "wx.db"
    async with running_gateway(db, make_settings(store_timeout_s=DEADLINE_S)) as gw:
        rows = b"".join(b'{"touser": "o_%d"}\n' % i for i in range(3))
        other = sqlite3.connect(db, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            started = time.monotonic()
            resp = await gw.client.post(
                "/v1/batches",
                data=rows,
                params={"template_id": "tpl_order"},
                headers={**AUTH, "Content-Type": "application/x-ndjson"},
            )
            took = time.monotonic() - started
            body = msgspec.json.decode(await resp.read())
            assert_store_timeout(resp.status, body, dict(resp.headers), took)
            batch_id = body["batch_id"]
            assert batch_id and batch_id in body["message"]
        finally:
            other.execute("ROLLBACK")
            other.close()
        deadline = time.monotonic() + 15
        while (status := (await gw.get(f"/v1/batches/{batch_id}"))[0]) != 200:
            assert status == 404 and time.monotonic() < deadline, status
            await asyncio.sleep(0.05)
        status, progress = await gw.get(f"/v1/batches/{batch_id}")
        assert progress["status"] == "loading"  # held, never sent: resume or cancel it
