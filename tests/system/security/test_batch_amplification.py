"""Issue 11, High 2: a batch's shared `data` was copied into every message row.

A 1 MB JSON batch of 300 recipients grew the database by 300 MB and the process by 330 MB.
Replayed here on a real gateway and a real SQLite file, on a real Redis, and in-process with
tracemalloc: what a batch makes the gateway store and hold is bounded by the request's size,
not by size x recipients; and what one request may store is bounded by server.max_data_bytes
and server.max_batch_data_bytes (413, the field named, nothing stored).
"""

from __future__ import annotations

import tracemalloc
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from support.api import AUTH, ApiRig, make_settings, running_gateway
from wxgate.api.data_limits import DataLimits
from wxgate.api.intake import batch_from
from wxgate.clock import FakeClock
from wxgate.errors import ConfigError
from wxgate.models import BatchIn
from wxgate.settings import AppSettings, from_dict
from wxgate.store.redis import RedisStore
from wxgate.store.sqlite import SQLiteStore

SHARED_BYTES = 128 * 1024
RECIPIENTS = 400
# What a message costs besides data (ids, indexes, counts), generously: a SQLite row (~400 B
# measured, counted twice: in the WAL and again in the file once checkpointed), and a Redis
# hash (~1.5 KB measured: the doc's JSON, its fields, stream and index entries). The copies
# this suite guards against cost SHARED_BYTES (128 KiB) per message.
ROW_OVERHEAD = 2048
REDIS_MESSAGE_OVERHEAD = 4096
# Raised limits, so one request can carry a shared data this big.
BIG = {"max_data_bytes": 2 * SHARED_BYTES, "max_batch_data_bytes": 64 * SHARED_BYTES}
APP = AppSettings(name="shop", appid="wx_shop", secret="s")


def batch_body(shared_bytes: int = SHARED_BYTES, n: int = RECIPIENTS) -> dict[str, Any]:
    """One big shared value, many recipients, every tenth with a small override."""
    recipients: list[dict[str, Any]] = [{"touser": f"o_{i}"} for i in range(n)]
    for i in range(0, n, 10):
        recipients[i]["data"] = {"name": f"user {i}"}
    return {
        "template_id": "tpl_order",
        "data": {"first": "x" * shared_bytes, "name": "friend"},
        "recipients": recipients,
    }


def stored_bytes(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


@pytest.fixture
async def big(tmp_path: Path) -> AsyncIterator[ApiRig]:
    async with running_gateway(tmp_path / "wx.db", make_settings(**BIG)) as g:
        yield g


async def test_a_big_shared_data_is_stored_once_not_per_recipient(
    big: ApiRig, tmp_path: Path
) -> None:
    db = tmp_path / "wx.db"
    body = batch_body()
    request_bytes = len(msgspec.json.encode(body))
    before = stored_bytes(db)
    status, answer = await big.post("/v1/batches", body)
    assert status == 202, answer
    grown = stored_bytes(db) - before
    budget = 2 * request_bytes + RECIPIENTS * ROW_OVERHEAD
    assert grown < budget, f"{grown} bytes stored for a {request_bytes}-byte request"
    # ...and every message still reads and leases with its whole data.
    leased = await big.store.lease(RECIPIENTS, 30.0, big.clock.now())
    assert len(leased) == RECIPIENTS
    by_user = {m.touser: m for m in leased}
    assert by_user["o_1"].data == {
        "first": {"value": "x" * SHARED_BYTES},
        "name": {"value": "friend"},
    }
    assert by_user["o_10"].data["name"] == {"value": "user 10"}
    assert by_user["o_10"].data["first"] == {"value": "x" * SHARED_BYTES}


async def test_a_streamed_batch_stores_its_header_data_once(big: ApiRig, tmp_path: Path) -> None:
    """NDJSON: the header line's shared data (up to one line, 64 KiB) is the batch's alone."""
    db = tmp_path / "wx.db"
    shared = {"first": "y" * 60_000}
    lines = [msgspec.json.encode({"header": {"template_id": "tpl_order", "data": shared}})]
    lines += [msgspec.json.encode({"touser": f"o_{i}"}) for i in range(RECIPIENTS)]
    payload = b"\n".join(lines) + b"\n"
    before = stored_bytes(db)
    resp = await big.client.post(
        "/v1/batches", data=payload, headers={**AUTH, "Content-Type": "application/x-ndjson"}
    )
    assert resp.status == 202, await resp.text()
    grown = stored_bytes(db) - before
    assert grown < 2 * len(payload) + RECIPIENTS * ROW_OVERHEAD, grown
    leased = await big.store.lease(RECIPIENTS, 30.0, big.clock.now())
    assert len(leased) == RECIPIENTS
    assert all(m.data == {"first": {"value": "y" * 60_000}} for m in leased)


async def test_taking_a_batch_holds_memory_by_the_request_not_per_recipient(
    tmp_path: Path,
) -> None:
    """tracemalloc peak while decoding, building and committing one batch (batch_from and
    the SQLite enqueue): within a small multiple of the request, far below shared x n."""
    raw = msgspec.json.encode(batch_body())
    clock = FakeClock()
    store = SQLiteStore(str(tmp_path / "mem.db"), clock, retention_s=3600)
    await store.open()
    limits = DataLimits(BIG["max_data_bytes"], BIG["max_batch_data_bytes"])
    try:
        tracemalloc.start()
        try:
            body = msgspec.json.decode(raw, type=BatchIn)
            batch, messages = batch_from(body, APP, clock.now(), "b_mem", RECIPIENTS, limits=limits)
            await store.enqueue(messages, batch)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        await store.close()
    assert peak < 3 * len(raw) + RECIPIENTS * 4096, f"peak {peak} for a {len(raw)}-byte batch"


async def _keys_of(admin: Redis, prefix: str) -> list[bytes]:
    """Every key a store with `prefix` wrote: the deployment's (`prefix:`) and each app's
    (`{prefix:app}:`, redis/queue.py)."""
    return [
        key
        for pattern in (f"{prefix}:*", f"{{{prefix}:*")
        async for key in admin.scan_iter(match=pattern, count=1000)
    ]


async def test_redis_keeps_a_batch_shared_data_once(redis_url: str) -> None:
    """The same batch on Redis: MEMORY USAGE of every key the store wrote for it."""
    prefix = f"wxamp{uuid.uuid4().hex[:8]}"
    clock = FakeClock()
    store = RedisStore(redis_url, clock, retention_s=3600, key_prefix=prefix)
    await store.open()
    raw = msgspec.json.encode(batch_body())
    limits = DataLimits(BIG["max_data_bytes"], BIG["max_batch_data_bytes"])
    admin = Redis.from_url(redis_url)
    try:
        body = msgspec.json.decode(raw, type=BatchIn)
        batch, messages = batch_from(body, APP, clock.now(), "b_redis", RECIPIENTS, limits=limits)
        await store.enqueue(messages, batch)
        used = 0
        for key in await _keys_of(admin, prefix):
            used += int(await admin.memory_usage(key, samples=0) or 0)
        assert used > RECIPIENTS * 100, f"{used} bytes: the scan missed the store's keys"
        assert used < 2 * len(raw) + RECIPIENTS * REDIS_MESSAGE_OVERHEAD, f"{used} bytes"
        leased = await store.lease(RECIPIENTS, 30.0, clock.now())
        assert len(leased) == RECIPIENTS
        assert all(m.data["first"] == {"value": "x" * SHARED_BYTES} for m in leased)
    finally:
        for key in await _keys_of(admin, prefix):
            await admin.delete(key)
        await admin.aclose()
        await store.close()


# ------------------------------------------------------------------ the limits (defaults)


async def refused(rig: ApiRig, path: str, body: Any) -> dict[str, Any]:
    """POST that must be a 413 storing nothing; its error body."""
    before = await rig.snapshot()
    status, answer = await rig.post(path, body)
    assert status == 413, answer
    assert answer["error"] == "payload_too_large"
    assert await rig.snapshot() == before
    return dict(answer)


async def test_default_limits_refuse_oversized_data_naming_the_field(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "wx.db") as rig:
        limit = rig.settings.server.max_data_bytes
        assert limit == 4096  # a few KiB: WeChat's values are tens of characters
        big_value = "x" * limit
        one = {"touser": "o_1", "template_id": "tpl", "data": {"first": big_value}}
        assert (await refused(rig, "/v1/messages", one))["field"] == "data"
        shared = {
            "template_id": "tpl",
            "data": {"first": big_value},
            "recipients": [{"touser": "a"}],
        }
        assert (await refused(rig, "/v1/batches", shared))["field"] == "data"
        own = {
            "template_id": "tpl",
            "data": {"first": "x" * (limit // 2)},
            "recipients": [{"touser": "a"}, {"touser": "b", "data": {"k": "y" * (limit // 2)}}],
        }
        assert (await refused(rig, "/v1/batches", own))["field"] == "recipients[1].data"
        # Just under the limit is fine, for both.
        fits = {"touser": "o_1", "template_id": "tpl", "data": {"first": "x" * (limit - 40)}}
        assert (await rig.post("/v1/messages", fits))[0] == 202


async def test_the_batch_data_limit_counts_shared_once_plus_each_own(tmp_path: Path) -> None:
    settings = make_settings(max_batch_data_bytes=20_000)
    async with running_gateway(tmp_path / "wx.db", settings) as rig:
        # 3,000 bytes shared x 100 recipients without data of their own: stored once, fits.
        shared_only = batch_body(3000, 100)
        for r in shared_only["recipients"]:
            r.pop("data", None)
        assert (await rig.post("/v1/batches", shared_only))[0] == 202
        # 100 recipients with ~300 bytes each of their own: 30 KB, over 20,000.
        own = {
            "template_id": "tpl",
            "recipients": [{"touser": f"o_{i}", "data": {"k": "z" * 300}} for i in range(100)],
        }
        answer = await refused(rig, "/v1/batches", own)
        assert answer["field"] == "recipients" and "max_batch_data_bytes" in answer["message"]


async def test_a_streamed_upload_over_the_batch_data_limit_is_cancelled(tmp_path: Path) -> None:
    settings = make_settings(max_batch_data_bytes=20_000)
    async with running_gateway(tmp_path / "wx.db", settings) as rig:
        rows = [
            msgspec.json.encode({"touser": f"o_{i}", "data": {"k": "z" * 300}}) for i in range(100)
        ]
        resp = await rig.client.post(
            "/v1/batches?template_id=tpl",
            data=b"\n".join(rows) + b"\n",
            headers={**AUTH, "Content-Type": "application/x-ndjson"},
        )
        assert resp.status == 413, await resp.text()
        assert (await resp.json())["field"] == "recipients"
        assert await rig.store.lease(1000, 30.0, rig.clock.now()) == []
        [batch] = await rig.store.recent_batches(10)
        assert batch.status == "cancelled"
        # A header whose shared data alone is over max_data_bytes: refused before any row.
        resp = await rig.client.post(
            "/v1/batches",
            data=msgspec.json.encode({"header": {"template_id": "t", "data": {"k": "x" * 5000}}})
            + b"\n"
            + rows[0],
            headers={**AUTH, "Content-Type": "application/x-ndjson"},
        )
        assert resp.status == 413 and (await resp.json())["field"] == "data"


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ({"max_data_bytes": 10}, "server.max_data_bytes: must be >= 64"),
        (
            {"max_data_bytes": 8192, "max_batch_data_bytes": 4096},
            "server.max_batch_data_bytes: must be >= server.max_data_bytes",
        ),
    ],
)
def test_the_limits_are_checked_at_start(server: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_dict({"server": server})
    assert str(caught.value) == message
