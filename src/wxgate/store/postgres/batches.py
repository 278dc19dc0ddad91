"""Batch records on PostgreSQL (BatchRecords): the batch row, its shared fields (stored once,
store/batch_shared.py), its status and rate, and its messages read as a group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from wxgate.errors import ValidationError
from wxgate.models import BATCH_HELD, BATCH_SETTABLE, Batch, BatchStatus, Message, SharedFields
from wxgate.store.batch_shared import SharedCache, decode_shared, encode_shared
from wxgate.store.postgres import outbox
from wxgate.store.postgres.connection import PostgresConnection, maps_pg_errors
from wxgate.store.postgres.rows import COLUMNS, row_message
from wxgate.store.postgres.wakeups import Wakeups

Conn = asyncpg.Connection

PENDING_SQL = "('queued', 'scheduled', 'retrying')"
ACTIVE_SQL = "('queued', 'scheduled', 'retrying', 'sending')"

_INSERT_BATCH = (
    "INSERT INTO batches (id, app, template_id, total, created_at, status, rate_per_s) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
BATCH_STATUS = "SELECT status FROM batches WHERE id = $1"


async def insert(conn: Conn, batch: Batch) -> None:
    """The batch's row and its shared fields (written with its first messages)."""
    await conn.execute(
        _INSERT_BATCH,
        batch.id,
        batch.app,
        batch.template_id,
        batch.total,
        batch.created_at,
        batch.status.value,
        batch.rate_per_s,
    )
    if batch.shared is not None:
        await conn.execute(
            "INSERT INTO batch_shared (batch_id, fields) VALUES ($1, $2)",
            batch.id,
            encode_shared(batch.shared),
        )


_BATCH_PARK = (
    f"UPDATE messages SET due_at = NULL WHERE batch_id = $1 AND status IN {PENDING_SQL} "
    "AND due_at IS NOT NULL"
)
_BATCH_RESUME = (
    "UPDATE messages SET due_at = CASE status WHEN 'sending' THEN lease_until "
    f"ELSE not_before END WHERE batch_id = $1 AND status IN {ACTIVE_SQL} AND due_at IS NULL"
)
_BATCH_CANCEL = (
    "UPDATE messages SET status = 'cancelled', due_at = NULL, finished_at = $1, updated_at = $1 "
    f"WHERE batch_id = $2 AND status IN {PENDING_SQL}"
)


async def _set_status(
    conn: Conn, batch_id: str, status: str, expect: str | None, now: float
) -> bool:
    current = await conn.fetchval(BATCH_STATUS + " FOR UPDATE", batch_id)
    if current is None:
        return False
    if current == BatchStatus.CANCELLED:
        return status == BatchStatus.CANCELLED and expect in (None, BatchStatus.CANCELLED)
    if expect is not None and current != expect:
        return False
    await conn.execute("UPDATE batches SET status = $1 WHERE id = $2", status, batch_id)
    if status in BATCH_HELD:
        await conn.execute(_BATCH_PARK, batch_id)
    elif status == BatchStatus.RUNNING:
        await conn.execute(_BATCH_RESUME, batch_id)
    elif status == BatchStatus.CANCELLED:
        await outbox.emit_batch_cancel(conn, batch_id, now)  # before: it picks the pending
        await conn.execute(_BATCH_CANCEL, now, batch_id)
    return True


async def _set_rate(conn: Conn, batch_id: str, rate_per_s: float | None, now: float) -> bool:
    found = await conn.fetchval(
        "UPDATE batches SET rate_per_s = $1 WHERE id = $2 RETURNING 1", rate_per_s, batch_id
    )
    if found is None:
        return False
    # Messages the old rate held back wait for later turns: due now, so the new rate decides.
    await conn.execute(
        "UPDATE messages SET not_before = $1, "
        "due_at = CASE WHEN due_at IS NULL THEN NULL ELSE $1 END "
        "WHERE batch_id = $2 AND status IN ('queued', 'retrying') AND not_before > $1",
        now,
        batch_id,
    )
    return True


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


class PostgresBatches(PostgresConnection):
    _wakeups: Wakeups

    def _init_batches(self) -> None:
        self._shared = SharedCache(self._load_shared)

    @maps_pg_errors
    async def get_batch(self, batch_id: str) -> Batch | None:
        row = await self._p.fetchrow(
            f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = $1", batch_id
        )
        return None if row is None else _row_batch(row)

    @maps_pg_errors
    async def batch_counts(self, batch_id: str) -> dict[str, int]:
        rows = await self._p.fetch(
            "SELECT status, count(*) FROM messages WHERE batch_id = $1 GROUP BY status", batch_id
        )
        return {status: int(n) for status, n in rows}

    @maps_pg_errors
    async def recent_batches(self, limit: int = 20) -> list[Batch]:
        rows = await self._p.fetch(
            f"SELECT {_BATCH_COLUMNS} FROM batches ORDER BY created_at DESC, id DESC LIMIT $1",
            limit,
        )
        return [_row_batch(r) for r in rows]

    @maps_pg_errors
    async def set_batch_status(self, batch_id: str, status: str, expect: str | None = None) -> bool:
        if status not in BATCH_SETTABLE:
            settable = sorted(s.value for s in BATCH_SETTABLE)
            raise ValueError(f"batch status must be one of {settable}")
        done = await self._tx(_set_status, batch_id, status, expect, self._clock.now())
        self._wakeups.changed()
        return done

    @maps_pg_errors
    async def set_batch_total(self, batch_id: str, total: int) -> bool:
        done = await self._p.fetchval(
            "UPDATE batches SET total = $1 WHERE id = $2 RETURNING 1", total, batch_id
        )
        return done is not None

    @maps_pg_errors
    async def set_batch_rate(self, batch_id: str, rate_per_s: float | None) -> bool:
        done = await self._tx(_set_rate, batch_id, rate_per_s, self._clock.now())
        self._wakeups.changed()
        return done

    @maps_pg_errors
    async def batch_rates(self) -> dict[str, float]:
        rows = await self._p.fetch(
            "SELECT id, rate_per_s FROM batches WHERE rate_per_s IS NOT NULL "
            f"AND status != '{BatchStatus.CANCELLED.value}'"
        )
        return {batch_id: rate for batch_id, rate in rows}

    @maps_pg_errors
    async def batch_messages(
        self, batch_id: str, cursor: str | None = None, limit: int = 1000
    ) -> tuple[list[Message], str | None]:
        """Pages in insertion order; the cursor is "{last seq}:{the batch's last seq}", the
        span fixed when the first page was read."""
        if cursor is None:
            last = await self._p.fetchval(
                "SELECT max(seq) FROM messages WHERE batch_id = $1", batch_id
            )
            if last is None:
                return [], None
            after = -1
        else:
            try:
                after_s, _, last_s = cursor.partition(":")
                after, last = int(after_s), int(last_s)
            except ValueError:
                raise ValidationError("cursor", "not a cursor this store returned") from None
        limit = max(1, limit)
        rows = await self._p.fetch(
            f"SELECT {COLUMNS}, seq FROM messages WHERE batch_id = $1 AND seq > $2 "
            "AND seq <= $3 ORDER BY seq LIMIT $4",
            batch_id,
            after,
            last,
            limit,
        )
        page = await self._shared.filled([row_message(r) for r in rows])
        if len(rows) < limit or rows[-1][-1] >= last:
            return page, None
        return page, f"{rows[-1][-1]}:{last}"

    @maps_pg_errors
    async def batch_errcodes(self, batch_id: str) -> dict[int, int]:
        rows = await self._p.fetch(
            "SELECT last_errcode, count(*) FROM messages WHERE batch_id = $1 "
            "AND status = 'dead' GROUP BY last_errcode",
            batch_id,
        )
        return {int(code): int(n) for code, n in rows if code is not None}

    async def _load_shared(self, batch_ids: Sequence[str]) -> dict[str, SharedFields]:
        """The SharedCache's loader (every role's reads fill batch messages through it)."""
        rows = await self._read(
            lambda conn: conn.fetch(
                "SELECT batch_id, fields FROM batch_shared WHERE batch_id = ANY($1::text[])",
                list(batch_ids),
            )
        )
        return {batch_id: decode_shared(raw) for batch_id, raw in rows}


async def prune(conn: Conn, cutoff: float) -> None:
    """Forget batches older than `cutoff` with no message left (after the messages' prune)."""
    await conn.execute(
        "DELETE FROM batches b WHERE created_at < $1 AND NOT EXISTS "
        "(SELECT 1 FROM messages m WHERE m.batch_id = b.id)",
        cutoff,
    )
    await conn.execute(
        "DELETE FROM batch_shared s WHERE NOT EXISTS "
        "(SELECT 1 FROM batches b WHERE b.id = s.batch_id)"
    )
