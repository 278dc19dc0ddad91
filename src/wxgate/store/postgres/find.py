"""Finding messages on PostgreSQL (store/search.py): walk one index newest first in chunks,
then read the page's rows whole."""

from __future__ import annotations

import asyncpg

from wxgate.models import Message
from wxgate.store import search
from wxgate.store.postgres.rows import COLUMNS, row_message
from wxgate.store.search import Candidate, MessageQuery

CHUNK = 200  # rows per index read: most pages end within the first
_BY_IDS = f"SELECT {COLUMNS} FROM messages WHERE id = ANY($1::text[])"


async def _chunk(
    conn: asyncpg.Connection, query: MessageQuery, after: tuple[float, str] | None
) -> list[Candidate]:
    sql = "SELECT created_at, id, app, status, batch_id FROM messages WHERE true"
    params: list[object] = []
    if query.touser is not None:
        params.append(query.touser)
        sql += f" AND touser = ${len(params)}"
    if after is not None:
        params.extend(after)
        sql += f" AND (created_at, id) < (${len(params) - 1}, ${len(params)})"
    params.append(CHUNK)
    sql += f" ORDER BY created_at DESC, id DESC LIMIT ${len(params)}"
    return [(r[0], r[1], r[2], r[3], r[4]) for r in await conn.fetch(sql, *params)]


async def find_messages(
    conn: asyncpg.Connection, query: MessageQuery, cursor: str | None, limit: int
) -> tuple[list[Message], str | None]:
    pager = search.Pager(query, limit)
    after = search.start(query, cursor)
    while True:
        rows = await _chunk(conn, query, after)
        if not all(pager.take(row) for row in rows) or len(rows) < CHUNK:
            break
        after = (rows[-1][0], rows[-1][1])
    if not pager.ids:
        return [], pager.cursor
    found = {m.id: m for m in map(row_message, await conn.fetch(_BY_IDS, pager.ids))}
    return [found[i] for i in pager.ids if i in found], pager.cursor
