"""Finding messages on Redis (store/search.py), read-only: no script, so nothing to declare.

Two sorted sets per app, written by enqueue.lua and emptied by prune.lua with the message:
A:created (every message) and A:to:{touser} (one recipient's), all members at score 0 named
"{created_at:020.6f}:{id}" (codec.dead_member's form), so lex order is time order and a member
is a cursor whichever app it is in. A search walks the index of each app it covers newest first
in chunks (ZRANGE BYLEX REV), merged into one walk in member order (the apps' chunks read in
one pipeline), reads each walked message's app, status and batch, and stops where
search.Pager says. A member whose message Redis already dropped (the finished-message TTL, a
safety net behind the prune) is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from redis.asyncio import Redis, RedisCluster

from wxgate.models import Message
from wxgate.store import search
from wxgate.store.redis.codec import DEAD_TIME_WIDTH, MESSAGE_FIELDS, dead_member, decode_message
from wxgate.store.redis.connection import text
from wxgate.store.search import Candidate, MessageQuery

CHUNK = 200
_ID_AT = DEAD_TIME_WIDTH + 1


def _index(prefix: str, query: MessageQuery) -> str:
    if query.touser is not None:
        return f"{prefix}:to:{query.touser}"
    return f"{prefix}:created"


class _Walk:
    """The apps' indexes walked as one, newest member first."""

    def __init__(
        self, redis: Redis | RedisCluster, prefixes: Sequence[str], query: MessageQuery, top: str
    ) -> None:
        self.redis = redis
        self.keys = [_index(p, query) for p in prefixes]
        self.prefixes = list(prefixes)
        self.tops: list[str | None] = [top] * len(prefixes)  # None: that index is done
        self.buffers: list[list[str]] = [[] for _ in prefixes]

    async def chunk(self) -> list[Candidate]:
        """The next walked rows, newest first: every member above the highest point an
        unfinished index has not been read past, after refilling the empty buffers."""
        refill = [i for i, b in enumerate(self.buffers) if not b and self.tops[i] is not None]
        if refill:
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in refill:
                    top = self.tops[i] or "+"
                    pipe.zrange(self.keys[i], top, "-", desc=True, bylex=True, offset=0, num=CHUNK)
                replies = await pipe.execute()
            for i, reply in zip(refill, replies, strict=True):
                members = [text(m) for m in reply if isinstance(m, (bytes, str))]
                self.buffers[i] = members
                self.tops[i] = None if len(members) < CHUNK else "(" + members[-1]
        # Safe to hand out: members above every unfinished index's last read member.
        floor = max(
            (b[-1] for i, b in enumerate(self.buffers) if b and self.tops[i] is not None),
            default="",
        )
        taken: list[tuple[str, int]] = []
        for i, b in enumerate(self.buffers):
            keep = [m for m in b if m < floor] if floor else []
            taken += [(m, i) for m in b if not floor or m >= floor]
            self.buffers[i] = keep
        taken.sort(reverse=True)
        return await self._rows(taken)

    def done(self) -> bool:
        return all(t is None for t in self.tops) and not any(self.buffers)

    async def _rows(self, taken: list[tuple[str, int]]) -> list[Candidate]:
        if not taken:
            return []
        ids = [m[_ID_AT:] for m, _ in taken]
        async with self.redis.pipeline(transaction=False) as pipe:
            for (_, i), msg_id in zip(taken, ids, strict=True):
                pipe.hmget(f"{self.prefixes[i]}:msg:{msg_id}", ("app", "status", "batch_id"))
            found = await pipe.execute()
        rows: list[Candidate] = []
        for (member, _), msg_id, (app, status, batch_id) in zip(taken, ids, found, strict=True):
            if app is None or status is None:
                continue  # dropped by Redis's TTL: the index entry outlived it
            at = float(member[:DEAD_TIME_WIDTH])
            rows.append((at, msg_id, text(app), text(status), text(batch_id) if batch_id else None))
        return rows


async def find_messages(
    redis: Redis | RedisCluster,
    prefixes: Mapping[str, str],
    query: MessageQuery,
    cursor: str | None,
    limit: int,
) -> tuple[list[Message], str | None]:
    """`prefixes`: app -> key prefix, for the apps the query covers."""
    pager = search.Pager(query, limit)
    at = search.start(query, cursor)
    top = "+" if at is None else "(" + dead_member(*at)
    walk = _Walk(redis, list(prefixes.values()), query, top)
    where: dict[str, str] = {}
    while not walk.done():
        rows = await walk.chunk()
        for row in rows:
            where[row[1]] = row[2]
        if not all(pager.take(row) for row in rows):
            break
    if not pager.ids:
        return [], pager.cursor
    async with redis.pipeline(transaction=False) as pipe:
        for msg_id in pager.ids:
            pipe.hmget(f"{prefixes[where[msg_id]]}:msg:{msg_id}", MESSAGE_FIELDS)
        values = await pipe.execute()
    page = [m for m in map(decode_message, values) if m is not None]
    return page, pager.cursor
