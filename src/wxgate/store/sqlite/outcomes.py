"""What becomes of a leased message on SQLite (MessageQueue's outcomes): ack, retry, dead,
expire, cancel, and the receipts WeChat pushes after a send.

Outcomes of a lease are fenced by its token (store/base.py). Each write that puts a message
with a callback_url into a final status queues its status webhook in the same transaction
(outbox.emit). Writes run on the writer thread like queue.py's.
"""

from __future__ import annotations

from collections.abc import Sequence

from wxgate.models import BATCH_HELD, BatchStatus, ErrorInfo, Message, SendResult, Status
from wxgate.store.base import CancelOutcome, receipt_status, released_status
from wxgate.store.sqlite import outbox
from wxgate.store.sqlite.batches import BATCH_STATUS
from wxgate.store.sqlite.core import SQLiteCore
from wxgate.store.sqlite.rows import COLUMNS, Conn, json_param, row_message, to_i64
from wxgate.store.sqlite.schema import PENDING_SQL
from wxgate.store.sqlite.writer import BatchedOps


class SQLiteOutcomes(SQLiteCore):
    """MessageQueue's outcomes of a lease, and receipts."""

    async def ack(self, msg_id: str, lease_token: int, result: SendResult) -> Status | None:
        return await self._write(ack, msg_id, lease_token, result, self._clock.now())

    async def retry(
        self,
        msg_id: str,
        lease_token: int,
        at: float,
        error: ErrorInfo | None,
        count_attempt: bool,
    ) -> bool:
        now = self._clock.now()
        return await self._write(retry, msg_id, lease_token, at, error, count_attempt, now)

    async def dead(self, msg_id: str, lease_token: int, error: ErrorInfo) -> bool:
        return await self._write(dead, msg_id, lease_token, error, self._clock.now())

    async def expire(self, msg_id: str, lease_token: int) -> bool:
        return await self._write(expire, msg_id, lease_token, self._clock.now())

    async def cancel(self, msg_id: str) -> str:
        return await self._write(cancel, msg_id, self._clock.now())

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
        return await self._shared.filled_one(await self._write(record_receipt, *args))


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
    ids = json_param([c[0] for c in calls])
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
        conn.execute(_ACK_MANY, (json_param(updates),))
    # Receipts that beat their ack waited in `receipts`: one lookup per app for the group.
    by_app: dict[str, list[int]] = {}
    for _, app, _, sent_msgid, _, _ in done:
        if sent_msgid is not None:
            by_app.setdefault(app, []).append(sent_msgid)
    waiting: dict[tuple[str, int], list[tuple[str, str, str | None]]] = {}
    for app, msgids in by_app.items():
        rows = conn.execute(_WAITING_RECEIPTS, (app, json_param(msgids)))
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
            outbox.emit(conn, msg_id, now)
    return ok


def ack(conn: Conn, msg_id: str, lease_token: int, result: SendResult, now: float) -> Status | None:
    """One ack: `ack_many` of one (the writer batches consecutive acks into one call)."""
    return ack_many(conn, [(msg_id, lease_token, result, now)])[0]


# The writer runs consecutive acks as one ack_many (store.BATCHED).
BATCHED: BatchedOps = {ack: ack_many}


_FENCED_BATCH = f"SELECT batch_id FROM messages {_FENCE}"
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
    status = released_status(error, count_attempt).value
    due_at: float | None = at
    finished_at: float | None = None
    batch_id = found[0][0]
    if batch_id is not None:
        batch = conn.execute(BATCH_STATUS, (batch_id,)).fetchall()
        batch_status = batch[0][0] if batch else None
        if batch_status in BATCH_HELD:
            due_at = None  # set again when the batch resumes
        elif batch_status == BatchStatus.CANCELLED:
            status, due_at, finished_at = Status.CANCELLED.value, None, now
    inc = 1 if count_attempt else 0
    if error is None:
        params: tuple[object, ...] = (status, at, due_at, inc, now, finished_at)
        conn.execute(_RETRY_KEEP_ERROR, (*params, msg_id, lease_token))
    else:
        params = (status, at, due_at, inc, error.errcode, error.errmsg, now, finished_at)
        conn.execute(_RETRY_WITH_ERROR, (*params, msg_id, lease_token))
    if finished_at is not None:  # its batch was cancelled meanwhile
        outbox.emit(conn, msg_id, now)
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
        outbox.emit(conn, msg_id, now)
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
# A receipt linked to a message sent without a msgid (policy/receipt_links.py).
_RECEIPT_TO_LINKED = (
    "UPDATE messages SET status = ?, receipt = ?, wechat_msgid = ?, finished_at = ?, "
    "updated_at = ? WHERE id = ? AND app = ? AND status = 'sent' AND wechat_msgid IS NULL "
    f"AND (? IS NULL OR touser = ?) RETURNING {COLUMNS}"
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
    message_id: str | None = None,
) -> Message | None:
    msgid = to_i64(wechat_msgid)
    if conn.execute(_INSERT_RECEIPT, (app, event_key, msgid, receipt, now, openid)).rowcount == 0:
        return None  # this event was seen before
    status = receipt_status(receipt)
    rows = []
    if message_id is not None:
        linked = (status, receipt, msgid, now, now, message_id, app, openid, openid)
        rows = conn.execute(_RECEIPT_TO_LINKED, linked).fetchall()
    if not rows:
        params = (status, receipt, now, now, app, msgid, openid, openid)
        rows = conn.execute(_RECEIPT_TO_MESSAGE, params).fetchall()
    if rows:
        conn.execute(_RECEIPT_APPLIED, (app, event_key))
        message = row_message(rows[0])
        if message.callback_url is not None:
            outbox.emit(conn, message.id, now)
        return message
    if conn.execute(_MSGID_EXISTS, (app, msgid)).fetchall():
        # Already final (an earlier receipt decided it), or another openid's: nothing to wait for.
        conn.execute(_RECEIPT_APPLIED, (app, event_key))
    # Else no message has this msgid yet: ack will apply the receipt when it arrives.
    return None
