"""RedisStore's MessageQueue role: messages from accept to a final status.

Due work sits in one Stream per app read through one consumer group per deployment; everything
time-based (scheduled sends, retries, lease expiry) sits in sorted sets judged by the `now`
callers pass, so the store keeps the contract under a fake clock too.

Keys under an app's prefix A = `{prefix:app}` (one hash slot per app on Cluster; batches:
batches.py; the outbox: outbox.py):
  A:msg:{id}              hash    a message (codec.py); Redis drops it retention_s + 1 day
                                  after it finished, a safety net behind the lease's prune
  A:due                   stream  the app's due messages; consumer group `group`; acked
                                  entries are trimmed below the oldest unacked one
  A:delayed               zset    scheduled/retrying messages by not_before, moved to the
                                  stream by the lease script once due
  A:inflight              zset    leased messages by lease_until. An expired lease goes back to
                                  the stream and is re-leased with a new, larger token from
                                  A:seq: what XAUTOCLAIM would do, but in the callers' time
                                  rather than Redis idle time (the contract, fake clocks)
  A:pending               zset    waiting messages by created_at (oldest_pending_at)
  A:done                  list    "{finished_at}|{id}" in finishing order, pruned after
                                  retention together with counts, indexes and the idem key
  A:dead                  zset    dead letters, member "{time:020.6f}:{id}" (lex = time order,
                                  the member is the page cursor)
  A:counts                hash    counts by status and app+status (stats() sums the apps')
  A:pruned                hash    finished messages prune dropped, by app+status
  A:idem:{app}:{key}      string  idempotency key -> id (the body fingerprint is the message
                                  hash's `idem_digest` field)
  A:msgid:{app}           hash    WeChat msgid -> id
  A:receipt:{app}:{msgid} hash    a receipt that beat the ack, applied by the ack script
  A:event:{app}:{key}     string  receipt event already seen (1 hour)
Keys of the deployment (P: the prefix, `{prefix}` on Cluster):
  P:apps                  set     every app that had a message (written before its first)
  P:layout                string  the key layout's version (layout.py)
A call that names only a message id (get, cancel, requeue by id) asks every app in one
round trip; a worker's ack, retry, dead or expire of what it leased knows the app.

Fairness: a lease reads the apps round-robin in equal shares (the start rotates per call, per
process), one script call per app, all in one round trip; an app that runs dry gives its share
to the others in a second round. Leasing a message whose lease had expired adds one to the
`e:{app}` field of A:counts (StoreStats.lease_expirations).

Lease expiry compares the lease_until one process wrote with another's `now`: keep the
machines' clocks synchronised (NTP); skew lengthens or shortens a lease by the skew.

Round trips: concurrent enqueue and ack calls of one app are coalesced into one script call
each (group commit); lease takes n messages per call.
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
from wxgate.store.redis.connection import Call, maps_redis_errors, text
from wxgate.store.redis.scripts import message_script, script
from wxgate.store.search import MessageQuery

# Calls with more messages than this go alone (a 10,000-recipient batch is one script call).
_COALESCE_MAX_MESSAGES = 256
_COALESCE_MAX_CALLS = 256
# Per lease call: due messages promoted / expired leases returned, and stream entries read.
_PROMOTE_CAP = 2000
_READ_CAP_FACTOR = 8
_PRUNE_EVERY_S = 60.0
_HELD_MAX = 200_000  # leased ids remembered; past it, outcomes ask every app instead
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
        # Group commits: concurrent calls share one round trip, one script call per app in
        # it (each app's keys are in a slot of their own on Cluster).
        self._enqueues: Coalescer[_Enqueue, list[Any]] = Coalescer(
            self._run_enqueues, _COALESCE_MAX_CALLS
        )
        self._acks: Coalescer[tuple[str, list[str]], Any] = Coalescer(
            self._run_acks, _COALESCE_MAX_CALLS
        )
        # What this process leased and has not finished yet: id -> app, so the worker's
        # ack, retry, dead or expire need not ask every app.
        self._held: dict[str, str] = {}
        self._turn = 0
        self._next_prune = 0.0

    async def _drain_queue(self) -> None:
        """Let coalesced enqueues and acks finish, then leave the consumer groups."""
        await self._enqueues.wait_idle()
        await self._acks.wait_idle()
        await self._leave_group()

    async def _leave_group(self) -> None:
        """Drop this process's consumer from every app's group, so restarts do not pile them up.

        Safe with leases still held: lease expiry is tracked in A:inflight, not in the group's
        pending list, so another process re-leases them on time either way. Best effort: a
        process that dies without closing leaves its (empty) consumer behind.
        """
        redis = self._r
        try:
            apps = await self._app_names(fresh=True)
            async with redis.pipeline(transaction=False) as pipe:
                for app in apps:
                    pipe.xgroup_delconsumer(f"{self._a(app)}:due", self._group, self.consumer)
                await pipe.execute(raise_on_error=False)
        except (RedisError, OSError):
            pass

    async def _app_of(self, msg_id: str) -> str | None:
        app = self._held.get(msg_id)
        if app is None:
            app = (await self._locate([msg_id])).get(msg_id)
        return app

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
        """One call's messages, split by app: one script per app (a call naming several apps
        is all-or-nothing per app; the gateway's calls name one)."""
        now = self._clock.now()
        apps = {msg.app for msg in messages}
        if batch is not None:
            apps.add(batch.app)
        await self._register_apps(apps)
        if len(apps) == 1:  # every call the gateway makes
            [app] = apps
            results = await self._enqueue_app(app, messages, batch, now)
            if batch is not None and batch.shared is not None:
                self._shared.put(batch.id, batch.shared)
            return results
        by_app: dict[str, list[int]] = {app: [] for app in sorted(apps)}
        for i, msg in enumerate(messages):
            by_app[msg.app].append(i)
        calls = [
            self._enqueue_app(
                app,
                [messages[i] for i in where],
                batch if batch is not None and batch.app == app else None,
                now,
            )
            for app, where in by_app.items()
        ]
        replies = await asyncio.gather(*calls)
        placed: list[EnqueueResult | None] = [None] * len(messages)
        for where, reply in zip(by_app.values(), replies, strict=True):
            for i, result in zip(where, reply, strict=True):
                placed[i] = result
        if batch is not None and batch.shared is not None:
            self._shared.put(batch.id, batch.shared)
        return [r for r in placed if r is not None]

    async def _enqueue_app(
        self, app: str, messages: Sequence[Message], batch: Batch | None, now: float
    ) -> list[EnqueueResult]:
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
        item = _Enqueue(app, group, [m.id for m in messages], batch)
        if len(messages) > _COALESCE_MAX_MESSAGES:
            [reply] = await self._run_enqueues([item])
        else:
            reply = await self._enqueues.submit(item)
        if isinstance(reply, Exception):
            raise reply
        if reply[0] != b"ok":
            raise StoreError(f"enqueue refused: {text(reply[1])}")
        return [
            EnqueueResult(
                id=text(reply[i]),
                status=Status(text(reply[i + 1])),
                created=reply[i + 2] == 1,
                conflict=reply[i + 2] == 2,
            )
            for i in range(1, len(reply), 3)
        ]

    async def _run_enqueues(self, items: list[_Enqueue]) -> list[list[Any]]:
        """A group commit: one enqueue script per app, in one round trip. A new batch's
        registry entries (the deployment's keys) go first (before the scripts on one Redis;
        a step ahead of them on Cluster), so recent_batches and get_batch find every batch
        stored; a refused call's are removed after."""
        by_app: dict[str, list[int]] = {}
        for k, item in enumerate(items):
            by_app.setdefault(item.app, []).append(k)
        first: list[tuple[Any, ...]] = []
        registered: dict[int, int] = {}  # item -> its batch's HSETNX among `first`
        for k, item in enumerate(items):
            if item.batch is not None:
                b = item.batch
                registered[k] = len(first)
                first.append(("HSETNX", f"{self._p}:batch_app", b.id, item.app))
                first.append(("ZADD", f"{self._p}:batches", "NX", repr(b.created_at), b.id))
        calls = [
            self._msg_call(app, ENQUEUE, len(where), *(items[k].group for k in where))
            for app, where in by_app.items()
        ]
        made, per_app = await self._pipeline(first, calls, replicate=True, keep_errors=True)
        replies: list[Any] = [[] for _ in items]
        for where, app_replies in zip(by_app.values(), per_app, strict=True):
            for k in where:  # an app's script failed: its calls fail (and only they)
                replies[k] = app_replies
            if not isinstance(app_replies, Exception):
                for k, reply in zip(where, app_replies, strict=True):
                    replies[k] = reply
        undo: list[tuple[Any, ...]] = []
        for k, item in enumerate(items):
            refused = isinstance(replies[k], Exception) or replies[k][0] != b"ok"
            if refused and item.batch is not None and made[registered[k]]:
                undo.append(("HDEL", f"{self._p}:batch_app", item.batch.id))
                undo.append(("ZREM", f"{self._p}:batches", item.batch.id))
        if undo:
            with contextlib.suppress(RedisError, OSError):
                async with self._r.pipeline(transaction=False) as pipe:
                    for command in undo:
                        pipe.execute_command(*command)
                    await pipe.execute()
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
        apps = [a for a in await self._app_names() if a not in exclude_apps]
        self._turn += 1

        async def take(wants: list[tuple[str, int]]) -> list[list[Message]]:
            # With min_replica_acks, the lease (and so every accept before it: one
            # replication stream) is on the replicas before anything is sent: a message
            # whose POST got a 503 is never delivered from a primary that dies before
            # replicating it, only for the caller's retry to make it again under a new id.
            replies = await self._run_scripts(
                [self._lease_call(app, want, now, lease_s) for app, want in wants],
                replicate=True,
            )
            if len(self._held) > _HELD_MAX:  # lost track (calls that never came): start over
                self._held.clear()
            leased = [decode_messages(reply) for reply in replies]
            for (app, _), msgs in zip(wants, leased, strict=True):
                for m in msgs:
                    self._held[m.id] = app
            return leased

        out = await self._share_out(apps, self._turn, n, take)
        return await self._shared.filled(out)

    def _lease_call(self, app: str, n: int, now: float, lease_s: float) -> Call:
        args = [
            self._a(app),
            self._group,
            repr(now),
            self._finished_ttl_s,
            self.consumer,
            n,
            repr(now + lease_s),
            _PROMOTE_CAP,
            max(1000, n * _READ_CAP_FACTOR),
        ]
        return LEASE, (self._anchor_of(app),), args

    async def _prune(self, now: float) -> None:
        """Drop messages finished more than retention_s ago, with their counts and indexes,
        app by app; finish batch work a process left half done."""
        cutoff = repr(now - self._retention_s)
        for app in await self._app_names(fresh=True):
            while True:
                consumed, gone_batches = await self._msg_script(app, PRUNE, cutoff, _PRUNE_CHUNK)
                await self._forget(gone_batches)
                if int(consumed) < _PRUNE_CHUNK:
                    break
            for batch_id in await self._r.smembers(f"{self._a(app)}:batch_work"):
                await self._batch_work(app, text(batch_id))
        await self._drop_dead_consumers()

    async def _forget(self, batch_ids: Sequence[bytes]) -> None:
        """The deployment's entries for the batches prune dropped."""
        if not batch_ids:
            return
        async with self._r.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.zrem(f"{self._p}:batches", batch_id)
                pipe.hdel(f"{self._p}:batch_app", batch_id)
            await pipe.execute()

    async def _drop_dead_consumers(self) -> None:
        """Remove other processes' consumers idle past consumer_idle_max_s from every group.

        Safe even if one still had entries pending: lease expiry lives in A:inflight, not in
        the group's pending list (see _leave_group).
        """
        redis = self._r
        for app in await self._app_names():
            key = f"{self._a(app)}:due"
            try:
                for c in await redis.xinfo_consumers(key, self._group):
                    name = text(c["name"])
                    if name != self.consumer and int(c["idle"]) > self._consumer_idle_max_ms:
                        await redis.xgroup_delconsumer(key, self._group, name)
            except RedisError:  # no stream or group yet (nothing read it), or gone meanwhile
                continue

    @maps_redis_errors
    async def ack(self, msg_id: str, lease_token: int, result: SendResult) -> Status | None:
        app = await self._app_of(msg_id)
        if app is None:
            return None
        msgid = "" if result.wechat_msgid is None else str(result.wechat_msgid)
        ack = [msg_id, str(lease_token), msgid, repr(result.sent_at)]
        done = await self._acks.submit((app, ack))
        if isinstance(done, Exception):
            raise done
        self._held.pop(msg_id, None)
        # The script answers 0 for a fenced ack, else the status the message ends in.
        return None if isinstance(done, int) else Status(text(done))

    async def _run_acks(self, acks: list[tuple[str, list[str]]]) -> list[Any]:
        """A group commit of acks: one script per app, in one round trip."""
        by_app: dict[str, list[int]] = {}
        for k, (app, _) in enumerate(acks):
            by_app.setdefault(app, []).append(k)
        calls = [
            self._msg_call(app, ACK, pack([acks[k][1] for k in where]))
            for app, where in by_app.items()
        ]
        results: list[Any] = [0] * len(acks)
        per_app = await self._run_scripts(calls, replicate=True, keep_errors=True)
        for where, done in zip(by_app.values(), per_app, strict=True):
            for k, one in zip(
                where, [done] * len(where) if isinstance(done, Exception) else done, strict=True
            ):
                results[k] = one  # an app's script failed: its acks fail (and only they)
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
        app = await self._app_of(msg_id)
        if app is None:
            return False
        # A release (no error, not counted) is `retrying` too, as in SQLite: stats agree.
        done = await self._msg_script(
            app,
            RETRY,
            msg_id,
            lease_token,
            repr(at),
            1 if count_attempt else 0,
            "" if error is None else error.errcode,
            "" if error is None else error.errmsg,
        )
        self._held.pop(msg_id, None)
        return bool(done)

    @maps_redis_errors
    async def dead(self, msg_id: str, lease_token: int, error: ErrorInfo) -> bool:
        app = await self._app_of(msg_id)
        if app is None:
            return False
        member = dead_member(self._clock.now(), msg_id)
        done = await self._msg_script(
            app, DEAD, msg_id, lease_token, error.errcode, error.errmsg, member
        )
        self._held.pop(msg_id, None)
        return bool(done)

    @maps_redis_errors
    async def expire(self, msg_id: str, lease_token: int) -> bool:
        app = await self._app_of(msg_id)
        if app is None:
            return False
        done = await self._msg_script(app, EXPIRE, msg_id, lease_token)
        self._held.pop(msg_id, None)
        return bool(done)

    @maps_redis_errors
    async def cancel(self, msg_id: str) -> str:
        app = await self._app_of(msg_id)
        if app is None:
            return "not_found"
        return text(await self._msg_script(app, CANCEL, msg_id))

    @maps_redis_errors
    async def get(self, msg_id: str) -> Message | None:
        held = self._held.get(msg_id)
        apps = [held] if held is not None else await self._app_names()
        if not apps:
            return None
        async with self._r.pipeline(transaction=False) as pipe:  # every app's, one round trip
            for app in apps:
                pipe.hmget(f"{self._a(app)}:msg:{msg_id}", MESSAGE_FIELDS)
            rows = await pipe.execute()
        found = next((m for m in map(decode_message, rows) if m is not None), None)
        return await self._shared.filled_one(found)

    @maps_redis_errors
    async def find_by_wechat_msgid(self, app: str, wechat_msgid: int) -> Message | None:
        a = self._a(app)
        keys, args = [f"{a}:msgid:{app}"], [f"{a}:msg:", str(wechat_msgid)]
        flat = await self._script(FIND_BY_MSGID, keys, args)
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
            app,
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
        """The apps' counters summed: one pipeline, three reads per app."""
        apps = await self._app_names()
        async with self._r.pipeline(transaction=False) as pipe:
            for app in apps:
                a = self._a(app)
                pipe.hgetall(f"{a}:counts")
                pipe.zrange(f"{a}:pending", 0, 0, withscores=True)
                pipe.hgetall(f"{a}:pruned")
            replies = await pipe.execute() if apps else []
        counts = merge_counts(replies[0::3])
        oldest = [float(o[0][1]) for o in replies[1::3] if o]
        by_status, by_app = decode_counts(counts)
        return StoreStats(
            by_status=by_status,
            by_app=by_app,
            oldest_pending_at=min(oldest) if oldest else None,
            pruned_by_app=decode_counts(merge_counts(replies[2::3]))[1],
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
        """One app's page, or every app's pages merged newest first: a page holds only what
        is newer than the furthest point any app stopped looking (its cursor), so a later
        page never skips one."""
        apps = [app] if app is not None else await self._app_names()
        limit = max(1, limit)
        args = ("" if errcode is None else errcode, cursor or "", limit, _DEAD_SCAN_BUDGET)
        replies = await self._run_scripts(
            [self._msg_call(a, DEAD_LETTERS, a if app is not None else "", *args) for a in apps]
        )
        rows: list[tuple[str, Any]] = []
        floor = ""  # members below the highest cursor of an app with more wait
        for reply in replies:
            more = text(reply[0])
            if more:
                floor = max(floor, more)
            rows += [(text(m), v) for m, v in zip(reply[1], reply[2:], strict=True)]
        rows.sort(key=lambda r: r[0], reverse=True)
        shown = [r for r in rows if not floor or r[0] >= floor]
        page = shown[:limit]
        next_cursor: str | None = None
        if len(shown) > limit:
            next_cursor = page[-1][0]
        elif floor:
            next_cursor = floor
        return await self._shared.filled(decode_messages([v for _, v in page])), next_cursor

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
                app, REDRIVE, app, codes, cursor, upper, max_rounds, limit - total, _REQUEUE_CHUNK
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
        apps = [query.app] if query.app is not None else await self._app_names()
        prefixes = {app: self._a(app) for app in apps}
        page, next_cursor = await find.find_messages(self._r, prefixes, query, cursor, limit)
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
            by_app: dict[str, list[str]] = {}
            for msg_id, owner in (await self._locate(list(ids))).items():
                by_app.setdefault(owner, []).append(msg_id)
            replies = await self._run_scripts(
                [
                    self._msg_call(owner, REQUEUE, "ids", *filters, "", 0, *owned)
                    for owner, owned in by_app.items()
                ]
            )
            return sum(int(moved) for moved, _ in replies)
        total = 0
        for owner in [app] if app is not None else await self._app_names():
            cursor = ""
            while True:
                moved, cursor = await self._msg_script(
                    owner, REQUEUE, "filter", *filters, cursor, _REQUEUE_CHUNK
                )
                total += int(moved)
                if not cursor:
                    break
        return total


class _Enqueue(msgspec.Struct, frozen=True):
    """One enqueue call's share of a group commit: its app, its packed script argument, the
    ids it writes and its new batch, if any."""

    app: str
    group: bytes
    ids: list[str]
    batch: Batch | None


def merge_counts(hashes: Sequence[dict[bytes, bytes]]) -> dict[bytes, bytes]:
    """Several apps' counter hashes as one (a field in several is summed)."""
    total: dict[bytes, int] = {}
    for fields in hashes:
        for field, value in fields.items():
            total[field] = total.get(field, 0) + int(value)
    return {f: str(v).encode() for f, v in total.items()}
