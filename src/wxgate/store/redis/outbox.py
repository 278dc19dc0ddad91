"""RedisStore's WebhookOutbox role: the sender's side of the events the message scripts write.

The message scripts (scripts/prelude.lua, `emit`) write an event in the same script as the
status change that caused it, so an app's events live under its prefix A (queue.py):
  A:wh:{event id}   hash    the event (models.WebhookEvent fields, attempts, last_error)
  A:wh:due          zset    pending events by when they are due: the next try, or the end of
                            the lease of one being POSTed (an expired lease is due again)
  A:wh:failed       zset    events given up on, by when; dropped after retention_s
  A:wh:counts       hash    `delivered`: events the receivers took, ever
  A:wh:seq          counter the event id suffix (`evt_{message id}_{seq}`), never reused
Pending events have no TTL: an event is kept until it is delivered or given up on. Leases go
round the apps in shares, as message leases do; the sender's calls after a lease find the
event's app from the lease (or by asking each app).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
_HELD_MAX = 100_000  # leased event ids remembered; past it, outcomes find the app again

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

    def _init_outbox(self) -> None:
        self._events_held: dict[str, str] = {}  # event id -> app, for what this process leased
        self._events_turn = 0

    @maps_redis_errors
    async def lease_webhooks(self, n: int, lease_s: float, now: float) -> list[WebhookEvent]:
        if n <= 0:
            return []
        self._events_turn += 1
        cutoff = repr(now - self._retention_s)

        async def take(wants: list[tuple[str, int]]) -> list[list[WebhookEvent]]:
            replies = await self._run_scripts(
                [
                    (
                        LEASE,
                        (self._anchor_of(app),),
                        [self._a(app), repr(now), repr(now + lease_s), want, cutoff],
                    )
                    for app, want in wants
                ]
            )
            if len(self._events_held) > _HELD_MAX:  # outcomes that never came: start over
                self._events_held.clear()
            leased = [[decode_event(row) for row in rows] for rows in replies]
            for (app, _), events in zip(wants, leased, strict=True):
                for event in events:
                    self._events_held[event.id] = app
            return leased

        return await self._share_out(await self._app_names(), self._events_turn, n, take)

    async def _event_app(self, event_id: str) -> str | None:
        """The app whose outbox holds the event: from this process's lease, or by asking
        each app's outbox (one round trip)."""
        app = self._events_held.pop(event_id, None)
        if app is not None:
            return app
        return (await self._locate([event_id], "wh")).get(event_id)

    async def _event_script(self, source: str, event_id: str, *args: Any) -> bool:
        app = await self._event_app(event_id)
        if app is None:
            return False
        keys = (self._anchor_of(app),)
        return bool(await self._script(source, keys, [self._a(app), event_id, *args]))

    @maps_redis_errors
    async def webhook_delivered(self, event_id: str) -> bool:
        return await self._event_script(DELIVERED, event_id)

    @maps_redis_errors
    async def webhook_retry(self, event_id: str, at: float, error: str) -> bool:
        return await self._event_script(RETRY, event_id, repr(at), error)

    @maps_redis_errors
    async def webhook_failed(self, event_id: str, error: str) -> bool:
        # Redis drops it a day after the lease's prune should have: only if that stalls.
        ttl_s = self._finished_ttl_s
        now = repr(self._clock.now())
        return await self._event_script(FAILED, event_id, error, now, ttl_s)

    @maps_redis_errors
    async def webhook_stats(self) -> WebhookStats:
        apps = await self._app_names()
        if not apps:
            return WebhookStats(pending=0, failed=0, delivered=0)
        async with self._r.pipeline(transaction=False) as pipe:
            for app in apps:
                a = self._a(app)
                pipe.zcard(f"{a}:wh:due")
                pipe.zcard(f"{a}:wh:failed")
                pipe.hget(f"{a}:wh:counts", "delivered")
            found = await pipe.execute()
        return WebhookStats(
            pending=sum(int(x) for x in found[0::3]),
            failed=sum(int(x) for x in found[1::3]),
            delivered=sum(int(x or 0) for x in found[2::3]),
        )
