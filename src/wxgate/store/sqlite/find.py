"""Finding messages on SQLite (store/search.py): walk one index newest first, then read the
page's rows whole. Runs on the reader thread."""

from __future__ import annotations

from collections.abc import Iterator

from wxgate.models import Message
from wxgate.store import search
from wxgate.store.search import Candidate, MessageQuery
from wxgate.store.sqlite.rows import COLUMNS, Conn, json_param, row_message

_LIGHT = "created_at, id, app, status, batch_id"
_BY_IDS = f"SELECT {COLUMNS} FROM messages WHERE id IN (SELECT value FROM json_each(?))"


def _walk(conn: Conn, query: MessageQuery, cursor: str | None) -> Iterator[Candidate]:
    """Rows newest first from the cursor, streamed: the page stops reading when it is full.
    INDEXED BY: the walk must follow the index's order, never sort a whole table."""
    index = "messages_touser" if query.touser is not None else "messages_created"
    sql = f"SELECT {_LIGHT} FROM messages INDEXED BY {index} WHERE 1"
    params: list[object] = []
    if query.touser is not None:
        sql += " AND touser = ?"
        params.append(query.touser)
    at = search.start(query, cursor)
    if at is not None:
        sql += " AND (created_at, id) < (?, ?)"
        params.extend(at)
    sql += " ORDER BY created_at DESC, id DESC"
    yield from conn.execute(sql, params)


def find_messages(
    conn: Conn, query: MessageQuery, cursor: str | None, limit: int
) -> tuple[list[Message], str | None]:
    ids, next_cursor = search.page_of(query, _walk(conn, query, cursor), limit)
    if not ids:
        return [], next_cursor
    found = {m.id: m for m in map(row_message, conn.execute(_BY_IDS, (json_param(ids),)))}
    return [found[i] for i in ids if i in found], next_cursor
