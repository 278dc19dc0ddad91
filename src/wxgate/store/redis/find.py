"""Finding messages on Redis (store/search.py), read-only: no script, so nothing to declare.

Two sorted sets, written by enqueue.lua and emptied by prune.lua with the message: P:created
(every message) and P:to:{touser} (one recipient's), all members at score 0 named
"{created_at:020.6f}:{id}" (codec.dead_member's form), so lex order is time order and a member
is a cursor. A page walks one of them newest first in chunks (ZRANGE BYLEX REV), reads each
walked message's app, status and batch in one pipeline, and stops where search.Pager says. A
member whose message Redis already dropped (the finished-message TTL, a safety net behind the
prune) is skipped. All keys share the prefix, so on Cluster they are in its one slot.
"""

from __future__ import annotations

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


async def _chunk(
    redis: Redis | RedisCluster, prefix: str, key: str, top: str
) -> tuple[list[Candidate], str | None]:
    """Up to CHUNK walked rows below `top` (a ZRANGE BYLEX bound) and the bound after them
    (None when the index has no more)."""
    reply = await redis.zrange(key, top, "-", desc=True, bylex=True, offset=0, num=CHUNK)
    members = [text(m) for m in reply if isinstance(m, (bytes, str))]
    if not members:
        return [], None
    ids = [m[_ID_AT:] for m in members]
    async with redis.pipeline(transaction=False) as pipe:
        for msg_id in ids:
            pipe.hmget(f"{prefix}:msg:{msg_id}", ("app", "status", "batch_id"))
        found = await pipe.execute()
    rows: list[Candidate] = []
    for member, msg_id, (app, status, batch_id) in zip(members, ids, found, strict=True):
        if app is None or status is None:
            continue  # dropped by Redis's TTL: the index entry outlived it
        at = float(member[:DEAD_TIME_WIDTH])
        rows.append((at, msg_id, text(app), text(status), text(batch_id) if batch_id else None))
    return rows, None if len(members) < CHUNK else "(" + members[-1]


async def find_messages(
    redis: Redis | RedisCluster, prefix: str, query: MessageQuery, cursor: str | None, limit: int
) -> tuple[list[Message], str | None]:
    pager = search.Pager(query, limit)
    at = search.start(query, cursor)
    top: str | None = "+" if at is None else "(" + dead_member(*at)
    key = _index(prefix, query)
    while top is not None:
        rows, top = await _chunk(redis, prefix, key, top)
        if not all(pager.take(row) for row in rows):
            break
    if not pager.ids:
        return [], pager.cursor
    async with redis.pipeline(transaction=False) as pipe:
        for msg_id in pager.ids:
            pipe.hmget(f"{prefix}:msg:{msg_id}", MESSAGE_FIELDS)
        values = await pipe.execute()
    page = [m for m in map(decode_message, values) if m is not None]
    return page, pager.cursor
