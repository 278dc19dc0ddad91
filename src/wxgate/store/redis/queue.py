"""RedisStore's MessageQueue role: messages from accept to a final status.

Due work sits in one Stream per app read through one consumer group per deployment; everything
time-based (scheduled sends, retries, lease expiry) sits in sorted sets judged by the `now`
callers pass, so the store keeps the contract under a fake clock too.

Keys under the prefix P (batches: batches.py; tokens, locks, pauses, quotas: shared.py):
  P:msg:{id}              hash    a message (codec.py); Redis drops it retention_s + 1 day
                                  after it finished, a safety net behind the lease's prune
  P:due:{app}, P:apps     stream per app + the set of apps; consumer group `group`; acked
                                  entries are trimmed below the oldest unacked one
  P:delayed               zset    scheduled/retrying messages by not_before, moved to the
                                  stream by the lease script once due
  P:inflight              zset    leased messages by lease_until. An expired lease goes back to
                                  its stream and is re-leased with a new, larger token from
                                  P:seq: what XAUTOCLAIM would do, but in the callers' time
                                  rather than Redis idle time (the contract, fake clocks)
  P:pending               zset    waiting messages by created_at (oldest_pending_at)
  P:done                  list    "{finished_at}|{id}" in finishing order, pruned after
                                  retention together with counts, indexes and the idem key
  P:dead                  zset    dead letters, member "{time:020.6f}:{id}" (lex = time order,
                                  the member is the page cursor)
  P:counts                hash    counts by status and app+status (stats() is O(1))
  P:pruned                hash    finished messages prune dropped, by app+status
  P:idem:{app}:{key}      string  idempotency key -> id (the body fingerprint is the message
                                  hash's `idem_digest` field)
  P:msgid:{app}           hash    WeChat msgid -> id
  P:receipt:{app}:{msgid} hash    a receipt that beat the ack, applied by the ack script
  P:event:{app}:{key}     string  receipt event already seen (1 hour)

Fairness: the lease script reads the apps round-robin in equal shares (the start rotates per
call); an app that runs dry gives its share to the others. Leasing a message whose lease had
expired adds one to the `e:{app}` field of P:counts (StoreStats.lease_expirations).

Lease expiry compares the lease_until one process wrote with another's `now`: keep the
machines' clocks synchronised (NTP); skew lengthens or shortens a lease by the skew.

Round trips: concurrent enqueue and ack calls are coalesced into one script call each (group
commit); lease takes n messages per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Sequence
from typing import Any

import msgspec
from redis.exceptions import RedisError

from wxgate.errors import StoreError
from wxgate.models import (
    Batch,
    BatchStatus,
    EnqueueResult,
    ErrorInfo,
    Message,
    SendResult,
    Status,
    StoreStats,
)
from wxgate.store.base import receipt_status
from wxgate.store.coalesce import Coalescer
from wxgate.store.redis import find
from wxgate.store.redis.batches import RedisBatches
from wxgate.store.redis.codec import (
    MESSAGE_FIELDS,
    dead_member,
    decode_counts,
    decode_expirations,
    decode_message,
    decode_messages,
    encode_batch,
    encode_batch_shared,
    message_record,
    pack,
)
from wxgate.store.redis.connection import maps_redis_errors, text
from wxgate.store.redis.scripts import message_script, script
from wxgate.store.search import MessageQuery

# Calls with more messages than this go alone (a 10,000-recipient batch is one script call).
_COALESCE_MAX_MESSAGES = 256
_COALESCE_MAX_CALLS = 256
# Per lease call: due messages promoted / expired leases returned, and stream entries read.
_PROMOTE_CAP = 2000
_READ_CAP_FACTOR = 8
_PRUNE_EVERY_S = 60.0
# A consumer this long without reading its app's stream belongs to a process that died
# without closing (kill -9, a lost node); the prune removes it from the group. A live process
# that comes back to the stream later is simply added again by XREADGROUP.
CONSUMER_IDLE_MAX_S = 3600.0
_PRUNE_CHUNK = 1000
_ENQUEUE_CHUNK = 1000  # a batch larger than this is written in chunks (_enqueue_in_chunks)
_DEAD_SCAN_BUDGET = 10_000
_REQUEUE_CHUNK = 1000
_EVENT_TTL_S = 3600  # WeChat retries a callback push three times within ~15 s
_EARLY_RECEIPT_TTL_S = 86400  # a receipt that beat its ack waits this long for it

ENQUEUE = message_script("enqueue")
LEASE = message_script("lease")
ACK = message_script("ack")
RETRY = message_script("retry")
DEAD = message_script("dead")
EXPIRE = message_script("expire")
CANCEL = message_script("cancel")
RECEIPT = message_script("receipt")
DEAD_LETTERS = message_script("dead_letters")
REQUEUE = message_script("requeue")
REDRIVE = message_script("redrive")
PRUNE = message_script("prune")
FIND_BY_MSGID = script("find_by_msgid", flags="no-writes", MESSAGE_FIELDS=MESSAGE_FIELDS)


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class RedisQueue(RedisBatches):
    """The MessageQueue methods of RedisStore (store/base.py). Built on RedisBatches: enqueue
    writes batch records, lease parks or cancels the messages of held or cancelled batches,
    and reads fill in a batch's shared fields."""

    def _init_queue(self, consumer: str | None, consumer_idle_max_s: float) -> None:
        self.consumer = consumer or _default_consumer()
        self._consumer_idle_max_ms = int(consumer_idle_max_s * 1000)
        self._enqueues: Coalescer[bytes, list[Any]] = Coalescer(
            self._run_enqueues, _COALESCE_MAX_CALLS
        )
        self._acks: Coalescer[list[str], int | bytes | str] = Coalescer(
            self._run_acks, _COALESCE_MAX_CALLS
        )
        self._next_prune = 0.0

    async def _drain_queue(self) -> None:
        """Let coalesced enqueues and acks finish, then leave the consumer group."""
        await self._enqueues.wait_idle()
        await self._acks.wait_idle()
        await self._leave_group()

    async def _leave_group(self) -> None:
        """Drop this process's consumer from every app's group, so restarts do not pile them up.

        Safe with leases still held: lease expiry is tracked in P:inflight, not in the group's
        pending list, so another process re-leases them on time either way. Best effort: a
        process that dies without closing leaves its (empty) consumer behind.
        """
        redis = self._r
        try:
            apps = await redis.smembers(f"{self._p}:apps")
            async with redis.pipeline(transaction=False) as pipe:
                for app in apps:
                    pipe.xgroup_delconsumer(
                        f"{self._p}:due:{text(app)}", self._group, self.consumer
                    )
                await pipe.execute(raise_on_error=False)
        except (RedisError, OSError):
            pass

    # ------------------------------------------------------------------ messages

    @maps_redis_errors
    async def enqueue(
        self, messages: Sequence[Message], batch: Batch | None = None
    ) -> list[EnqueueResult]:
        if not messages and batch is None:
            return []
        if (
            batch is not None
            and batch.status == BatchStatus.RUNNING
            and len(messages) > _ENQUEUE_CHUNK
        ):
            return await self._enqueue_in_chunks(messages, batch)
        return await self._enqueue_group(messages, batch)

    async def _enqueue_in_chunks(
        self, messages: Sequence[Message], batch: Batch
    ) -> list[EnqueueResult]:
        """A large batch written `loading`, a chunk per script, then set running (its messages
        unparked a chunk per script too): one script for a 10,000-recipient batch held Redis
        ~120 ms, every other process waiting. Not all-or-nothing like one script: a failure
        part-way cancels what was written (a retried POST makes a new batch); with Redis gone
        it stays `loading` and is never sent, like a streamed upload whose gateway died."""
        loading = msgspec.structs.replace(batch, status=BatchStatus.LOADING)
        results = await self._enqueue_group(messages[:_ENQUEUE_CHUNK], loading)
        try:
            for start in range(_ENQUEUE_CHUNK, len(messages), _ENQUEUE_CHUNK):
                results += await self._enqueue_group(messages[start : start + _ENQUEUE_CHUNK], None)
        except BaseException:
            await asyncio.shield(self._cancel_quietly(batch.id))
            raise
        await self.set_batch_status(batch.id, BatchStatus.RUNNING, expect=BatchStatus.LOADING)
        return results

    async def _cancel_quietly(self, batch_id: str) -> None:
        """Cancel a batch whose POST fails, best effort and without status webhooks: the
        caller never got its ids."""
        with contextlib.suppress(Exception):
            await self._change_batch(batch_id, BatchStatus.CANCELLED, "", quiet="1")

    async def _enqueue_group(
        self, messages: Sequence[Message], batch: Batch | None
    ) -> list[EnqueueResult]:
        now = self._clock.now()
        records = [
            message_record(msg, Status.SCHEDULED if msg.not_before > now else Status.QUEUED)
            for msg in messages
        ]
        group = pack(
            [
                batch.id if batch else "",
                encode_batch(batch) if batch else "",
                records,
                encode_batch_shared(batch),
            ]
        )
        if len(messages) > _COALESCE_MAX_MESSAGES:
            [reply] = await self._run_enqueues([group])
        else:
            reply = await self._enqueues.submit(group)
        if reply[0] != b"ok":
            raise StoreError(f"enqueue refused: {text(reply[1])}")
        if batch is not None and batch.shared is not None:
            self._shared.put(batch.id, batch.shared)
        return [
            EnqueueResult(
                id=text(reply[i]),
                status=Status(text(reply[i + 1])),
                created=reply[i + 2] == 1,
                conflict=reply[i + 2] == 2,
            )
            for i in range(1, len(reply), 3)
        ]

    async def _run_enqueues(self, groups: list[bytes]) -> list[list[Any]]:
        replies: list[list[Any]] = await self._replicated_script(
            ENQUEUE, (), self._msg_args([len(groups), *groups])
        )
        return replies

    @maps_redis_errors
    async def lease(
        self, n: int, lease_s: float, now: float, exclude_apps: frozenset[str] = frozenset()
    ) -> list[Message]:
        if n <= 0:
            return []
        if now >= self._next_prune:
            self._next_prune = now + _PRUNE_EVERY_S
            await self._prune(now)
        # With min_replica_acks, the lease (and so every accept before it: one replication
        # stream) is on the replicas before anything is sent: a message whose POST got a 503
        # is never delivered from a primary that dies before replicating it, only for the
        # caller's retry to make it again under a new id.
        replies = await self._replicated_script(
            LEASE,
            (),
            [
                self._p,
                self._group,
                repr(now),
                self._finished_ttl_s,
                self.consumer,
                n,
                repr(now + lease_s),
                _PROMOTE_CAP,
                max(1000, n * _READ_CAP_FACTOR),
                *sorted(exclude_apps),
            ],
        )
        return await self._shared.filled(decode_messages(replies))

    async def _prune(self, now: float) -> None:
        """Drop messages finished more than retention_s ago, with their counts and indexes."""
        cutoff = repr(now - self._retention_s)
        while await self._msg_script(PRUNE, cutoff, _PRUNE_CHUNK) == _PRUNE_CHUNK:
            pass
        for batch_id in await self._r.smembers(f"{self._p}:batch_work"):
            await self._batch_work(text(batch_id))
        await self._drop_dead_consumers()

    async def _drop_dead_consumers(self) -> None:
        """Remove other processes' consumers idle past consumer_idle_max_s from every group.

        Safe even if one still had entries pending: lease expiry lives in P:inflight, not in
        the group's pending list (see _leave_group).
        """
        redis = self._r
        for app in await redis.smembers(f"{self._p}:apps"):
            key = f"{self._p}:due:{text(app)}"
            try:
                for c in await redis.xinfo_consumers(key, self._group):
                    name = text(c["name"])
                    if name != self.consumer and int(c["idle"]) > self._consumer_idle_max_ms:
                        await redis.xgroup_delconsumer(key, self._group, name)
            except RedisError:  # no stream or group yet (nothing read it), or gone meanwhile
                continue

    @maps_redis_errors
    async def ack(self, msg_id: str, lease_token: int, result: SendResult) -> Status | None:
        msgid = "" if result.wechat_msgid is None else str(result.wechat_msgid)
        ack = [msg_id, str(lease_token), msgid, repr(result.sent_at)]
        done = await self._acks.submit(ack)
        # The script answers 0 for a fenced ack, else the status the message ends in.
        return None if isinstance(done, int) else Status(text(done))

    async def _run_acks(self, acks: list[list[str]]) -> list[int | bytes | str]:
        results: list[int | bytes | str] = await self._replicated_script(
            ACK, (), self._msg_args([pack(acks)])
        )
        return results

    @maps_redis_errors
    async def retry(
        self,
        msg_id: str,
        lease_token: int,
        at: float,
        error: ErrorInfo | None,
        count_attempt: bool,
    ) -> bool:
        # A release (no error, not counted) is `retrying` too, as in SQLite: stats agree.
        done = await self._msg_script(
            RETRY,
            msg_id,
            lease_token,
            repr(at),
            1 if count_attempt else 0,
            "" if error is None else error.errcode,
            "" if error is None else error.errmsg,
        )
        return bool(done)

    @maps_redis_errors
    async def dead(self, msg_id: str, lease_token: int, error: ErrorInfo) -> bool:
        member = dead_member(self._clock.now(), msg_id)
        done = await self._msg_script(
            DEAD, msg_id, lease_token, error.errcode, error.errmsg, member
        )
        return bool(done)

    @maps_redis_errors
    async def expire(self, msg_id: str, lease_token: int) -> bool:
        return bool(await self._msg_script(EXPIRE, msg_id, lease_token))

    @maps_redis_errors
    async def cancel(self, msg_id: str) -> str:
        return text(await self._msg_script(CANCEL, msg_id))

    @maps_redis_errors
    async def get(self, msg_id: str) -> Message | None:
        found = decode_message(await self._r.hmget(f"{self._p}:msg:{msg_id}", MESSAGE_FIELDS))
        return await self._shared.filled_one(found)

    @maps_redis_errors
    async def find_by_wechat_msgid(self, app: str, wechat_msgid: int) -> Message | None:
        flat = await self._script(
            FIND_BY_MSGID, [f"{self._p}:msgid:{app}"], [f"{self._p}:msg:", str(wechat_msgid)]
        )
        return await self._shared.filled_one(decode_message(flat) if flat else None)

    @maps_redis_errors
    async def record_receipt(
        self,
        app: str,
        wechat_msgid: int,
        receipt: str,
        event_key: str,
        openid: str | None = None,
        message_id: str | None = None,
    ) -> Message | None:
        flat = await self._msg_script(
            RECEIPT,
            app,
            str(wechat_msgid),
            event_key,
            receipt_status(receipt).value,
            receipt,
            _EVENT_TTL_S,
            _EARLY_RECEIPT_TTL_S,
            "" if openid is None else f"={openid}",  # "=": an empty openid is still checked
            message_id or "",
        )
        return await self._shared.filled_one(decode_message(flat) if flat else None)

    @maps_redis_errors
    async def stats(self) -> StoreStats:
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hgetall(f"{self._p}:counts")
            pipe.zrange(f"{self._p}:pending", 0, 0, withscores=True)
            pipe.hgetall(f"{self._p}:pruned")
            counts, oldest, pruned = await pipe.execute()
        by_status, by_app = decode_counts(counts)
        return StoreStats(
            by_status=by_status,
            by_app=by_app,
            oldest_pending_at=float(oldest[0][1]) if oldest else None,
            pruned_by_app=decode_counts(pruned)[1],
            lease_expirations=decode_expirations(counts),
        )

    @maps_redis_errors
    async def dead_letters(
        self,
        app: str | None = None,
        errcode: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Message], str | None]:
        reply = await self._msg_script(
            DEAD_LETTERS,
            app or "",
            "" if errcode is None else errcode,
            cursor or "",
            max(1, limit),
            _DEAD_SCAN_BUDGET,
        )
        next_cursor = text(reply[0]) or None
        return await self._shared.filled(decode_messages(reply[1:])), next_cursor

    @maps_redis_errors
    async def redrive(
        self,
        app: str,
        errcodes: Sequence[int],
        died_before: float,
        max_rounds: int,
        limit: int,
    ) -> int:
        """Walks the dead letters that died by `died_before`, oldest first, in script calls
        of _REQUEUE_CHUNK entries (each short), until `limit` moved or none are left."""
        if not errcodes or limit <= 0:
            return 0
        codes = ",".join(str(int(c)) for c in errcodes)
        # ';' sorts right after ':', so this bound takes every member of that time too.
        upper = "[" + dead_member(died_before, "")[:-1] + ";"
        total, cursor = 0, ""
        while total < limit:
            moved, cursor = await self._msg_script(
                REDRIVE, app, codes, cursor, upper, max_rounds, limit - total, _REQUEUE_CHUNK
            )
            total += int(moved)
            cursor = text(cursor)
            if not cursor:
                break
        return total

    @maps_redis_errors
    async def find_messages(
        self, query: MessageQuery, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[Message], str | None]:
        page, next_cursor = await find.find_messages(self._r, self._p, query, cursor, limit)
        return await self._shared.filled(page), next_cursor

    @maps_redis_errors
    async def requeue(
        self,
        ids: Sequence[str] | None = None,
        app: str | None = None,
        errcode: int | None = None,
    ) -> int:
        filters = (app or "", "" if errcode is None else errcode)
        if ids is not None:
            moved, _ = await self._msg_script(REQUEUE, "ids", *filters, "", 0, *ids)
            return int(moved)
        total, cursor = 0, ""
        while True:
            moved, cursor = await self._msg_script(
                REQUEUE, "filter", *filters, cursor, _REQUEUE_CHUNK
            )
            total += int(moved)
            if not cursor:
                return total
