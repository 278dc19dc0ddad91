"""RedisStore's WebhookOutbox role: the sender's side of the events the message scripts write.

The message scripts (scripts/prelude.lua, `emit`) write an event in the same script as the
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

from collections.abc import Sequence

from wxgate.models import WebhookEvent, WebhookStats
from wxgate.store.redis.connection import RedisConnection, maps_redis_errors, text
from wxgate.store.redis.scripts import script

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
    "trace",
)
_PRUNE_CHUNK = 200

LEASE = script("webhook_lease", EVENT_FIELDS=_FIELDS, PRUNE_CHUNK=_PRUNE_CHUNK)
DELIVERED = script("webhook_delivered")
RETRY = script("webhook_retry")
FAILED = script("webhook_failed")


def _opt_int(raw: bytes | str | None) -> int | None:
    return int(raw) if raw else None


def _opt_str(raw: bytes | str | None) -> str | None:
    return text(raw) if raw else None


def decode_event(values: Sequence[bytes | str | None]) -> WebhookEvent:
    """An event from LEASE's reply row: the id, then the _FIELDS values."""
    eid, msg_id, app, status, url, at, errcode, errmsg, msgid, batch, attempts, last, tr = values
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
        trace=_opt_str(tr),
    )


class RedisOutbox(RedisConnection):
    """The WebhookOutbox methods of RedisStore (store/base.py)."""

    @maps_redis_errors
    async def lease_webhooks(self, n: int, lease_s: float, now: float) -> list[WebhookEvent]:
        if n <= 0:
            return []
        cutoff = repr(now - self._retention_s)
        rows = await self._script(LEASE, (), [self._p, repr(now), repr(now + lease_s), n, cutoff])
        return [decode_event(r) for r in rows]

    @maps_redis_errors
    async def webhook_delivered(self, event_id: str) -> bool:
        return bool(await self._script(DELIVERED, (), [self._p, event_id]))

    @maps_redis_errors
    async def webhook_retry(self, event_id: str, at: float, error: str) -> bool:
        return bool(await self._script(RETRY, (), [self._p, event_id, repr(at), error]))

    @maps_redis_errors
    async def webhook_failed(self, event_id: str, error: str) -> bool:
        # Redis drops it a day after the lease's prune should have: only if that stalls.
        ttl_s = self._finished_ttl_s
        now = repr(self._clock.now())
        return bool(await self._script(FAILED, (), [self._p, event_id, error, now, ttl_s]))

    @maps_redis_errors
    async def webhook_stats(self) -> WebhookStats:
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.zcard(f"{self._p}:wh:due")
            pipe.zcard(f"{self._p}:wh:failed")
            pipe.hget(f"{self._p}:wh:counts", "delivered")
            pending, failed, delivered = await pipe.execute()
        return WebhookStats(pending=int(pending), failed=int(failed), delivered=int(delivered or 0))
