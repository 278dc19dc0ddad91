"""The webhook outbox on PostgreSQL (WebhookOutbox): events written beside status changes, in
the same transaction (`emit` takes the transaction's connection), leased by the sender.

An event's id is `evt_{message_id}_{seq}` with `seq` from an identity column, which never
repeats, so an id names one event forever (the receiver's dedupe key).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from wxgate.models import WebhookEvent, WebhookStats
from wxgate.store.postgres.connection import PostgresConnection, maps_pg_errors
from wxgate.store.webhook_rows import event_key, row_event

Conn = asyncpg.Connection

_COLS = "message_id, app, status, url, occurred_at, errcode, errmsg, wechat_msgid, batch_id, trace"
# The snapshot comes from the message row as the status change left it; a success carries no
# error (the row keeps the last failed attempt's).
_EMIT = (
    f"INSERT INTO webhooks ({_COLS}, due_at) SELECT id, app, status, callback_url, $1, "
    "CASE WHEN status IN ('sent', 'delivered') THEN NULL ELSE last_errcode END, "
    "CASE WHEN status IN ('sent', 'delivered') THEN NULL ELSE last_errmsg END, "
    "wechat_msgid, batch_id, trace, $1 FROM messages "
    "WHERE id = ANY($2::text[]) AND callback_url IS NOT NULL ORDER BY id"
)
_EMIT_BATCH_CANCEL = (
    f"INSERT INTO webhooks ({_COLS}, due_at) SELECT id, app, 'cancelled', callback_url, $1, "
    "last_errcode, last_errmsg, wechat_msgid, batch_id, trace, $1 FROM messages "
    "WHERE batch_id = $2 AND status IN ('queued', 'scheduled', 'retrying') "
    "AND callback_url IS NOT NULL"
)


async def emit(conn: Conn, msg_ids: Sequence[str], now: float) -> None:
    """Queue the events for the statuses these messages have now (call right after the
    change, in its transaction); messages without a callback_url get none."""
    if msg_ids:
        await conn.execute(_EMIT, now, list(msg_ids))


async def emit_batch_cancel(conn: Conn, batch_id: str, now: float) -> None:
    """Events for the pending messages of a batch about to be cancelled (call before)."""
    await conn.execute(_EMIT_BATCH_CANCEL, now, batch_id)


_LEASE = (
    "UPDATE webhooks w SET due_at = $1 FROM (SELECT seq FROM webhooks WHERE due_at <= $2 "
    "ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) d WHERE w.seq = d.seq "
    f"RETURNING w.seq, {', '.join('w.' + c.strip() for c in _COLS.split(','))}, "
    "w.attempts, w.last_error"
)


async def _delivered(conn: Conn, seq: int, message_id: str) -> bool:
    done = await conn.fetchval(
        "DELETE FROM webhooks WHERE seq = $1 AND message_id = $2 AND due_at IS NOT NULL "
        "RETURNING 1",
        seq,
        message_id,
    )
    if done is None:
        return False
    await conn.execute(
        "INSERT INTO webhook_counts VALUES (pg_backend_pid() % 16, 1) "
        "ON CONFLICT (slot) DO UPDATE SET delivered = webhook_counts.delivered + 1"
    )
    return True


_STATS = (
    "SELECT (SELECT count(*) FROM webhooks WHERE due_at IS NOT NULL), "
    "(SELECT count(*) FROM webhooks WHERE failed_at IS NOT NULL), "
    "(SELECT coalesce(sum(delivered), 0) FROM webhook_counts)"
)


class PostgresOutbox(PostgresConnection):
    @maps_pg_errors
    async def lease_webhooks(self, n: int, lease_s: float, now: float) -> list[WebhookEvent]:
        if n <= 0:
            return []
        rows = await self._p.fetch(_LEASE, now + lease_s, now, n)
        return [row_event(r) for r in sorted(rows, key=lambda r: r[0])]

    @maps_pg_errors
    async def webhook_delivered(self, event_id: str) -> bool:
        key = event_key(event_id)
        return key is not None and await self._tx(_delivered, *key)

    @maps_pg_errors
    async def webhook_retry(self, event_id: str, at: float, error: str) -> bool:
        key = event_key(event_id)
        if key is None:
            return False
        done = await self._p.fetchval(
            "UPDATE webhooks SET attempts = attempts + 1, last_error = $1, due_at = $2 "
            "WHERE seq = $3 AND message_id = $4 AND due_at IS NOT NULL RETURNING 1",
            error,
            at,
            *key,
        )
        return done is not None

    @maps_pg_errors
    async def webhook_failed(self, event_id: str, error: str) -> bool:
        key = event_key(event_id)
        if key is None:
            return False
        done = await self._p.fetchval(
            "UPDATE webhooks SET attempts = attempts + 1, last_error = $1, due_at = NULL, "
            "failed_at = $2 WHERE seq = $3 AND message_id = $4 AND due_at IS NOT NULL "
            "RETURNING 1",
            error,
            self._clock.now(),
            *key,
        )
        return done is not None

    @maps_pg_errors
    async def webhook_stats(self) -> WebhookStats:
        row = await self._p.fetchrow(_STATS)
        assert row is not None
        return WebhookStats(pending=int(row[0]), failed=int(row[1]), delivered=int(row[2]))


async def prune(conn: Conn, cutoff: float) -> None:
    """Forget events given up on before `cutoff` (pending ones are kept however old)."""
    await conn.execute(
        "DELETE FROM webhooks WHERE failed_at IS NOT NULL AND failed_at < $1", cutoff
    )
