"""Wrote redis_layout_v1.json: a Redis store in key layout 1 (one prefix for every key), as the
wxgate of git 4242cd3 (the last with that layout) left it, exported key by key as DUMPs, for
tests/store/test_redis_layout.py. Only that version can run it again:

    git worktree add /tmp/v1 4242cd3 && cd /tmp/v1 && make install
    .venv/bin/python <this file> redis://127.0.0.1:6379/0 redis_layout_v1.json

Messages in every state: app_a dead (40003), sent with msgid 4242 and a pending status
webhook, sending (leased), queued, queued with an idempotency key, scheduled an hour ahead,
an early receipt for msgid 9999; app_b retrying in 60 s and a running batch of 3.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from redis.asyncio import Redis

from support.store import HOOK, LEASE_S, make_batch, make_message
from wxgate.clock import FakeClock
from wxgate.models import ErrorInfo, SendResult
from wxgate.store.redis import RedisStore

P = "wxv1fix"


async def main(url: str, out: str) -> None:
    raw = Redis.from_url(url)
    async for k in raw.scan_iter(match=f"{P}:*"):
        await raw.delete(k)
    clock = FakeClock()
    s = RedisStore(url, clock, retention_s=3600, key_prefix=P, consumer="gen")
    await s.open()
    ids: dict[str, Any] = {}

    async def one(name: str, app: str = "app_a", **kw: Any) -> None:
        [r] = await s.enqueue([make_message(clock, app, **kw)])
        ids[name] = r.id

    await one("dead")
    await one("sent", callback_url=HOOK, touser="o_sent")
    await one("sending")
    leased = {m.id: m for m in await s.lease(10, LEASE_S, clock.now())}
    dead = ErrorInfo(40003, "invalid openid")
    assert await s.dead(ids["dead"], leased[ids["dead"]].lease_token, dead)
    assert await s.ack(ids["sent"], leased[ids["sent"]].lease_token, SendResult(4242, clock.now()))
    clock.advance(1)
    await one("queued", touser="o_find")
    await one("idem", idempotency_key="order-1", idempotency_digest="d1")
    await one("scheduled", delay_s=3600)
    await s.record_receipt("app_a", 9999, "success", "ev-1", openid="o_user_1")
    await one("retrying", "app_b")
    m = {x.id: x for x in await s.lease(10, LEASE_S, clock.now())}
    rid = ids["retrying"]
    busy = ErrorInfo(-1, "system busy")
    assert await s.retry(rid, m[rid].lease_token, clock.now() + 60, busy, True)
    for k in ("queued", "idem"):  # released: queued again, not sending
        assert await s.retry(ids[k], m[ids[k]].lease_token, clock.now(), None, False)
    batch = make_batch(clock, 3, app="app_b")
    msgs = [make_message(clock, "app_b", batch_id=batch.id, touser=f"o_b{i}") for i in range(3)]
    await s.enqueue(msgs, batch)
    ids["batch"] = batch.id
    ids["batch_msgs"] = [x.id for x in msgs]
    stats = await s.stats()
    await s.close()
    keys = []
    async for k in raw.scan_iter(match=f"{P}:*"):
        name = k.decode()
        dump = await raw.dump(name)
        keys.append({"key": name[len(P) :], "pttl": int(await raw.pttl(name)), "dump": dump.hex()})
        await raw.delete(name)
    keys.sort(key=lambda e: e["key"])
    info = await raw.info("server")
    doc = {
        "made_by": "tests/store/data/make_redis_layout_v1.py, run by wxgate at git 4242cd3",
        "redis": info["redis_version"],
        "now": clock.now(),
        "ids": ids,
        "stats": {k: v for k, v in stats.by_status.items() if v},
        "keys": keys,
    }
    Path(out).write_text(json.dumps(doc, indent=1))
    await raw.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
