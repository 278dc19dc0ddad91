"""RedisStore's BatchRecords role: batch records, their messages as a group, and the shared
fields a batch's messages are read back with.

Keys under the batch's app's prefix A (queue.py):
  A:batch:{id}            hash    batch doc + status (+ total, rate once changed) + shared
                                  (what its messages share, stored once); beside it
                                  :counts, :errcodes (dead by errcode), :parked (set) and :ids
                                  (zset, all scores 0: lex order pages batch_messages)
  A:batch_rates           hash    batch id -> rate_per_s of batches with a rate of their own
  A:batch_work            set     batches whose messages a status change has not reached
                                  yet (BATCH_WORK: a chunk per call; prune finishes them)
and under the deployment's prefix P, written before the batch (queue.py, _run_enqueues):
  P:batches               zset    batch ids by created_at (recent_batches), dropped with
                                  the batch when its last message is pruned
  P:batch_app             hash    batch id -> app (a batch has one app, for good)

Messages of a held batch (paused, incomplete) are parked in `A:batch:{id}:parked` when read,
those of a `loading` one as they are enqueued, and go back to A:delayed when it runs again, so
a long pause costs nothing per lease; a cancelled batch's leftovers are cancelled when read.
Resuming or cancelling a batch touches its messages in chunks of _BATCH_WORK_CHUNK, one script
each.
"""

from __future__ import annotations

from collections.abc import Sequence

from wxgate.models import BATCH_SETTABLE, Batch, Message, SharedFields
from wxgate.store.batch_shared import SharedCache, decode_shared
from wxgate.store.redis.codec import BATCH_FIELDS, MESSAGE_FIELDS, decode_batch, decode_messages
from wxgate.store.redis.connection import RedisConnection, maps_redis_errors, text
from wxgate.store.redis.scripts import message_script

_BATCH_WORK_CHUNK = 1000  # messages a batch status change handles per script call
_BATCH_APPS_CACHED = 100_000  # batch -> app entries kept in memory before starting over

BATCH_STATUS = message_script("batch_status")
BATCH_WORK = message_script("batch_work")
BATCH_FIELD = message_script("batch_field")


class RedisBatches(RedisConnection):
    """The BatchRecords methods of RedisStore (store/base.py)."""

    def _init_batches(self) -> None:
        self._shared = SharedCache(self._load_shared)
        self._batch_apps: dict[str, str] = {}  # never changes once written: cached

    async def _apps_of_batches(self, batch_ids: Sequence[str]) -> dict[str, str]:
        """Batch id -> app, for the batches that exist (P:batch_app, cached)."""
        unknown = [b for b in batch_ids if b not in self._batch_apps]
        if unknown:
            if len(self._batch_apps) > _BATCH_APPS_CACHED:
                self._batch_apps.clear()
            found = await self._r.hmget(f"{self._p}:batch_app", unknown)
            for bid, app in zip(unknown, found, strict=True):
                if app is not None:
                    self._batch_apps[bid] = text(app)
        return {b: self._batch_apps[b] for b in batch_ids if b in self._batch_apps}

    async def _batch_app(self, batch_id: str) -> str | None:
        return (await self._apps_of_batches([batch_id])).get(batch_id)

    async def _batch_key(self, batch_id: str) -> str | None:
        """The batch's hash key under its app's prefix, or None for an unknown batch."""
        app = await self._batch_app(batch_id)
        return None if app is None else f"{self._a(app)}:batch:{batch_id}"

    async def _load_shared(self, batch_ids: Sequence[str]) -> dict[str, SharedFields]:
        apps = await self._apps_of_batches(batch_ids)
        known = [b for b in batch_ids if b in apps]
        if not known:
            return {}
        async with self._r.pipeline(transaction=False) as pipe:
            for batch_id in known:
                pipe.hget(f"{self._a(apps[batch_id])}:batch:{batch_id}", "shared")
            found = await pipe.execute()
        return {b: decode_shared(raw) for b, raw in zip(known, found, strict=True) if raw}

    # ------------------------------------------------------------------ batch records

    @maps_redis_errors
    async def get_batch(self, batch_id: str) -> Batch | None:
        key = await self._batch_key(batch_id)
        if key is None:
            return None
        doc, status, total, rate = await self._r.hmget(key, BATCH_FIELDS)
        if doc is None or status is None:
            return None
        return decode_batch(doc, status, total, rate)

    @maps_redis_errors
    async def recent_batches(self, limit: int = 20) -> list[Batch]:
        raw = await self._r.zrange(f"{self._p}:batches", 0, max(0, limit - 1), desc=True)
        ids = [text(b) for b in raw if isinstance(b, bytes | str)]
        apps = await self._apps_of_batches(ids)
        ids = [b for b in ids if b in apps]
        if not ids:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            for bid in ids:
                pipe.hmget(f"{self._a(apps[bid])}:batch:{bid}", BATCH_FIELDS)
            rows = await pipe.execute()
        return [decode_batch(*row) for row in rows if row[0] is not None and row[1] is not None]

    @maps_redis_errors
    async def batch_counts(self, batch_id: str) -> dict[str, int]:
        key = await self._batch_key(batch_id)
        if key is None:
            return {}
        raw = await self._r.hgetall(f"{key}:counts")
        return {text(k): int(v) for k, v in raw.items() if int(v)}

    @maps_redis_errors
    async def set_batch_status(self, batch_id: str, status: str, expect: str | None = None) -> bool:
        if status not in BATCH_SETTABLE:
            raise ValueError(f"batch status must be one of {sorted(map(str, BATCH_SETTABLE))}")
        return await self._change_batch(batch_id, status, expect or "")

    async def _change_batch(self, batch_id: str, status: str, expect: str, quiet: str = "") -> bool:
        """BATCH_STATUS, then the work it queued for the batch's messages."""
        app = await self._batch_app(batch_id)
        if app is None:
            return False
        done = await self._msg_script(app, BATCH_STATUS, batch_id, status, expect, quiet)
        if done:
            await self._batch_work(app, batch_id)
        return bool(done)

    async def _batch_work(self, app: str, batch_id: str) -> None:
        """Unpark or cancel a batch's messages a chunk per script, so Redis serves everyone
        else between chunks (one script for a 100,000-message batch held Redis 0.45 s to
        resume it and 1.5 s to cancel it). A process that dies part-way leaves the batch in
        A:batch_work, which every process's prune finishes."""
        while await self._msg_script(app, BATCH_WORK, batch_id, _BATCH_WORK_CHUNK) == (
            _BATCH_WORK_CHUNK
        ):
            pass

    async def _set_batch_field(self, batch_id: str, field: str, value: str) -> bool:
        app = await self._batch_app(batch_id)
        if app is None:
            return False
        return bool(await self._msg_script(app, BATCH_FIELD, batch_id, field, value))

    @maps_redis_errors
    async def set_batch_total(self, batch_id: str, total: int) -> bool:
        return await self._set_batch_field(batch_id, "total", str(total))

    @maps_redis_errors
    async def set_batch_rate(self, batch_id: str, rate_per_s: float | None) -> bool:
        value = "" if rate_per_s is None else repr(float(rate_per_s))
        return await self._set_batch_field(batch_id, "rate", value)

    @maps_redis_errors
    async def batch_rates(self) -> dict[str, float]:
        apps = await self._app_names()
        if not apps:
            return {}
        async with self._r.pipeline(transaction=False) as pipe:
            for app in apps:
                pipe.hgetall(f"{self._a(app)}:batch_rates")
            found = await pipe.execute()
        return {text(k): float(v) for raw in found for k, v in raw.items()}

    @maps_redis_errors
    async def batch_messages(
        self, batch_id: str, cursor: str | None = None, limit: int = 1000
    ) -> tuple[list[Message], str | None]:
        """Pages in id order (the batch's ids are a sorted set, all scores 0: lex order)."""
        limit = max(1, limit)
        app = await self._batch_app(batch_id)
        if app is None:
            return [], None
        a = self._a(app)
        start = "-" if cursor is None else f"({cursor}"
        raw = await self._r.zrange(
            f"{a}:batch:{batch_id}:ids", start, "+", bylex=True, offset=0, num=limit
        )
        ids = [text(b) for b in raw if isinstance(b, bytes | str)]
        if not ids:
            return [], None
        async with self._r.pipeline(transaction=False) as pipe:
            for msg_id in ids:
                pipe.hmget(f"{a}:msg:{msg_id}", MESSAGE_FIELDS)
            rows = await pipe.execute()
        return await self._shared.filled(decode_messages(rows)), (
            ids[-1] if len(ids) == limit else None
        )

    @maps_redis_errors
    async def batch_errcodes(self, batch_id: str) -> dict[int, int]:
        key = await self._batch_key(batch_id)
        if key is None:
            return {}
        raw = await self._r.hgetall(f"{key}:errcodes")
        return {int(k): int(v) for k, v in raw.items() if int(v) > 0}
