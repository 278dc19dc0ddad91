"""The SQLite write operations: plain functions of (connection, args) run by the writer thread.

Each runs inside the writer's transaction (shared with other callers' operations), so it must
neither BEGIN nor COMMIT, and must be safe to rerun after a rollback. `now` always comes from
the caller (the event loop's clock), never from the writer thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from wxgate.models import (
    BATCH_HELD,
    Batch,
    EnqueueResult,
    ErrorInfo,
    Message,
    SendResult,
    Status,
)
from wxgate.store import sqlite_webhooks as webhooks
from wxgate.store.base import CancelOutcome, receipt_status
from wxgate.store.batch_shared import encode_shared
from wxgate.store.sqlite_schema import (
    ACTIVE_SQL,
    COLUMNS,
    FINAL_SQL,
    PENDING_SQL,
    STATUSES,
    message_insert,
    row_message,
    to_i64,
)

Conn = sqlite3.Connection
_ENCODE = msgspec.json.Encoder().encode


def _json_param(value: object) -> str:
    """A list for json_each(?): bound as text (a bytes parameter would be a blob to SQLite)."""
    return _ENCODE(value).decode()


# ---------------------------------------------------------------- enqueue

_FIND_KEY = "SELECT id, status FROM messages WHERE app = ? AND idempotency_key = ?"
_COUNT_ADD = (
    "INSERT INTO counts VALUES (?, ?, ?) ON CONFLICT (app, status) DO UPDATE SET n = n + excluded.n"
)
_INSERT_BATCH = (
    "INSERT INTO batches (id, app, template_id, total, created_at, status, rate_per_s) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_BATCH_SHARED = "INSERT INTO batch_shared (batch_id, fields) VALUES (?, ?)"
_PRUNE_BATCH_SHARED = (
    "DELETE FROM batch_shared WHERE NOT EXISTS "
    "(SELECT 1 FROM batches WHERE batches.id = batch_shared.batch_id)"
)


EnqueueArgs = tuple[Sequence[Message], Batch | None, float]


def enqueue(
    conn: Conn, messages: Sequence[Message], batch: Batch | None, now: float
) -> list[EnqueueResult]:
    return enqueue_many(conn, [(messages, batch, now)])[0]


def enqueue_many(conn: Conn, calls: Sequence[EnqueueArgs]) -> list[list[EnqueueResult]]:
    """Several callers' enqueues as one: one executemany and one counts update for all.

    Calls are handled in order, so an idempotency key seen in an earlier call (or earlier in
    the same call) makes the later message a duplicate of the first.
    """
    out: list[list[EnqueueResult]] = []
    rows: dict[str, list[tuple[Any, ...]]] = {}  # statement -> parameters (see message_insert)
    counts: dict[tuple[str, str], int] = {}
    by_key: dict[tuple[str, str], EnqueueResult] = {}
    held: dict[str, bool] = {}  # batch id -> its messages go in parked (see _held)
    for messages, batch, now in calls:
        if batch is not None:
            held[batch.id] = batch.status in BATCH_HELD
        results: list[EnqueueResult] = []
        for m in messages:
            key = m.idempotency_key
            if key is not None:
                app_key = (m.app, key)
                prior = by_key.get(app_key)
                if prior is None:
                    found = conn.execute(_FIND_KEY, app_key).fetchall()
                    if found:
                        prior = EnqueueResult(found[0][0], STATUSES[found[0][1]], False)
                        by_key[app_key] = prior
                if prior is not None:
                    results.append(EnqueueResult(prior.id, prior.status, False))
                    continue
            status = Status.SCHEDULED if m.not_before > now else Status.QUEUED
            # A held batch's messages go in parked (due_at NULL) until the batch runs.
            parked = m.batch_id is not None and _held(conn, m.batch_id, held)
            sql, row = message_insert(m, status.value, now, parked)
            same_shape = rows.get(sql)
            if same_shape is None:
                rows[sql] = [row]
            else:
                same_shape.append(row)
            result = EnqueueResult(m.id, status, True)
            if key is not None:
                by_key[(m.app, key)] = result
            results.append(result)
            count_key = (m.app, status.value)
            counts[count_key] = counts.get(count_key, 0) + 1
        if batch is not None:
            conn.execute(_INSERT_BATCH, _batch_row(batch))
            if batch.shared is not None:
                conn.execute(_INSERT_BATCH_SHARED, (batch.id, encode_shared(batch.shared)))
        out.append(results)
    for sql, params in rows.items():
        if len(params) == 1:
            conn.execute(sql, params[0])
        else:
            conn.executemany(sql, params)
    for (app, status_value), n in counts.items():
        conn.execute(_COUNT_ADD, (app, status_value, n))
    return out


def _held(conn: Conn, batch_id: str, cache: dict[str, bool]) -> bool:
    """Whether a message joining this batch must wait (a streamed upload adds its chunks to a
    `loading` batch): it goes in parked, as if the batch had been paused after it arrived."""
    found = cache.get(batch_id)
    if found is None:
        rows = conn.execute(_BATCH_STATUS, (batch_id,)).fetchall()
        found = cache[batch_id] = bool(rows) and rows[0][0] in BATCH_HELD
    return found


def _batch_row(b: Batch) -> tuple[object, ...]:
    return (b.id, b.app, b.template_id, b.total, b.created_at, b.status, b.rate_per_s)


# ---------------------------------------------------------------- lease

_ACTIVE_APPS = f"SELECT DISTINCT app FROM counts WHERE n > 0 AND status IN {ACTIVE_SQL}"
_BLOCKED_BATCHES = (
    "SELECT id, status FROM batches INDEXED BY batches_not_running "
    "WHERE status IN ('loading', 'paused', 'incomplete', 'cancelled')"
)
_DUE = "SELECT rowid, batch_id FROM messages WHERE app = ? AND due_at <= ? ORDER BY due_at LIMIT ?"
_NEXT_TOKEN = "UPDATE meta SET value = value + 1 WHERE key = 'lease_token' RETURNING value"
_TAKE = (
    "UPDATE messages SET status = 'sending', lease_token = ?, lease_until = ?, due_at = ?, "
    f"updated_at = ? WHERE rowid IN (SELECT value FROM json_each(?)) RETURNING {COLUMNS}"
)
_PARK = "UPDATE messages SET due_at = NULL WHERE rowid = ?"
_CANCEL_ROW = (
    "UPDATE messages SET status = 'cancelled', due_at = NULL, lease_until = NULL, "
    "finished_at = ?, updated_at = ? WHERE rowid = ?"
)


def lease(
    conn: Conn, n: int, lease_s: float, now: float, exclude_apps: frozenset[str]
) -> list[Message]:
    """Round-robin over apps with due work: each gets its fair share, the rest fills up.

    One lease token per call: new for every message it takes, and larger than any before
    (a counter in the database, so processes sharing the file never reuse one).
    """
    if n <= 0:
        return []
    apps = [r[0] for r in conn.execute(_ACTIVE_APPS) if r[0] not in exclude_apps]
    if not apps:
        return []
    blocked = dict(conn.execute(_BLOCKED_BATCHES).fetchall())
    token = conn.execute(_NEXT_TOKEN).fetchall()[0][0]
    queues: list[list[int]] = []
    for app in apps:
        rows = conn.execute(_DUE, (app, now, n)).fetchall()
        if blocked:
            rows = _drop_blocked(conn, rows, blocked, now)
        if rows:
            queues.append([r[0] for r in rows])
    if not queues:
        return []
    start = token % len(queues)  # rotate who goes first, so leftovers are shared over time
    queues = queues[start:] + queues[:start]
    picked: list[int] = []
    depth = 0
    while len(picked) < n:
        took = False
        for q in queues:
            if depth < len(q):
                picked.append(q[depth])
                took = True
                if len(picked) == n:
                    break
        if not took:
            break
        depth += 1
    until = now + lease_s
    rows = conn.execute(_TAKE, (token, until, until, now, _json_param(picked))).fetchall()
    return [row_message(r) for r in rows]


def _drop_blocked(
    conn: Conn, rows: list[tuple[int, str | None]], blocked: dict[str, str], now: float
) -> list[tuple[int, str | None]]:
    """Skip messages of held or cancelled batches, and take them off the due index for good.

    Pending messages were already taken off when the batch was paused or cancelled; what
    shows up here is a lease that expired since. In a paused batch it waits for resume; in a
    cancelled one it is cancelled (its holder is gone or late, and the batch must stop).
    """
    keep = []
    for rowid, batch_id in rows:
        status = None if batch_id is None else blocked.get(batch_id)
        if status is None:
            keep.append((rowid, batch_id))
        elif status in BATCH_HELD:
            conn.execute(_PARK, (rowid,))
        else:
            conn.execute(_CANCEL_ROW, (now, now, rowid))
            webhooks.emit_rowid(conn, rowid, now)
    return keep


# ---------------------------------------------------------------- outcomes (fenced)

_FENCE = "WHERE id = ? AND status = 'sending' AND lease_token = ?"
_APPLY_RECEIPT = (
    "UPDATE messages SET status = ?, receipt = ?, finished_at = ?, updated_at = ? WHERE id = ?"
)
_RECEIPT_APPLIED = "UPDATE receipts SET applied = 1 WHERE app = ? AND event_key = ?"


AckArgs = tuple[str, int, SendResult, float]
# One statement for a whole group: see ack_many.
_ACK_MANY = (
    "UPDATE messages SET status = 'sent', attempts = attempts + 1, "
    "wechat_msgid = j.value ->> 1, sent_at = j.value ->> 2, finished_at = j.value ->> 4, "
    "updated_at = j.value ->> 4, "
    "due_at = NULL, lease_until = NULL FROM json_each(?) AS j "
    "WHERE messages.id = j.value ->> 0 AND messages.status = 'sending' "
    "AND messages.lease_token = j.value ->> 3"
)
_SENDING = (
    "SELECT id, app, callback_url, lease_token, touser FROM messages "
    "WHERE id IN (SELECT value FROM json_each(?)) AND status = 'sending'"
)
_WAITING_RECEIPTS = (
    # INDEXED BY: without ANALYZE statistics the planner would scan the app's whole primary key.
    "SELECT wechat_msgid, event_key, receipt, openid FROM receipts INDEXED BY receipts_waiting "
    "WHERE app = ? AND applied = 0 AND wechat_msgid IN (SELECT value FROM json_each(?))"
)


def ack_many(conn: Conn, calls: Sequence[AckArgs]) -> list[Status | None]:
    """Several acks as one: `ack`'s outcome for each, in a fixed number of statements.

    One lookup of the fenced rows, one UPDATE for all of them (its rows as one JSON
    parameter), one lookup of waiting receipts per app, instead of an UPDATE ... RETURNING and
    a receipt lookup per message. The statement count matters more than the SQL: Python's
    sqlite3 releases the GIL around every step and must win it back from the busy event loop
    after each one, so an executemany of 256 rows was 256 hand-offs. Calls are judged in
    order, so of two acks of one message in a group only the first whose token matches wins,
    as if run one after the other.
    """
    ids = _json_param([c[0] for c in calls])
    sending = {r[0]: r for r in conn.execute(_SENDING, (ids,)).fetchall()}
    ok: list[Status | None] = []
    updates: list[tuple[str, int | None, float, int, float]] = []
    # id, app, callback_url, msgid, now, touser
    done: list[tuple[str, str, str | None, int | None, float, str]] = []
    applied: list[int] = []  # done[k] is the ack at ok[applied[k]]
    for msg_id, lease_token, result, now in calls:
        row = sending.get(msg_id)
        if row is None or row[3] != lease_token:
            ok.append(None)
            continue
        del sending[msg_id]  # acked: a second ack of it in this group finds it gone
        ok.append(Status.SENT)
        msgid = None if result.wechat_msgid is None else to_i64(result.wechat_msgid)
        updates.append((msg_id, msgid, result.sent_at, lease_token, now))
        done.append((msg_id, row[1], row[2], msgid, now, row[4]))
        applied.append(len(ok) - 1)
    if updates:  # floats survive the JSON round trip exactly (shortest repr, correctly rounded)
        conn.execute(_ACK_MANY, (_json_param(updates),))
    # Receipts that beat their ack waited in `receipts`: one lookup per app for the group.
    by_app: dict[str, list[int]] = {}
    for _, app, _, sent_msgid, _, _ in done:
        if sent_msgid is not None:
            by_app.setdefault(app, []).append(sent_msgid)
    waiting: dict[tuple[str, int], list[tuple[str, str, str | None]]] = {}
    for app, msgids in by_app.items():
        rows = conn.execute(_WAITING_RECEIPTS, (app, _json_param(msgids)))
        for got, key, receipt, openid in rows:
            waiting.setdefault((app, got), []).append((key, receipt, openid))
    for k, (msg_id, app, callback_url, sent_msgid, now, touser) in enumerate(done):
        found = waiting.pop((app, sent_msgid), None) if sent_msgid is not None else None
        if found:
            # A waiting receipt that names another openid is not this message's: dropped.
            mine = [r for _, r, openid in found if openid is None or openid == touser]
            if mine:
                status = receipt_status(mine[0])
                ok[applied[k]] = status
                conn.execute(_APPLY_RECEIPT, (status, mine[0], now, now, msg_id))
            for key, _, _ in found:
                conn.execute(_RECEIPT_APPLIED, (app, key))
        if callback_url is not None:  # one event, for the status the message ends in
            webhooks.emit(conn, msg_id, now)
    return ok


def ack(conn: Conn, msg_id: str, lease_token: int, result: SendResult, now: float) -> Status | None:
    """One ack: `ack_many` of one (the writer batches consecutive acks into one call)."""
    return ack_many(conn, [(msg_id, lease_token, result, now)])[0]


_FENCED_BATCH = f"SELECT batch_id FROM messages {_FENCE}"
_BATCH_STATUS = "SELECT status FROM batches WHERE id = ?"
_RETRY_WITH_ERROR = (
    "UPDATE messages SET status = ?, not_before = ?, due_at = ?, lease_until = NULL, "
    "attempts = attempts + ?, last_errcode = ?, last_errmsg = ?, updated_at = ?, "
    f"finished_at = ? {_FENCE}"
)
_RETRY_KEEP_ERROR = (
    "UPDATE messages SET status = ?, not_before = ?, due_at = ?, lease_until = NULL, "
    f"attempts = attempts + ?, updated_at = ?, finished_at = ? {_FENCE}"
)


def retry(
    conn: Conn,
    msg_id: str,
    lease_token: int,
    at: float,
    error: ErrorInfo | None,
    count_attempt: bool,
    now: float,
) -> bool:
    found = conn.execute(_FENCED_BATCH, (msg_id, lease_token)).fetchall()
    if not found:
        return False
    status = Status.RETRYING.value
    due_at: float | None = at
    finished_at: float | None = None
    batch_id = found[0][0]
    if batch_id is not None:
        batch = conn.execute(_BATCH_STATUS, (batch_id,)).fetchall()
        batch_status = batch[0][0] if batch else None
        if batch_status in BATCH_HELD:
            due_at = None  # set again when the batch resumes
        elif batch_status == "cancelled":
            status, due_at, finished_at = Status.CANCELLED.value, None, now
    inc = 1 if count_attempt else 0
    if error is None:
        params: tuple[object, ...] = (status, at, due_at, inc, now, finished_at)
        conn.execute(_RETRY_KEEP_ERROR, (*params, msg_id, lease_token))
    else:
        params = (status, at, due_at, inc, error.errcode, error.errmsg, now, finished_at)
        conn.execute(_RETRY_WITH_ERROR, (*params, msg_id, lease_token))
    if finished_at is not None:  # its batch was cancelled meanwhile
        webhooks.emit(conn, msg_id, now)
    return True


_DEAD = (
    "UPDATE messages SET status = 'dead', attempts = attempts + 1, last_errcode = ?, "
    f"last_errmsg = ?, finished_at = ?, updated_at = ?, due_at = NULL, lease_until = NULL {_FENCE} "
    "RETURNING callback_url"
)
_EXPIRE = (
    "UPDATE messages SET status = 'expired', finished_at = ?, updated_at = ?, due_at = NULL, "
    f"lease_until = NULL {_FENCE} RETURNING callback_url"
)


def dead(conn: Conn, msg_id: str, lease_token: int, error: ErrorInfo, now: float) -> bool:
    params = (error.errcode, error.errmsg, now, now, msg_id, lease_token)
    return _finished(conn, conn.execute(_DEAD, params).fetchall(), msg_id, now)


def expire(conn: Conn, msg_id: str, lease_token: int, now: float) -> bool:
    rows = conn.execute(_EXPIRE, (now, now, msg_id, lease_token)).fetchall()
    return _finished(conn, rows, msg_id, now)


def _finished(conn: Conn, returned: list[tuple[str | None]], msg_id: str, now: float) -> bool:
    """Whether a fenced UPDATE ... RETURNING callback_url changed the message; queues its
    status webhook in the same transaction when it has a callback_url."""
    if not returned:
        return False
    if returned[0][0] is not None:
        webhooks.emit(conn, msg_id, now)
    return True


_CANCEL = (
    "UPDATE messages SET status = 'cancelled', due_at = NULL, finished_at = ?, updated_at = ? "
    f"WHERE id = ? AND status IN {PENDING_SQL} RETURNING callback_url"
)
_EXISTS = "SELECT 1 FROM messages WHERE id = ?"


def cancel(conn: Conn, msg_id: str, now: float) -> str:
    if _finished(conn, conn.execute(_CANCEL, (now, now, msg_id)).fetchall(), msg_id, now):
        return CancelOutcome.CANCELLED
    if conn.execute(_EXISTS, (msg_id,)).fetchall():
        return CancelOutcome.CONFLICT
    return CancelOutcome.NOT_FOUND


# ---------------------------------------------------------------- receipts

_INSERT_RECEIPT = (
    "INSERT OR IGNORE INTO receipts "
    "(app, event_key, wechat_msgid, receipt, received_at, applied, openid) "
    "VALUES (?, ?, ?, ?, ?, 0, ?)"
)
_RECEIPT_TO_MESSAGE = (
    "UPDATE messages SET status = ?, receipt = ?, finished_at = ?, updated_at = ? "
    "WHERE app = ? AND wechat_msgid = ? AND status = 'sent' AND (? IS NULL OR touser = ?) "
    f"RETURNING {COLUMNS}"
)
_MSGID_EXISTS = "SELECT 1 FROM messages WHERE app = ? AND wechat_msgid = ? LIMIT 1"


def record_receipt(
    conn: Conn,
    app: str,
    wechat_msgid: int,
    receipt: str,
    event_key: str,
    openid: str | None,
    now: float,
) -> Message | None:
    msgid = to_i64(wechat_msgid)
    if conn.execute(_INSERT_RECEIPT, (app, event_key, msgid, receipt, now, openid)).rowcount == 0:
        return None  # this event was seen before
    status = receipt_status(receipt)
    params = (status, receipt, now, now, app, msgid, openid, openid)
    rows = conn.execute(_RECEIPT_TO_MESSAGE, params).fetchall()
    if rows:
        conn.execute(_RECEIPT_APPLIED, (app, event_key))
        message = row_message(rows[0])
        if message.callback_url is not None:
            webhooks.emit(conn, message.id, now)
        return message
    if conn.execute(_MSGID_EXISTS, (app, msgid)).fetchall():
        # Already final (an earlier receipt decided it), or another openid's: nothing to wait for.
        conn.execute(_RECEIPT_APPLIED, (app, event_key))
    # Else no message has this msgid yet: ack will apply the receipt when it arrives.
    return None


# ---------------------------------------------------------------- dead letters

_REQUEUE = (
    "UPDATE messages SET status = 'queued', attempts = 0, not_before = ?, due_at = ?, "
    "finished_at = NULL, lease_until = NULL, updated_at = ? WHERE status = 'dead'"
)


def requeue(
    conn: Conn,
    ids: Sequence[str] | None,
    app: str | None,
    errcode: int | None,
    now: float,
) -> int:
    """dead -> queued. The last error stays: it tells an operator why the message died."""
    if ids is not None:
        if not ids:
            return 0
        cur = conn.executemany(_REQUEUE + " AND id = ?", [(now, now, now, i) for i in ids])
        return cur.rowcount
    sql = _REQUEUE
    params: list[object] = [now, now, now]
    if app is not None:
        sql += " AND app = ?"
        params.append(app)
    if errcode is not None:
        sql += " AND last_errcode = ?"
        params.append(errcode)
    return conn.execute(sql, params).rowcount


# ---------------------------------------------------------------- batches

_BATCH_SET = "UPDATE batches SET status = ? WHERE id = ?"
_BATCH_PARK = f"UPDATE messages SET due_at = NULL WHERE batch_id = ? AND status IN {PENDING_SQL}"
_BATCH_RESUME = (
    "UPDATE messages SET due_at = CASE status WHEN 'sending' THEN lease_until "
    f"ELSE not_before END WHERE batch_id = ? AND status IN {ACTIVE_SQL} AND due_at IS NULL"
)
_BATCH_CANCEL = (
    "UPDATE messages SET status = 'cancelled', due_at = NULL, finished_at = ?, updated_at = ? "
    f"WHERE batch_id = ? AND status IN {PENDING_SQL}"
)
# What set_batch_status may set: `loading` is only ever a new batch's first status.
BATCH_STATUSES = frozenset({"running", "paused", "incomplete", "cancelled"})


def set_batch_status(
    conn: Conn, batch_id: str, status: str, expect: str | None, now: float
) -> bool:
    """See Store.set_batch_status. Cancelled is final: it cannot be resumed."""
    found = conn.execute(_BATCH_STATUS, (batch_id,)).fetchall()
    if not found:
        return False
    current = found[0][0]
    if current == "cancelled":
        return status == "cancelled" and expect in (None, "cancelled")
    if expect is not None and current != expect:
        return False
    conn.execute(_BATCH_SET, (status, batch_id))
    if status in BATCH_HELD:
        conn.execute(_BATCH_PARK, (batch_id,))
    elif status == "running":
        conn.execute(_BATCH_RESUME, (batch_id,))
    elif status == "cancelled":
        webhooks.emit_batch_cancel(conn, batch_id, now)  # before: it picks the pending ones
        conn.execute(_BATCH_CANCEL, (now, now, batch_id))
    return True


def set_batch_total(conn: Conn, batch_id: str, total: int) -> bool:
    return (
        conn.execute("UPDATE batches SET total = ? WHERE id = ?", (total, batch_id)).rowcount == 1
    )


_BATCH_RETRIES_NOW = (
    "UPDATE messages SET not_before = ?, due_at = CASE WHEN due_at IS NULL THEN NULL ELSE ? END "
    "WHERE batch_id = ? AND status = 'retrying' AND not_before > ?"
)


def set_batch_rate(conn: Conn, batch_id: str, rate_per_s: float | None, now: float) -> bool:
    sql = "UPDATE batches SET rate_per_s = ? WHERE id = ?"
    if conn.execute(sql, (rate_per_s, batch_id)).rowcount != 1:
        return False
    # Messages the old rate held back wait for later turns: due now, so the new rate decides.
    conn.execute(_BATCH_RETRIES_NOW, (now, now, batch_id, now))
    return True


# ---------------------------------------------------------------- retention

_PRUNE_MESSAGES = (
    "DELETE FROM messages WHERE rowid IN (SELECT rowid FROM messages "
    f"WHERE finished_at < ? AND status IN {FINAL_SQL} LIMIT ?)"
)
_PRUNE_RECEIPTS = (
    "DELETE FROM receipts WHERE (app, event_key) IN "
    "(SELECT app, event_key FROM receipts WHERE received_at < ? LIMIT ?)"
)

_PRUNE_NONCES = (
    "DELETE FROM nonces WHERE (app, nonce) IN "
    "(SELECT app, nonce FROM nonces WHERE expires_at < ? LIMIT ?)"
)


def prune(conn: Conn, cutoff: float, now: float, limit: int) -> int:
    """Delete up to `limit` finished messages older than `cutoff`, and other stale rows.

    Bounded so the writer never stalls callers for long; called again until it returns < limit.
    """
    deleted = conn.execute(_PRUNE_MESSAGES, (cutoff, limit)).rowcount
    conn.execute(_PRUNE_RECEIPTS, (cutoff, limit))
    webhooks.prune(conn, cutoff, limit)
    conn.execute("DELETE FROM locks WHERE expires_at < ?", (now,))
    conn.execute(_PRUNE_NONCES, (now, limit))
    conn.execute(
        "DELETE FROM batches WHERE created_at < ? AND NOT EXISTS "
        "(SELECT 1 FROM messages WHERE messages.batch_id = batches.id)",
        (cutoff,),
    )
    conn.execute(_PRUNE_BATCH_SHARED)
    conn.execute("DELETE FROM counts WHERE n = 0")
    return deleted


# Operations with a batched form: the writer runs consecutive calls of one as one call.
BATCHED: dict[Callable[..., Any], Callable[[Conn, Any], list[Any]]] = {
    enqueue: enqueue_many,
    ack: ack_many,
}
