"""What becomes of a leased message on PostgreSQL (MessageQueue's outcomes): ack, retry, dead,
expire, cancel, and the receipts WeChat pushes after a send.

Outcomes are fenced by the lease token (store/base.py). Each write that puts a message with a
callback_url into a final status queues its status webhook in the same transaction
(outbox.emit). Concurrent acks are one transaction and one UPDATE (group commit).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from wxgate.models import BATCH_HELD, BatchStatus, ErrorInfo, Message, SendResult, Status
from wxgate.store.base import CancelOutcome, receipt_status, released_status
from wxgate.store.coalesce import Coalescer
from wxgate.store.postgres import outbox
from wxgate.store.postgres.batches import BATCH_STATUS, PENDING_SQL
from wxgate.store.postgres.connection import maps_pg_errors
from wxgate.store.postgres.queue import PostgresQueue
from wxgate.store.postgres.rows import COLUMNS, row_message, to_i64

Conn = asyncpg.Connection
AckArgs = tuple[str, int, SendResult, float]

_COALESCE_MAX_ACKS = 512
_ACK_MANY = (
    "UPDATE messages m SET status = 'sent', attempts = m.attempts + 1, wechat_msgid = u.msgid, "
    "sent_at = u.sent_at, finished_at = u.now, updated_at = u.now, due_at = NULL, "
    "lease_until = NULL "
    "FROM unnest($1::text[], $2::int8[], $3::int8[], $4::float8[], $5::float8[]) "
    "AS u(id, token, msgid, sent_at, now) "
    "WHERE m.id = u.id AND m.status = 'sending' AND m.lease_token = u.token "
    "RETURNING m.id, m.app, m.callback_url, m.touser, m.wechat_msgid"
)
_WAITING_RECEIPTS = (
    "SELECT r.app, r.wechat_msgid, r.event_key, r.receipt, r.openid FROM receipts r "
    "JOIN unnest($1::text[], $2::int8[]) AS k(app, msgid) "
    "ON r.app = k.app AND r.wechat_msgid = k.msgid WHERE NOT r.applied ORDER BY r.received_at"
)
# A receipt and the ack naming its msgid meet under one transaction lock per (app, msgid):
# without it, each could commit without seeing the other (the receipt finding no `sent`
# message, the ack finding no waiting receipt) and the receipt would wait forever. Taken in
# key order, so two acks' groups never deadlock.
_MSGID_LOCK = "hashtextextended($1::text || ':' || $2::int8::text, 7)"
_LOCK_MSGIDS = (
    "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT "
    "hashtextextended(a || ':' || m::text, 7) AS k "
    "FROM unnest($1::text[], $2::int8[]) AS u(a, m) ORDER BY k) x"
)
_LOCK_MSGID = f"SELECT pg_advisory_xact_lock({_MSGID_LOCK})"
_APPLY_RECEIPT = (
    "UPDATE messages SET status = $1, receipt = $2, finished_at = $3, updated_at = $3 WHERE id = $4"
)
_RECEIPT_APPLIED = "UPDATE receipts SET applied = true WHERE app = $1 AND event_key = $2"


async def _ack_many(conn: Conn, calls: Sequence[AckArgs]) -> list[Status | None]:
    """Acks in a fixed number of statements: one UPDATE for all, one lookup of receipts that
    beat their ack, one outbox INSERT. Two acks of one message in a group are judged in
    order (the first whose token matches wins): the group is split where an id repeats."""
    seen: set[str] = set()
    for i, (msg_id, *_) in enumerate(calls):
        if msg_id in seen:
            return [*await _ack_many(conn, calls[:i]), *await _ack_many(conn, calls[i:])]
        seen.add(msg_id)
    msgids = [None if c[2].wechat_msgid is None else to_i64(c[2].wechat_msgid) for c in calls]
    rows = await conn.fetch(
        _ACK_MANY,
        [c[0] for c in calls],
        [c[1] for c in calls],
        msgids,
        [c[2].sent_at for c in calls],
        [c[3] for c in calls],
    )
    done = {r[0]: r for r in rows}
    out: list[Status | None] = [Status.SENT if c[0] in done else None for c in calls]
    sent = [r for r in rows if r[4] is not None]
    if sent:
        await conn.fetchval(_LOCK_MSGIDS, [r[1] for r in sent], [r[4] for r in sent])
        waiting: dict[tuple[str, int], list[tuple[str, str, str | None]]] = {}
        for app, msgid, key, receipt, openid in await conn.fetch(
            _WAITING_RECEIPTS, [r[1] for r in sent], [r[4] for r in sent]
        ):
            waiting.setdefault((app, msgid), []).append((key, receipt, openid))
        if waiting:
            at = {c[0]: (i, c[3]) for i, c in enumerate(calls)}
            for msg_id, app, _, touser, msgid in sent:
                found = waiting.pop((app, msgid), None)
                if not found:
                    continue
                i, now = at[msg_id]
                # A waiting receipt that names another openid is not this message's: dropped.
                mine = [r for _, r, openid in found if openid is None or openid == touser]
                if mine:
                    status = receipt_status(mine[0])
                    out[i] = status
                    await conn.execute(_APPLY_RECEIPT, status.value, mine[0], now, msg_id)
                for key, _, _ in found:
                    await conn.execute(_RECEIPT_APPLIED, app, key)
    hooked = [r[0] for r in rows if r[2] is not None]
    if hooked:  # one event each, for the status the message ends in
        await outbox.emit(conn, hooked, calls[0][3])
    return out


_FENCE = "WHERE id = $1 AND status = 'sending' AND lease_token = $2"


async def _retry(
    conn: Conn,
    msg_id: str,
    lease_token: int,
    at: float,
    error: ErrorInfo | None,
    count_attempt: bool,
    now: float,
) -> bool:
    found = await conn.fetchrow(
        f"SELECT batch_id FROM messages {_FENCE} FOR UPDATE", msg_id, lease_token
    )
    if found is None:
        return False
    status = released_status(error, count_attempt).value
    due_at: float | None = at
    finished_at: float | None = None
    batch_id = found[0]
    if batch_id is not None:
        batch_status = await conn.fetchval(BATCH_STATUS, batch_id)
        if batch_status in BATCH_HELD:
            due_at = None  # set again when the batch resumes
        elif batch_status == BatchStatus.CANCELLED:
            status, due_at, finished_at = Status.CANCELLED.value, None, now
    sets = (
        "status = $3, not_before = $4, due_at = $5, lease_until = NULL, "
        "attempts = attempts + $6, updated_at = $7, finished_at = $8"
    )
    args: list[object] = [
        msg_id,
        lease_token,
        status,
        at,
        due_at,
        int(count_attempt),
        now,
        finished_at,
    ]
    if error is not None:
        sets += ", last_errcode = $9, last_errmsg = $10"
        args += [error.errcode, error.errmsg]
    await conn.execute(f"UPDATE messages SET {sets} {_FENCE}", *args)
    if finished_at is not None:  # its batch was cancelled meanwhile
        await outbox.emit(conn, [msg_id], now)
    return True


_DEAD = (
    "UPDATE messages SET status = 'dead', attempts = attempts + 1, last_errcode = $3, "
    f"last_errmsg = $4, finished_at = $5, updated_at = $5, due_at = NULL, lease_until = NULL "
    f"{_FENCE} RETURNING callback_url IS NOT NULL"
)
_EXPIRE = (
    "UPDATE messages SET status = 'expired', finished_at = $3, updated_at = $3, due_at = NULL, "
    f"lease_until = NULL {_FENCE} RETURNING callback_url IS NOT NULL"
)
_CANCEL = (
    "UPDATE messages SET status = 'cancelled', due_at = NULL, finished_at = $2, updated_at = $2 "
    f"WHERE id = $1 AND status IN {PENDING_SQL} RETURNING callback_url IS NOT NULL"
)


async def _finish(conn: Conn, sql: str, msg_id: str, now: float, *args: object) -> bool:
    """A fenced UPDATE ... RETURNING whether it has a callback_url: queue its event."""
    hooked = await conn.fetchval(sql, msg_id, *args)
    if hooked is None:
        return False
    if hooked:
        await outbox.emit(conn, [msg_id], now)
    return True


async def _cancel(conn: Conn, msg_id: str, now: float) -> str:
    if await _finish(conn, _CANCEL, msg_id, now, now):
        return CancelOutcome.CANCELLED
    if await conn.fetchval("SELECT 1 FROM messages WHERE id = $1", msg_id):
        return CancelOutcome.CONFLICT
    return CancelOutcome.NOT_FOUND


_INSERT_RECEIPT = (
    "INSERT INTO receipts (app, event_key, wechat_msgid, receipt, received_at, applied, openid) "
    "VALUES ($1, $2, $3, $4, $5, false, $6) ON CONFLICT DO NOTHING RETURNING 1"
)
_RECEIPT_TO_MESSAGE = (
    "UPDATE messages SET status = $1, receipt = $2, finished_at = $3, updated_at = $3 "
    "WHERE app = $4 AND wechat_msgid = $5 AND status = 'sent' "
    f"AND ($6::text IS NULL OR touser = $6) RETURNING {COLUMNS}"
)

# A receipt linked to a message sent without a msgid (policy/receipt_links.py).
_RECEIPT_TO_LINKED = (
    "UPDATE messages SET status = $1, receipt = $2, wechat_msgid = $3, finished_at = $4, "
    "updated_at = $4 WHERE id = $5 AND app = $6 AND status = 'sent' AND wechat_msgid IS NULL "
    f"AND ($7::text IS NULL OR touser = $7) RETURNING {COLUMNS}"
)


async def _record_receipt(
    conn: Conn,
    app: str,
    wechat_msgid: int,
    receipt: str,
    event_key: str,
    openid: str | None,
    now: float,
    message_id: str | None = None,
) -> Message | None:
    msgid = to_i64(wechat_msgid)
    await conn.execute(_LOCK_MSGID, app, msgid)
    if await conn.fetchval(_INSERT_RECEIPT, app, event_key, msgid, receipt, now, openid) is None:
        return None  # this event was seen before
    status = receipt_status(receipt)
    rows = []
    if message_id is not None:
        rows = await conn.fetch(
            _RECEIPT_TO_LINKED, status.value, receipt, msgid, now, message_id, app, openid
        )
    if not rows:
        rows = await conn.fetch(_RECEIPT_TO_MESSAGE, status.value, receipt, now, app, msgid, openid)
    if rows:
        await conn.execute(_RECEIPT_APPLIED, app, event_key)
        message = row_message(rows[0])
        if message.callback_url is not None:
            await outbox.emit(conn, [message.id], now)
        return message
    exists = "SELECT 1 FROM messages WHERE app = $1 AND wechat_msgid = $2 LIMIT 1"
    if await conn.fetchval(exists, app, msgid):
        # Already final (an earlier receipt decided it), or another openid's: nothing waits.
        await conn.execute(_RECEIPT_APPLIED, app, event_key)
    # Else no message has this msgid yet: the ack applies the receipt when it arrives.
    return None


class PostgresOutcomes(PostgresQueue):
    """MessageQueue's outcomes of a lease, and receipts."""

    def _init_outcomes(self) -> None:
        self._acks: Coalescer[AckArgs, Status | None] = Coalescer(
            self._run_acks, _COALESCE_MAX_ACKS
        )

    async def _drain_outcomes(self) -> None:
        await self._acks.wait_idle()

    async def _run_acks(self, calls: list[AckArgs]) -> list[Status | None]:
        return await self._tx(_ack_many, calls)

    @maps_pg_errors
    async def ack(self, msg_id: str, lease_token: int, result: SendResult) -> Status | None:
        return await self._acks.submit((msg_id, lease_token, result, self._clock.now()))

    @maps_pg_errors
    async def retry(
        self,
        msg_id: str,
        lease_token: int,
        at: float,
        error: ErrorInfo | None,
        count_attempt: bool,
    ) -> bool:
        now = self._clock.now()
        done = await self._tx(_retry, msg_id, lease_token, at, error, count_attempt, now)
        self._wakeups.changed()
        return done

    @maps_pg_errors
    async def dead(self, msg_id: str, lease_token: int, error: ErrorInfo) -> bool:
        now = self._clock.now()
        return await self._tx(
            _finish, _DEAD, msg_id, now, lease_token, error.errcode, error.errmsg, now
        )

    @maps_pg_errors
    async def expire(self, msg_id: str, lease_token: int) -> bool:
        now = self._clock.now()
        return await self._tx(_finish, _EXPIRE, msg_id, now, lease_token, now)

    @maps_pg_errors
    async def cancel(self, msg_id: str) -> str:
        return await self._tx(_cancel, msg_id, self._clock.now())

    @maps_pg_errors
    async def record_receipt(
        self,
        app: str,
        wechat_msgid: int,
        receipt: str,
        event_key: str,
        openid: str | None = None,
        message_id: str | None = None,
    ) -> Message | None:
        now = self._clock.now()
        args = (app, wechat_msgid, receipt, event_key, openid, now, message_id)
        return await self._shared.filled_one(await self._tx(_record_receipt, *args))
