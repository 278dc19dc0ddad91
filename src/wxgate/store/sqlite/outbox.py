"""The webhook outbox on SQLite (WebhookOutbox): events written beside status changes, leased
by the sender.

`emit` runs inside the writer's transaction of the status change that caused it (queue.py,
outcomes.py and batches.py call it), so the change and its event commit together or not at
all. An event's id is `evt_{message_id}_{seq}` with `seq` from AUTOINCREMENT, which SQLite
never reuses, so an id names one event forever (the receiver's dedupe key). The table is in
schema.DDL; reads (`stats`) run on the reader thread.
"""

from __future__ import annotations

from wxgate.models import WebhookEvent, WebhookStats
from wxgate.store.sqlite.core import SQLiteCore
from wxgate.store.sqlite.rows import Conn
from wxgate.store.webhook_rows import event_key, row_event


class SQLiteOutbox(SQLiteCore):
    async def lease_webhooks(self, n: int, lease_s: float, now: float) -> list[WebhookEvent]:
        return await self._write(lease, n, lease_s, now)

    async def webhook_delivered(self, event_id: str) -> bool:
        return await self._write(delivered, event_id)

    async def webhook_retry(self, event_id: str, at: float, error: str) -> bool:
        return await self._write(retry, event_id, at, error)

    async def webhook_failed(self, event_id: str, error: str) -> bool:
        return await self._write(failed, event_id, error, self._clock.now())

    async def webhook_stats(self) -> WebhookStats:
        return await self._read(stats)


_COLS = "message_id, app, status, url, occurred_at, errcode, errmsg, wechat_msgid, batch_id, trace"
# The snapshot comes from the message row as the status change left it; a success carries
# no error (the row keeps the last failed attempt's).
_EMIT = (
    f"INSERT INTO webhooks ({_COLS}, due_at) SELECT id, app, status, callback_url, ?, "
    "CASE WHEN status IN ('sent', 'delivered') THEN NULL ELSE last_errcode END, "
    "CASE WHEN status IN ('sent', 'delivered') THEN NULL ELSE last_errmsg END, "
    "wechat_msgid, batch_id, trace, ? FROM messages "
    "WHERE id = ? AND callback_url IS NOT NULL"
)
_EMIT_BATCH_CANCEL = (
    f"INSERT INTO webhooks ({_COLS}, due_at) SELECT id, app, 'cancelled', callback_url, ?, "
    "last_errcode, last_errmsg, wechat_msgid, batch_id, trace, ? FROM messages "
    "WHERE batch_id = ? AND status IN ('queued', 'scheduled', 'retrying') "
    "AND callback_url IS NOT NULL"
)


def emit(conn: Conn, msg_id: str, now: float) -> None:
    """Queue the event for the status `msg_id` has now (call right after changing it)."""
    conn.execute(_EMIT, (now, now, msg_id))


_EMIT_ROWID = _EMIT.replace("WHERE id = ?", "WHERE rowid = ?")


def emit_rowid(conn: Conn, rowid: int, now: float) -> None:
    """`emit` for a message known by its rowid (the lease's cancel of a cancelled batch's)."""
    conn.execute(_EMIT_ROWID, (now, now, rowid))


def emit_batch_cancel(conn: Conn, batch_id: str, now: float) -> None:
    """Events for the pending messages of a batch about to be cancelled (call before)."""
    conn.execute(_EMIT_BATCH_CANCEL, (now, now, batch_id))


# ---------------------------------------------------------------- the sender's side (writer)

_DUE = "SELECT seq FROM webhooks WHERE due_at <= ? ORDER BY due_at LIMIT ?"
_TAKE = (
    f"UPDATE webhooks SET due_at = ? WHERE seq IN (SELECT value FROM json_each(?)) "
    f"RETURNING seq, {_COLS}, attempts, last_error"
)


def lease(conn: Conn, n: int, lease_s: float, now: float) -> list[WebhookEvent]:
    if n <= 0:
        return []
    seqs = [r[0] for r in conn.execute(_DUE, (now, n)).fetchall()]
    if not seqs:
        return []
    rows = conn.execute(_TAKE, (now + lease_s, _json_list(seqs))).fetchall()
    rows.sort(key=lambda r: r[0])
    return [row_event(r) for r in rows]


def _json_list(values: list[int]) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def delivered(conn: Conn, event_id: str) -> bool:
    key = event_key(event_id)
    if key is None:
        return False
    cur = conn.execute(
        "DELETE FROM webhooks WHERE seq = ? AND message_id = ? AND due_at IS NOT NULL", key
    )
    if cur.rowcount != 1:
        return False
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'webhooks_delivered'")
    return True


def retry(conn: Conn, event_id: str, at: float, error: str) -> bool:
    key = event_key(event_id)
    if key is None:
        return False
    cur = conn.execute(
        "UPDATE webhooks SET attempts = attempts + 1, last_error = ?, due_at = ? "
        "WHERE seq = ? AND message_id = ? AND due_at IS NOT NULL",
        (error, at, *key),
    )
    return cur.rowcount == 1


def failed(conn: Conn, event_id: str, error: str, now: float) -> bool:
    key = event_key(event_id)
    if key is None:
        return False
    cur = conn.execute(
        "UPDATE webhooks SET attempts = attempts + 1, last_error = ?, due_at = NULL, "
        "failed_at = ? WHERE seq = ? AND message_id = ? AND due_at IS NOT NULL",
        (error, now, *key),
    )
    return cur.rowcount == 1


def prune(conn: Conn, cutoff: float, limit: int) -> int:
    """Forget events given up on before `cutoff` (pending ones are kept however old)."""
    return conn.execute(
        "DELETE FROM webhooks WHERE seq IN (SELECT seq FROM webhooks "
        "WHERE failed_at IS NOT NULL AND failed_at < ? LIMIT ?)",
        (cutoff, limit),
    ).rowcount


# ---------------------------------------------------------------- reads (reader thread)


def stats(conn: Conn) -> WebhookStats:
    conn.execute("BEGIN")  # one snapshot for the three counts
    try:
        pending = conn.execute("SELECT count(*) FROM webhooks WHERE due_at IS NOT NULL").fetchall()[
            0
        ][0]
        failed_n = conn.execute(
            "SELECT count(*) FROM webhooks WHERE failed_at IS NOT NULL"
        ).fetchall()[0][0]
        rows = conn.execute("SELECT value FROM meta WHERE key = 'webhooks_delivered'").fetchall()
    finally:
        conn.execute("COMMIT")
    return WebhookStats(
        pending=int(pending), failed=int(failed_n), delivered=int(rows[0][0]) if rows else 0
    )
