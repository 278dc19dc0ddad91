"""The message queue on SQLite (MessageQueue): enqueue, lease, reads of messages, stats, dead
letters and requeue. Outcomes of a lease (ack, retry, dead, expire, cancel, receipts) are in
outcomes.py.

The SQL functions take (connection, args): writes run on the writer thread inside its shared
transaction, so they must neither BEGIN nor COMMIT and must be safe to rerun after a rollback;
`now` always comes from the caller (the event loop's clock), never from the writer thread.
Reads run on the reader thread, which WAL never blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wxgate.errors import ValidationError
from wxgate.models import (
    BATCH_HELD,
    Batch,
    EnqueueResult,
    Message,
    Status,
    StoreStats,
)
from wxgate.store.idempotency import duplicate
from wxgate.store.search import MessageQuery
from wxgate.store.sqlite import batches, find, outbox, redrive
from wxgate.store.sqlite.core import SQLiteCore
from wxgate.store.sqlite.rows import (
    COLUMNS,
    STATUSES,
    Conn,
    json_param,
    message_insert,
    row_message,
    to_i64,
)
from wxgate.store.sqlite.schema import (
    ACTIVE_SQL,
    BATCH_NOT_RUNNING_SQL,
    FINAL_SQL,
    PENDING_OR,
)
from wxgate.store.sqlite.writer import BatchedOps

# An enqueue this large goes to the writer at once (GroupCommitWriter.submit_now).
BIG_ENQUEUE = 100


class SQLiteQueue(SQLiteCore):
    """MessageQueue's intake, leasing and reads (outcomes: SQLiteOutcomes)."""

    async def enqueue(
        self, messages: Sequence[Message], batch: Batch | None = None
    ) -> list[EnqueueResult]:
        writer = self._writer
        submit = writer.submit_now if len(messages) >= BIG_ENQUEUE else writer.submit
        result: list[EnqueueResult] = await submit(enqueue, messages, batch, self._clock.now())
        if batch is not None and batch.shared is not None:
            self._shared.put(batch.id, batch.shared)  # its first leases need no read
        return result

    async def lease(
        self, n: int, lease_s: float, now: float, exclude_apps: frozenset[str] = frozenset()
    ) -> list[Message]:
        return await self._shared.filled(await self._write(lease, n, lease_s, now, exclude_apps))

    async def get(self, msg_id: str) -> Message | None:
        return await self._shared.filled_one(await self._read(get, msg_id))

    async def find_by_wechat_msgid(self, app: str, wechat_msgid: int) -> Message | None:
        return await self._shared.filled_one(
            await self._read(find_by_wechat_msgid, app, wechat_msgid)
        )

    async def stats(self) -> StoreStats:
        return await self._read(stats)

    async def dead_letters(
        self,
        app: str | None = None,
        errcode: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Message], str | None]:
        page, next_cursor = await self._read(dead_letters, app, errcode, cursor, limit)
        return await self._shared.filled(page), next_cursor

    async def redrive(
        self,
        app: str,
        errcodes: Sequence[int],
        died_before: float,
        max_rounds: int,
        limit: int,
    ) -> int:
        if not errcodes or limit <= 0:
            return 0
        now = self._clock.now()
        args = (app, errcodes, died_before, max_rounds, limit, now)
        return await self._write(redrive.redrive, *args)

    async def find_messages(
        self, query: MessageQuery, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[Message], str | None]:
        page, next_cursor = await self._read(find.find_messages, query, cursor, limit)
        return await self._shared.filled(page), next_cursor

    async def requeue(
        self,
        ids: Sequence[str] | None = None,
        app: str | None = None,
        errcode: int | None = None,
    ) -> int:
        ids = None if ids is None else list(ids)
        return await self._write(requeue, ids, app, errcode, self._clock.now())


# ---------------------------------------------------------------- enqueue

_FIND_KEY = "SELECT id, status, idem_digest FROM messages WHERE app = ? AND idempotency_key = ?"
_SET_DIGEST = "UPDATE messages SET idem_digest = ? WHERE id = ?"
_COUNT_ADD = (
    "INSERT INTO counts VALUES (?, ?, ?) ON CONFLICT (app, status) DO UPDATE SET n = n + excluded.n"
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
    by_key: dict[tuple[str, str], tuple[EnqueueResult, str | None]] = {}  # with its digest
    digests: list[tuple[str, str]] = []  # (digest, id) of new keyed messages
    held: dict[str, bool] = {}  # batch id -> its messages go in parked (batches.held)
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
                        row = found[0]
                        prior = (EnqueueResult(row[0], STATUSES[row[1]], False), row[2])
                        by_key[app_key] = prior
                if prior is not None:
                    results.append(duplicate(prior[0], prior[1], m.idempotency_digest))
                    continue
            status = Status.SCHEDULED if m.not_before > now else Status.QUEUED
            # A held batch's messages go in parked (due_at NULL) until the batch runs.
            parked = m.batch_id is not None and batches.held(conn, m.batch_id, held)
            sql, row = message_insert(m, status.value, now, parked)
            same_shape = rows.get(sql)
            if same_shape is None:
                rows[sql] = [row]
            else:
                same_shape.append(row)
            result = EnqueueResult(m.id, status, True)
            if key is not None:
                by_key[(m.app, key)] = (result, m.idempotency_digest)
                if m.idempotency_digest is not None:
                    digests.append((m.idempotency_digest, m.id))
            results.append(result)
            count_key = (m.app, status.value)
            counts[count_key] = counts.get(count_key, 0) + 1
        if batch is not None:
            batches.insert(conn, batch)
        out.append(results)
    for sql, params in rows.items():
        if len(params) == 1:
            conn.execute(sql, params[0])
        else:
            conn.executemany(sql, params)
    if digests:
        conn.executemany(_SET_DIGEST, digests)
    for (app, status_value), n in counts.items():
        conn.execute(_COUNT_ADD, (app, status_value, n))
    return out


# ---------------------------------------------------------------- lease

_ACTIVE_APPS = f"SELECT DISTINCT app FROM counts WHERE n > 0 AND status IN {ACTIVE_SQL}"
_BLOCKED_BATCHES = (
    "SELECT id, status FROM batches INDEXED BY batches_not_running "
    f"WHERE status IN {BATCH_NOT_RUNNING_SQL}"
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
    rows = conn.execute(_TAKE, (token, until, until, now, json_param(picked))).fetchall()
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
            outbox.emit_rowid(conn, rowid, now)
    return keep


# The writer runs consecutive enqueues as one enqueue_many (store.BATCHED).
BATCHED: BatchedOps = {enqueue: enqueue_many}


# ---------------------------------------------------------------- reads (reader thread)


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


# ---------------------------------------------------------------- retention

_PRUNE_MESSAGES = (
    "DELETE FROM messages WHERE rowid IN (SELECT rowid FROM messages "
    f"WHERE finished_at < ? AND status IN {FINAL_SQL} LIMIT ?)"
)
_PRUNE_RECEIPTS = (
    "DELETE FROM receipts WHERE (app, event_key) IN "
    "(SELECT app, event_key FROM receipts WHERE received_at < ? LIMIT ?)"
)


def prune(conn: Conn, cutoff: float, limit: int) -> int:
    """Delete up to `limit` finished messages older than `cutoff` (and receipts as old); how
    many messages went. The writer's housekeeping calls it (store.py), with every role's."""
    deleted = conn.execute(_PRUNE_MESSAGES, (cutoff, limit)).rowcount
    conn.execute(_PRUNE_RECEIPTS, (cutoff, limit))
    return deleted


def prune_counts(conn: Conn) -> None:
    """Drop the (app, status) counters that went to zero (after every other prune)."""
    conn.execute("DELETE FROM counts WHERE n = 0")
