"""The Redis key layout's version (`P:layout`), and the move of a store written by an older
wxgate to the current one, done once at `open` by whichever process gets there first.

Layout 1 kept every key under the deployment's prefix P (one `{prefix}` tag on Cluster: one
shard). Layout 2 (queue.py's docstring) keeps each app's keys under `{prefix:app}` and adds the
batch -> app map. The move is chunked and resumable: every step can run again after
a crash part-way (a key moved is no longer found under its old name; counters are written as
values, not added), under a lock other processes wait on, and the marker is set last, so no
process serves a half-moved store. Stop the processes of the older version first: one still
running would keep writing layout 1 keys.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from wxgate.errors import StoreError, StoreUnavailable
from wxgate.store.redis.codec import DEAD_TIME_WIDTH
from wxgate.store.redis.refusals import refuses_writes

LAYOUT = 2
_CHUNK = 500
_LOCK_MS = 30_000  # renewed every chunk; a migrator that died frees it this long after
_WAIT_S = 900.0  # how long a process waits for another one's migration before giving up
_POLL_S = 0.2
_MEMBER_ID_AT = DEAD_TIME_WIDTH + 1  # "{time, fixed width}:{id}" members
# Keys of layout 1 that a store which ever held a message has (any one is enough to tell).
_V1_MARKS = ("counts", "seq", "done", "pending", "delayed", "dead", "wh:seq")


def _glob(text: str) -> str:
    """`text` matched literally in a SCAN pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Migration:
    """Layout 1 -> 2 for one deployment's keys (see the module docstring)."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        p: str,
        app_prefix: Callable[[str], str],
    ) -> None:
        self.r = redis
        self.p = p
        self.a = app_prefix
        self.cluster = isinstance(redis, RedisCluster)
        self.apps: set[str] = set()
        self.owner = secrets.token_hex(8)
        self.lock = f"{p}:lock:layout"

    # ------------------------------------------------------------------ entry

    async def ensure(self) -> None:
        """Return once the store is at LAYOUT: moved here, by another process, or new."""
        deadline = time.monotonic() + _WAIT_S
        while True:
            raw = await self.r.get(f"{self.p}:layout")
            if raw is not None:
                found = int(raw)
                if found > LAYOUT:
                    raise StoreError(
                        f"redis: the store's key layout is {found}, newer than this wxgate "
                        f"understands ({LAYOUT}): run the newer wxgate"
                    )
                if found == LAYOUT:
                    return
            try:
                locked = await self.r.set(self.lock, self.owner, nx=True, px=_LOCK_MS)
            except RedisError as exc:
                if not refuses_writes(exc):
                    raise
                # A replica, a primary short of replicas, a cluster down: no write now, so the
                # store opens not ready (/readyz 503) rather than not at all, unless it holds
                # the old layout, which must be moved before anything is served.
                if await self._is_v1():
                    raise StoreUnavailable(
                        f"redis: the store holds the old key layout and cannot take writes "
                        f"({exc}); start wxgate once the primary takes writes to move it"
                    ) from None
                return
            if locked:
                try:
                    if await self._is_v1():
                        await self._move_all()
                    await self.r.set(f"{self.p}:layout", LAYOUT)
                finally:
                    if await self.r.get(self.lock) == self.owner.encode():
                        await self.r.delete(self.lock)
                return
            if time.monotonic() > deadline:
                raise StoreUnavailable(
                    "redis: another process has been moving the store to the new key layout "
                    f"for over {_WAIT_S:.0f} s; try again when it is done"
                )
            await asyncio.sleep(_POLL_S)

    async def _is_v1(self) -> bool:
        keys = [f"{self.p}:{k}" for k in _V1_MARKS]
        if self.cluster:  # the keys of layout 1 share the {prefix} slot, but ask one by one
            return any([await self.r.exists(k) for k in keys])
        return bool(await self.r.exists(*keys))

    async def _renew(self) -> None:
        await self.r.pexpire(self.lock, _LOCK_MS)

    # ------------------------------------------------------------------ the steps

    async def _move_all(self) -> None:
        self.apps = {_s(a) for a in await self.r.smembers(f"{self.p}:apps")}
        # Longest names first: app "a:b"'s keys are moved before app "a"'s pattern sees them.
        for app in sorted(self.apps, key=len, reverse=True):
            await self._app_keys(app)
        await self._batches()
        # The indexes are split by each message's app, read where the message still is: so
        # before the messages move (a run cut short here finds the rest where they were).
        for name in ("delayed", "inflight", "pending"):
            await self._split_zset(f"{self.p}:{name}", lambda m: m)
        for name in ("dead", "created"):
            await self._split_zset(f"{self.p}:{name}", lambda m: m[_MEMBER_ID_AT:])
        async for key in self._scan(f"{_glob(self.p)}:to:*"):
            await self._split_zset(key, lambda m: m[_MEMBER_ID_AT:])
        await self._done()
        await self._counters()
        await self._outbox()
        await self._messages()
        if self.apps:
            await self.r.sadd(f"{self.p}:apps", *sorted(self.apps))
        for name in ("counts", "pruned", "seq", "rr", "batch_rates", "batch_work", "wh:seq"):
            await self.r.delete(f"{self.p}:{name}")
        await self.r.delete(f"{self.p}:wh:counts")

    async def _messages(self) -> None:
        """Each message hash to its app's prefix."""
        start = len(f"{self.p}:msg:")
        async for keys in self._scan_chunks(f"{_glob(self.p)}:msg:*"):
            apps = await self._pipe([("HGET", k, "app") for k in keys])
            moves: list[tuple[str, str]] = []
            for key, app in zip(keys, apps, strict=True):
                if app is not None:
                    self.apps.add(_s(app))
                    moves.append((key, f"{self.a(_s(app))}:msg:{key[start:]}"))
            await self._move(moves)
            await self._renew()

    async def _owners(self, ids: Sequence[str]) -> list[Any]:
        """The app of each message, from its hash where layout 1 keeps it (None: gone)."""
        return await self._pipe([("HGET", f"{self.p}:msg:{i}", "app") for i in ids])

    async def _app_keys(self, app: str) -> None:
        """The keys named by app: its stream, msgid map, idempotency keys, early receipts and
        seen callback events."""
        a, p = self.a(app), self.p
        await self._move([(f"{p}:due:{app}", f"{a}:due"), (f"{p}:msgid:{app}", f"{a}:msgid:{app}")])
        for kind in ("idem", "receipt", "event"):
            async for keys in self._scan_chunks(f"{_glob(p)}:{kind}:{_glob(app)}:*"):
                await self._move([(k, a + k[len(p) :]) for k in keys])
                await self._renew()

    async def _batches(self) -> None:
        """Each batch's five keys to its app's prefix, P:batch_app first; the rates and
        pending work split by batch."""
        start = len(f"{self.p}:batch:")
        seen: set[str] = set()
        async for keys in self._scan_chunks(f"{_glob(self.p)}:batch:*"):
            for key in keys:
                bid = key[start:].split(":", 1)[0]
                if bid in seen:
                    continue
                seen.add(bid)
                app = await self._batch_app(bid)
                if app is None:
                    continue
                base, new = f"{self.p}:batch:{bid}", f"{self.a(app)}:batch:{bid}"
                suffixes = ("", ":counts", ":errcodes", ":parked", ":ids")
                await self._move([(base + s, new + s) for s in suffixes])
            await self._renew()
        rates = await self.r.hgetall(f"{self.p}:batch_rates")
        for bid, rate in rates.items():
            app = await self._batch_app(_s(bid))
            if app is not None:
                await self.r.hset(f"{self.a(app)}:batch_rates", bid, rate)
        for bid in await self.r.smembers(f"{self.p}:batch_work"):
            app = await self._batch_app(_s(bid))
            if app is not None:
                await self.r.sadd(f"{self.a(app)}:batch_work", bid)

    async def _batch_app(self, bid: str) -> str | None:
        known = await self.r.hget(f"{self.p}:batch_app", bid)
        if known is not None:
            return _s(known)
        doc = await self.r.hget(f"{self.p}:batch:{bid}", "doc")
        if doc is None:
            return None
        app = str(json.loads(doc)["app"])
        self.apps.add(app)
        await self.r.hset(f"{self.p}:batch_app", bid, app)
        return app

    async def _split_zset(self, key: str, id_of: Callable[[str], str]) -> None:
        """A sorted set of every app's members into one per app (same name under each app's
        prefix), by each message's app; members of messages gone are dropped."""
        rest = key[len(self.p) :]
        while True:
            chunk = await self._zchunk(key)
            if not chunk:
                return
            members = chunk
            owners = await self._owners([id_of(m) for m, _ in members])
            adds: list[tuple[Any, ...]] = []
            for (member, score), owner in zip(members, owners, strict=True):
                if owner is not None:
                    adds.append(("ZADD", self.a(_s(owner)) + rest, repr(score), member))
            await self._pipe(adds)
            await self.r.zrem(key, *[m for m, _ in members])
            await self._renew()

    async def _done(self) -> None:
        """The finished list ("{at}|{id}", finishing order) split by app, order kept."""
        key = f"{self.p}:done"
        while True:
            entries = [_s(e) for e in await self.r.lrange(key, 0, _CHUNK - 1)]
            if not entries:
                return
            owners = await self._owners([e.split("|", 1)[1] for e in entries])
            pushes = [
                ("RPUSH", f"{self.a(_s(owner))}:done", entry)
                for entry, owner in zip(entries, owners, strict=True)
                if owner is not None
            ]
            await self._pipe(pushes)
            # A crash here pushes these again on the next run: prune consumes a stale entry.
            await self.r.ltrim(key, len(entries), -1)
            await self._renew()

    async def _counters(self) -> None:
        """Counts, pruned counts and lease tokens per app, written as values (so a second run
        writes the same)."""
        counts = {_s(k): int(v) for k, v in (await self.r.hgetall(f"{self.p}:counts")).items()}
        pruned = {_s(k): int(v) for k, v in (await self.r.hgetall(f"{self.p}:pruned")).items()}
        per_app: dict[str, dict[str, int]] = {}
        for field, n in counts.items():
            if field.startswith("a:"):
                app, status = field[2:].rsplit(":", 1)
                fields = per_app.setdefault(app, {})
                fields[field] = n
                fields[f"s:{status}"] = fields.get(f"s:{status}", 0) + n
            elif field.startswith("e:"):
                per_app.setdefault(field[2:], {})[field] = n
        for app, fields in per_app.items():
            self.apps.add(app)
            await self._hset(f"{self.a(app)}:counts", fields)
        by_app: dict[str, dict[str, int]] = {}
        for field, n in pruned.items():
            if field.startswith("a:"):
                by_app.setdefault(field[2:].rsplit(":", 1)[0], {})[field] = n
        for app, fields in by_app.items():
            await self._hset(f"{self.a(app)}:pruned", fields)
        for name in ("seq", "wh:seq"):
            top = await self.r.get(f"{self.p}:{name}")
            if top is not None:
                for app in self.apps:  # tokens and event ids only ever grow, per app too
                    await self.r.set(f"{self.a(app)}:{name}", int(top))

    async def _outbox(self) -> None:
        """Webhook events: the due and failed sets by each event's app, then the events."""
        for name in ("wh:due", "wh:failed"):
            key = f"{self.p}:{name}"
            while True:
                chunk = await self._zchunk(key)
                if not chunk:
                    break
                eids = [m for m, _ in chunk]
                owners = await self._pipe([("HGET", f"{self.p}:wh:{e}", "app") for e in eids])
                adds = [
                    ("ZADD", f"{self.a(_s(owner))}:{name}", repr(score), eid)
                    for eid, (_, score), owner in zip(eids, chunk, owners, strict=True)
                    if owner is not None
                ]
                await self._pipe(adds)
                await self.r.zrem(key, *eids)
                await self._renew()
        start = len(f"{self.p}:wh:")
        async for keys in self._scan_chunks(f"{_glob(self.p)}:wh:evt_*"):
            owners = await self._pipe([("HGET", k, "app") for k in keys])
            await self._move(
                [
                    (k, f"{self.a(_s(owner))}:wh:{k[start:]}")
                    for k, owner in zip(keys, owners, strict=True)
                    if owner is not None
                ]
            )
            await self._renew()
        delivered = await self.r.hget(f"{self.p}:wh:counts", "delivered")
        if delivered is not None and self.apps:  # stats sum the apps': one holds the total
            await self.r.hset(f"{self.a(min(self.apps))}:wh:counts", "delivered", delivered)

    # ------------------------------------------------------------------ Redis helpers

    async def _scan(self, pattern: str) -> Any:
        async for key in self.r.scan_iter(match=pattern, count=1000):
            yield _s(key)

    async def _scan_chunks(self, pattern: str) -> Any:
        """The keys matching `pattern`, in chunks, as SCAN finds them: a chunk is moved before
        the scan goes on, which is safe (SCAN returns every key present all along; a moved
        one no longer matches, and one seen twice is found gone the second time)."""
        chunk: list[str] = []
        async for key in self._scan(pattern):
            chunk.append(key)
            if len(chunk) >= _CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    async def _hset(self, key: str, fields: dict[str, int]) -> None:
        flat = [x for field, n in fields.items() for x in (field, n)]
        await self.r.execute_command("HSET", key, *flat)

    async def _zchunk(self, key: str) -> list[tuple[str, float]]:
        """The first _CHUNK members of a sorted set, with their scores."""
        raw: list[Any] = await self.r.zrange(key, 0, _CHUNK - 1, withscores=True)
        return [(_s(m), float(score)) for m, score in raw]

    async def _pipe(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        if not commands:
            return []
        async with self.r.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            replies: list[Any] = await pipe.execute()
        return replies

    async def _move(self, moves: Sequence[tuple[str, str]]) -> None:
        """Rename keys, a chunk per round trip; on Cluster, where a key cannot be renamed
        into another slot, copy (DUMP + RESTORE, TTL kept) and delete. A key already moved
        is skipped."""
        if not moves:
            return
        if not self.cluster:
            async with self.r.pipeline(transaction=False) as pipe:
                for src, dst in moves:
                    pipe.rename(src, dst)
                done = await pipe.execute(raise_on_error=False)
            for reply in done:
                if isinstance(reply, Exception) and "no such key" not in str(reply).lower():
                    raise reply
            return
        found = await self._pipe([c for src, _ in moves for c in (("DUMP", src), ("PTTL", src))])
        copies: list[tuple[Any, ...]] = []
        gone: list[tuple[Any, ...]] = []
        for k, (src, dst) in enumerate(moves):
            dump, ttl = found[2 * k], found[2 * k + 1]
            if dump is None:
                continue
            copies.append(("RESTORE", dst, max(0, int(ttl)), dump, "REPLACE"))
            gone.append(("DEL", src))
        await self._pipe(copies)
        await self._pipe(gone)
