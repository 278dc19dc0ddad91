"""The SQLite reads: plain functions of (connection, args) run on the reader thread.

In WAL mode a reader sees the last commit and never waits for the writer, so reads here do
not slow down group commits and always see every write that has returned to its caller.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from wxgate.errors import ValidationError
from wxgate.models import AppPause, Batch, Message, SharedFields, Status, StoreStats, TokenEntry
from wxgate.store.batch_shared import decode_shared
from wxgate.store.sqlite_schema import COLUMNS, PENDING_OR, row_message, to_i64

Conn = sqlite3.Connection
_encode = msgspec.json.Encoder().encode


def get(conn: Conn, msg_id: str) -> Message | None:
    rows = conn.execute(f"SELECT {COLUMNS} FROM messages WHERE id = ?", (msg_id,)).fetchall()
    return row_message(rows[0]) if rows else None


def find_by_wechat_msgid(conn: Conn, app: str, wechat_msgid: int) -> Message | None:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM messages WHERE app = ? AND wechat_msgid = ? LIMIT 1",
        (app, to_i64(wechat_msgid)),
    ).fetchall()
    return row_message(rows[0]) if rows else None


def stats(conn: Conn) -> StoreStats:
    """From the counts table (maintained on every write) plus one index lookup."""
    conn.execute("BEGIN")  # one snapshot for both queries
    try:
        rows = conn.execute("SELECT app, status, n FROM counts WHERE n != 0").fetchall()
        oldest = conn.execute(
            f"SELECT min(created_at) FROM messages WHERE {PENDING_OR}"
        ).fetchall()[0][0]
        pruned_rows = conn.execute("SELECT app, status, n FROM pruned WHERE n != 0").fetchall()
        expired_rows = conn.execute("SELECT app, n FROM lease_expirations").fetchall()
    finally:
        conn.execute("COMMIT")
    by_status = {s.value: 0 for s in Status}
    by_app: dict[str, dict[str, int]] = {}
    for app, status, n in rows:
        by_status[status] = by_status.get(status, 0) + n
        by_app.setdefault(app, {})[status] = n
    pruned: dict[str, dict[str, int]] = {}
    for app, status, n in pruned_rows:
        pruned.setdefault(app, {})[status] = n
    return StoreStats(
        by_status=by_status,
        by_app=by_app,
        oldest_pending_at=oldest,
        pruned_by_app=pruned,
        lease_expirations={app: n for app, n in expired_rows},
    )


def _encode_cursor(finished_at: float, msg_id: str) -> str:
    return f"{finished_at!r}~{msg_id}"


def _decode_cursor(cursor: str) -> tuple[float, str]:
    at, sep, msg_id = cursor.partition("~")
    try:
        if not sep or not msg_id:
            raise ValueError(cursor)
        return float(at), msg_id
    except ValueError:
        raise ValidationError("cursor", "not a cursor this store returned") from None


def dead_letters(
    conn: Conn, app: str | None, errcode: int | None, cursor: str | None, limit: int
) -> tuple[list[Message], str | None]:
    """Newest death first; the cursor is the (finished_at, id) of the last row returned."""
    sql = f"SELECT {COLUMNS}, finished_at FROM messages WHERE status = 'dead'"
    params: list[object] = []
    if app is not None:
        sql += " AND app = ?"
        params.append(app)
    if errcode is not None:
        sql += " AND last_errcode = ?"
        params.append(errcode)
    if cursor is not None:
        sql += " AND (finished_at, id) < (?, ?)"
        params.extend(_decode_cursor(cursor))
    limit = max(1, limit)
    sql += " ORDER BY finished_at DESC, id DESC LIMIT ?"
    params.append(limit + 1)
    rows = conn.execute(sql, params).fetchall()
    page = [row_message(r) for r in rows[:limit]]
    if len(rows) <= limit:
        return page, None
    last = rows[limit - 1]
    return page, _encode_cursor(last[-1], last[0])


_BATCH_COLUMNS = "id, app, template_id, total, created_at, status, rate_per_s"


def _row_batch(r: Any) -> Batch:
    return Batch(
        id=r[0],
        app=r[1],
        template_id=r[2],
        total=r[3],
        created_at=r[4],
        status=r[5],
        rate_per_s=r[6],
    )


def get_batch(conn: Conn, batch_id: str) -> Batch | None:
    rows = conn.execute(
        f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,)
    ).fetchall()
    return _row_batch(rows[0]) if rows else None


def recent_batches(conn: Conn, limit: int) -> list[Batch]:
    rows = conn.execute(
        f"SELECT {_BATCH_COLUMNS} FROM batches ORDER BY created_at DESC, id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [_row_batch(r) for r in rows]


def batch_shared(conn: Conn, batch_ids: list[str]) -> dict[str, SharedFields]:
    """The shared fields of these batches (those that have them)."""
    rows = conn.execute(
        "SELECT batch_id, fields FROM batch_shared "
        "WHERE batch_id IN (SELECT value FROM json_each(?))",
        (_encode(batch_ids).decode(),),
    ).fetchall()
    return {batch_id: decode_shared(raw) for batch_id, raw in rows}


def batch_counts(conn: Conn, batch_id: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) FROM messages WHERE batch_id = ? GROUP BY status", (batch_id,)
    ).fetchall()
    return {status: n for status, n in rows}


def batch_rates(conn: Conn) -> dict[str, float]:
    rows = conn.execute(
        "SELECT id, rate_per_s FROM batches WHERE rate_per_s IS NOT NULL AND status != 'cancelled'"
    ).fetchall()
    return {batch_id: rate for batch_id, rate in rows}


_BATCH_SPAN = "SELECT min(rowid), max(rowid) FROM messages WHERE batch_id = ?"
# The rowid range is read through the table itself (NOT INDEXED still seeks by rowid): a
# batch's messages sit close together, since each commit inserts a chunk of them in a row.
_BATCH_PAGE = (
    f"SELECT {COLUMNS}, rowid FROM messages NOT INDEXED "
    "WHERE rowid > ? AND rowid <= ? AND batch_id = ? ORDER BY rowid LIMIT ?"
)


def batch_messages(
    conn: Conn, batch_id: str, cursor: str | None, limit: int
) -> tuple[list[Message], str | None]:
    """Pages in rowid order; the cursor is "{last rowid}:{the batch's last rowid}", the span
    fixed when the first page was read."""
    if cursor is None:
        first, last = conn.execute(_BATCH_SPAN, (batch_id,)).fetchall()[0]
        if first is None:
            return [], None
        after = first - 1
    else:
        try:
            after_s, _, last_s = cursor.partition(":")
            after, last = int(after_s), int(last_s)
        except ValueError:
            raise ValidationError("cursor", "not a cursor this store returned") from None
    limit = max(1, limit)
    rows = conn.execute(_BATCH_PAGE, (after, last, batch_id, limit)).fetchall()
    page = [row_message(r) for r in rows]
    if len(rows) < limit or rows[-1][-1] >= last:
        return page, None
    return page, f"{rows[-1][-1]}:{last}"


def batch_errcodes(conn: Conn, batch_id: str) -> dict[int, int]:
    rows = conn.execute(
        "SELECT last_errcode, count(*) FROM messages WHERE batch_id = ? AND status = 'dead' "
        "GROUP BY last_errcode",
        (batch_id,),
    ).fetchall()
    return {int(code): n for code, n in rows if code is not None}


def get_token(conn: Conn, app: str) -> TokenEntry | None:
    rows = conn.execute(
        "SELECT access_token, expires_at, fetched_at FROM tokens WHERE app = ?", (app,)
    ).fetchall()
    if not rows:
        return None
    token, expires_at, fetched_at = rows[0]
    return TokenEntry(access_token=token, expires_at=expires_at, fetched_at=fetched_at)


def get_pauses(conn: Conn, now: float) -> list[AppPause]:
    rows = conn.execute(
        "SELECT app, until, reason, errcode FROM pauses WHERE until > ? ORDER BY app", (now,)
    ).fetchall()
    return [AppPause(app=a, until=u, reason=r, errcode=e) for a, u, r, e in rows]


def ping(conn: Conn) -> None:
    conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
