"""The Redis webhook outbox: the sender's side of the events the message scripts write.

The message scripts (redis_scripts.py, `emit`) write an event in the same script as the
status change that caused it. Keys under the prefix P:
  P:wh:{event id}   hash    the event (models.WebhookEvent fields, attempts, last_error)
  P:wh:due          zset    pending events by when they are due: the next try, or the end of
                            the lease of one being POSTed (an expired lease is due again)
  P:wh:failed       zset    events given up on, by when; dropped after retention_s
  P:wh:counts       hash    `delivered`: events the receivers took, ever
  P:wh:seq          counter the event id suffix (`evt_{message id}_{seq}`), never reused
Pending events have no TTL: an event is kept until it is delivered or given up on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from wxgate.models import WebhookEvent, WebhookStats
from wxgate.store.redis_shared import RedisSharedState, guarded, text

_FIELDS = (
    "message_id",
    "app",
    "status",
    "url",
    "occurred_at",
    "errcode",
    "errmsg",
    "wechat_msgid",
    "batch_id",
    "attempts",
    "last_error",
)
_FIELDS_LUA = ", ".join(f"'{f}'" for f in _FIELDS)
_PRUNE_CHUNK = 200

# ARGV[1] prefix, [2] now, [3] lease until, [4] n, [5] failed-before cutoff. Returns
# {event id, _FIELDS values...} per leased event, oldest due first.
LEASE = (
    r"""#!lua
local P, NOW, LU, N = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local due, failed = P .. ':wh:due', P .. ':wh:failed'
for _, eid in ipairs(redis.call('ZRANGEBYSCORE', failed, '-inf', ARGV[5], 'LIMIT', 0, """
    + str(_PRUNE_CHUNK)
    + r""")) do
  redis.call('ZREM', failed, eid)
  redis.call('DEL', P .. ':wh:' .. eid)
end
local out = {}
for _, eid in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', NOW, 'LIMIT', 0, N)) do
  local f = redis.call('HMGET', P .. ':wh:' .. eid, """
    + _FIELDS_LUA
    + r""")
  if f[1] then
    redis.call('ZADD', due, LU, eid)
    table.insert(f, 1, eid)
    out[#out + 1] = f
  else
    redis.call('ZREM', due, eid)
  end
end
return out
"""
)

# ARGV[1] prefix, [2] event id. 1 if it was pending (now delivered and dropped), else 0.
DELIVERED = r"""#!lua
local P, eid = ARGV[1], ARGV[2]
if redis.call('ZREM', P .. ':wh:due', eid) == 0 then return 0 end
redis.call('DEL', P .. ':wh:' .. eid)
redis.call('HINCRBY', P .. ':wh:counts', 'delivered', 1)
return 1
"""

# ARGV[1] prefix, [2] event id, [3] due again at, [4] error.
RETRY = r"""#!lua
local P, eid = ARGV[1], ARGV[2]
if not redis.call('ZSCORE', P .. ':wh:due', eid) then return 0 end
local key = P .. ':wh:' .. eid
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HSET', key, 'last_error', ARGV[4])
redis.call('ZADD', P .. ':wh:due', ARGV[3], eid)
return 1
"""

# ARGV[1] prefix, [2] event id, [3] error, [4] now, [5] TTL (s) of the kept event.
FAILED = r"""#!lua
local P, eid = ARGV[1], ARGV[2]
if redis.call('ZREM', P .. ':wh:due', eid) == 0 then return 0 end
local key = P .. ':wh:' .. eid
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HSET', key, 'last_error', ARGV[3])
redis.call('EXPIRE', key, ARGV[5])
redis.call('ZADD', P .. ':wh:failed', ARGV[4], eid)
return 1
"""


def _opt_int(raw: bytes | str | None) -> int | None:
    return int(raw) if raw else None


def _opt_str(raw: bytes | str | None) -> str | None:
    return text(raw) if raw else None


def decode_event(values: Sequence[bytes | str | None]) -> WebhookEvent:
    """An event from LEASE's reply row: the id, then the _FIELDS values."""
    eid, msg_id, app, status, url, at, errcode, errmsg, msgid, batch, attempts, last = values
    return WebhookEvent(
        id=text(eid or ""),
        message_id=text(msg_id or ""),
        app=text(app or ""),
        status=text(status or ""),
        url=text(url or ""),
        occurred_at=float(at or 0.0),
        errcode=_opt_int(errcode),
        errmsg=_opt_str(errmsg),
        wechat_msgid=_opt_int(msgid),
        batch_id=_opt_str(batch),
        attempts=int(attempts or 0),
        last_error=_opt_str(last),
    )


class RedisWebhooks(RedisSharedState):
    """The outbox methods of the Store contract (RedisStore inherits them)."""

    _retention_s: float  # set by RedisStore

    @guarded
    async def lease_webhooks(self, n: int, lease_s: float, now: float) -> list[WebhookEvent]:
        if n <= 0:
            return []
        cutoff = repr(now - self._retention_s)
        rows = await self._script(LEASE, (), [self._p, repr(now), repr(now + lease_s), n, cutoff])
        return [decode_event(r) for r in rows]

    @guarded
    async def webhook_delivered(self, event_id: str) -> bool:
        return bool(await self._script(DELIVERED, (), [self._p, event_id]))

    @guarded
    async def webhook_retry(self, event_id: str, at: float, error: str) -> bool:
        return bool(await self._script(RETRY, (), [self._p, event_id, repr(at), error]))

    @guarded
    async def webhook_failed(self, event_id: str, error: str) -> bool:
        # Redis drops it a day after the lease's prune should have: only if that stalls.
        ttl_s = max(1, math.ceil(self._retention_s + 86400))
        now = repr(self._clock.now())
        return bool(await self._script(FAILED, (), [self._p, event_id, error, now, ttl_s]))

    @guarded
    async def webhook_stats(self) -> WebhookStats:
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.zcard(f"{self._p}:wh:due")
            pipe.zcard(f"{self._p}:wh:failed")
            pipe.hget(f"{self._p}:wh:counts", "delivered")
            pending, failed, delivered = await pipe.execute()
        return WebhookStats(pending=int(pending), failed=int(failed), delivered=int(delivered or 0))
