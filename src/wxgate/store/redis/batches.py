"""RedisStore's BatchRecords role: batch records, their messages as a group, and the shared
fields a batch's messages are read back with.

Keys under the prefix P:
  P:batch:{id}            hash    batch doc + status (+ total, rate once changed) + shared
                                  (what its messages share, stored once); beside it
                                  :counts, :errcodes (dead by errcode), :parked (set) and :ids
                                  (zset, all scores 0: lex order pages batch_messages)
  P:batch_rates           hash    batch id -> rate_per_s of batches with a rate of their own
  P:batch_work            set     batches whose messages a status change has not reached
                                  yet (BATCH_WORK: a chunk per call; prune finishes them)
  P:batches               zset    batch ids by created_at (recent_batches), dropped with
                                  the batch when its last message is pruned

Messages of a held batch (paused, incomplete) are parked in `P:batch:{id}:parked` when read,
those of a `loading` one as they are enqueued, and go back to P:delayed when it runs again, so
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

BATCH_STATUS = message_script("batch_status")
BATCH_WORK = message_script("batch_work")
BATCH_FIELD = message_script("batch_field")


class RedisBatches(RedisConnection):
    """The BatchRecords methods of RedisStore (store/base.py)."""

    def _init_batches(self) -> None:
        self._shared = SharedCache(self._load_shared)

    async def _load_shared(self, batch_ids: Sequence[str]) -> dict[str, SharedFields]:
        async with self._r.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.hget(f"{self._p}:batch:{batch_id}", "shared")
            found = await pipe.execute()
        return {b: decode_shared(raw) for b, raw in zip(batch_ids, found, strict=True) if raw}

    # ------------------------------------------------------------------ batch records

    @maps_redis_errors
    async def get_batch(self, batch_id: str) -> Batch | None:
        doc, status, total, rate = await self._r.hmget(f"{self._p}:batch:{batch_id}", BATCH_FIELDS)
        if doc is None or status is None:
            return None
        return decode_batch(doc, status, total, rate)

    @maps_redis_errors
    async def recent_batches(self, limit: int = 20) -> list[Batch]:
        raw = await self._r.zrange(f"{self._p}:batches", 0, max(0, limit - 1), desc=True)
        ids = [text(b) for b in raw if isinstance(b, bytes | str)]
        if not ids:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            for bid in ids:
                pipe.hmget(f"{self._p}:batch:{bid}", BATCH_FIELDS)
            rows = await pipe.execute()
        return [decode_batch(*row) for row in rows if row[0] is not None and row[1] is not None]

    @maps_redis_errors
    async def batch_counts(self, batch_id: str) -> dict[str, int]:
        raw = await self._r.hgetall(f"{self._p}:batch:{batch_id}:counts")
        return {text(k): int(v) for k, v in raw.items() if int(v)}

    @maps_redis_errors
    async def set_batch_status(self, batch_id: str, status: str, expect: str | None = None) -> bool:
        if status not in BATCH_SETTABLE:
            raise ValueError(f"batch status must be one of {sorted(map(str, BATCH_SETTABLE))}")
        return await self._change_batch(batch_id, status, expect or "")

    async def _change_batch(self, batch_id: str, status: str, expect: str, quiet: str = "") -> bool:
        """BATCH_STATUS, then the work it queued for the batch's messages."""
        done = await self._msg_script(BATCH_STATUS, batch_id, status, expect, quiet)
        if done:
            await self._batch_work(batch_id)
        return bool(done)

    async def _batch_work(self, batch_id: str) -> None:
        """Unpark or cancel a batch's messages a chunk per script, so Redis serves everyone
        else between chunks (one script for a 100,000-message batch held Redis 0.45 s to
        resume it and 1.5 s to cancel it). A process that dies part-way leaves the batch in
        P:batch_work, which every process's prune finishes."""
        while await self._msg_script(BATCH_WORK, batch_id, _BATCH_WORK_CHUNK) == (
            _BATCH_WORK_CHUNK
        ):
            pass

    @maps_redis_errors
    async def set_batch_total(self, batch_id: str, total: int) -> bool:
        return bool(await self._msg_script(BATCH_FIELD, batch_id, "total", str(total)))

    @maps_redis_errors
    async def set_batch_rate(self, batch_id: str, rate_per_s: float | None) -> bool:
        value = "" if rate_per_s is None else repr(float(rate_per_s))
        return bool(await self._msg_script(BATCH_FIELD, batch_id, "rate", value))

    @maps_redis_errors
    async def batch_rates(self) -> dict[str, float]:
        raw = await self._r.hgetall(f"{self._p}:batch_rates")
        return {text(k): float(v) for k, v in raw.items()}

    @maps_redis_errors
    async def batch_messages(
        self, batch_id: str, cursor: str | None = None, limit: int = 1000
    ) -> tuple[list[Message], str | None]:
        """Pages in id order (the batch's ids are a sorted set, all scores 0: lex order)."""
        limit = max(1, limit)
        start = "-" if cursor is None else f"({cursor}"
        raw = await self._r.zrange(
            f"{self._p}:batch:{batch_id}:ids", start, "+", bylex=True, offset=0, num=limit
        )
        ids = [text(b) for b in raw if isinstance(b, bytes | str)]
        if not ids:
            return [], None
        async with self._r.pipeline(transaction=False) as pipe:
            for msg_id in ids:
                pipe.hmget(f"{self._p}:msg:{msg_id}", MESSAGE_FIELDS)
            rows = await pipe.execute()
        return await self._shared.filled(decode_messages(rows)), (
            ids[-1] if len(ids) == limit else None
        )

    @maps_redis_errors
    async def batch_errcodes(self, batch_id: str) -> dict[int, int]:
        raw = await self._r.hgetall(f"{self._p}:batch:{batch_id}:errcodes")
        return {int(k): int(v) for k, v in raw.items() if int(v) > 0}
