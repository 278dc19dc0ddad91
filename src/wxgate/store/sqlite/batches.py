"""Batch records on SQLite (BatchRecords): the batch row, its shared fields (stored once,
store/batch_shared.py), its status and rate, and its messages read as a group.

Writes run on the writer thread like queue.py's; reads on the reader thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wxgate.errors import ValidationError
from wxgate.models import BATCH_HELD, BATCH_SETTABLE, Batch, BatchStatus, Message, SharedFields
from wxgate.store.batch_shared import decode_shared, encode_shared
from wxgate.store.sqlite import outbox
from wxgate.store.sqlite.core import SQLiteCore
from wxgate.store.sqlite.rows import COLUMNS, Conn, json_param, row_message
from wxgate.store.sqlite.schema import ACTIVE_SQL, PENDING_SQL


class SQLiteBatches(SQLiteCore):
    async def get_batch(self, batch_id: str) -> Batch | None:
        return await self._read(get_batch, batch_id)

    async def batch_counts(self, batch_id: str) -> dict[str, int]:
        return await self._read(batch_counts, batch_id)

    async def recent_batches(self, limit: int = 20) -> list[Batch]:
        return await self._read(recent_batches, limit)

    async def set_batch_status(self, batch_id: str, status: str, expect: str | None = None) -> bool:
        if status not in BATCH_SETTABLE:
            settable = sorted(s.value for s in BATCH_SETTABLE)
            raise ValueError(f"batch status must be one of {settable}")
        now = self._clock.now()
        return await self._write(set_batch_status, batch_id, status, expect, now)

    async def set_batch_total(self, batch_id: str, total: int) -> bool:
        return await self._write(set_batch_total, batch_id, total)

    async def set_batch_rate(self, batch_id: str, rate_per_s: float | None) -> bool:
        return await self._write(set_batch_rate, batch_id, rate_per_s, self._clock.now())

    async def batch_rates(self) -> dict[str, float]:
        return await self._read(batch_rates)

    async def batch_messages(
        self, batch_id: str, cursor: str | None = None, limit: int = 1000
    ) -> tuple[list[Message], str | None]:
        page, next_cursor = await self._read(batch_messages, batch_id, cursor, limit)
        return await self._shared.filled(page), next_cursor

    async def batch_errcodes(self, batch_id: str) -> dict[int, int]:
        return await self._read(batch_errcodes, batch_id)

    async def _load_shared(self, batch_ids: Sequence[str]) -> dict[str, SharedFields]:
        """The SharedCache's loader (every role's reads fill batch messages through it)."""
        return await self._read(batch_shared, list(batch_ids))


# ---------------------------------------------------------------- written with its messages

_INSERT_BATCH = (
    "INSERT INTO batches (id, app, template_id, total, created_at, status, rate_per_s) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_BATCH_SHARED = "INSERT INTO batch_shared (batch_id, fields) VALUES (?, ?)"
BATCH_STATUS = "SELECT status FROM batches WHERE id = ?"


def insert(conn: Conn, batch: Batch) -> None:
    """The batch's row and its shared fields (queue.enqueue_many, with its first messages)."""
    conn.execute(_INSERT_BATCH, _batch_row(batch))
    if batch.shared is not None:
        conn.execute(_INSERT_BATCH_SHARED, (batch.id, encode_shared(batch.shared)))


def held(conn: Conn, batch_id: str, cache: dict[str, bool]) -> bool:
    """Whether a message joining this batch must wait (a streamed upload adds its chunks to a
    `loading` batch): it goes in parked, as if the batch had been paused after it arrived."""
    found = cache.get(batch_id)
    if found is None:
        rows = conn.execute(BATCH_STATUS, (batch_id,)).fetchall()
        found = cache[batch_id] = bool(rows) and rows[0][0] in BATCH_HELD
    return found


def _batch_row(b: Batch) -> tuple[object, ...]:
    return (b.id, b.app, b.template_id, b.total, b.created_at, b.status, b.rate_per_s)


# ---------------------------------------------------------------- status, total, rate

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


def set_batch_status(
    conn: Conn, batch_id: str, status: str, expect: str | None, now: float
) -> bool:
    """See Store.set_batch_status. Cancelled is final: it cannot be resumed."""
    found = conn.execute(BATCH_STATUS, (batch_id,)).fetchall()
    if not found:
        return False
    current = found[0][0]
    if current == BatchStatus.CANCELLED:
        return status == BatchStatus.CANCELLED and expect in (None, BatchStatus.CANCELLED)
    if expect is not None and current != expect:
        return False
    conn.execute(_BATCH_SET, (status, batch_id))
    if status in BATCH_HELD:
        conn.execute(_BATCH_PARK, (batch_id,))
    elif status == BatchStatus.RUNNING:
        conn.execute(_BATCH_RESUME, (batch_id,))
    elif status == BatchStatus.CANCELLED:
        outbox.emit_batch_cancel(conn, batch_id, now)  # before: it picks the pending ones
        conn.execute(_BATCH_CANCEL, (now, now, batch_id))
    return True


def set_batch_total(conn: Conn, batch_id: str, total: int) -> bool:
    return (
        conn.execute("UPDATE batches SET total = ? WHERE id = ?", (total, batch_id)).rowcount == 1
    )


_BATCH_RETRIES_NOW = (
    "UPDATE messages SET not_before = ?, due_at = CASE WHEN due_at IS NULL THEN NULL ELSE ? END "
    "WHERE batch_id = ? AND status IN ('queued', 'retrying') AND not_before > ?"
)


def set_batch_rate(conn: Conn, batch_id: str, rate_per_s: float | None, now: float) -> bool:
    sql = "UPDATE batches SET rate_per_s = ? WHERE id = ?"
    if conn.execute(sql, (rate_per_s, batch_id)).rowcount != 1:
        return False
    # Messages the old rate held back wait for later turns: due now, so the new rate decides.
    conn.execute(_BATCH_RETRIES_NOW, (now, now, batch_id, now))
    return True


# ---------------------------------------------------------------- reads (reader thread)

_BATCH_COLUMNS = "id, app, template_id, total, created_at, status, rate_per_s"
_BATCH_STATUSES = {s.value: s for s in BatchStatus}


def _row_batch(r: Any) -> Batch:
    return Batch(
        id=r[0],
        app=r[1],
        template_id=r[2],
        total=r[3],
        created_at=r[4],
        status=_BATCH_STATUSES[r[5]],
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
        (json_param(batch_ids),),
    ).fetchall()
    return {batch_id: decode_shared(raw) for batch_id, raw in rows}


def batch_counts(conn: Conn, batch_id: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) FROM messages WHERE batch_id = ? GROUP BY status", (batch_id,)
    ).fetchall()
    return {status: n for status, n in rows}


def batch_rates(conn: Conn) -> dict[str, float]:
    rows = conn.execute(
        "SELECT id, rate_per_s FROM batches WHERE rate_per_s IS NOT NULL "
        f"AND status != '{BatchStatus.CANCELLED}'"
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


# ---------------------------------------------------------------- retention

_PRUNE_BATCHES = (
    "DELETE FROM batches WHERE created_at < ? AND NOT EXISTS "
    "(SELECT 1 FROM messages WHERE messages.batch_id = batches.id)"
)
_PRUNE_BATCH_SHARED = (
    "DELETE FROM batch_shared WHERE NOT EXISTS "
    "(SELECT 1 FROM batches WHERE batches.id = batch_shared.batch_id)"
)


def prune(conn: Conn, cutoff: float) -> None:
    """Forget batches older than `cutoff` with no message left (run after queue.prune)."""
    conn.execute(_PRUNE_BATCHES, (cutoff,))
    conn.execute(_PRUNE_BATCH_SHARED)
