"""The webhook outbox row both SQL backends share: a selected row -> WebhookEvent, and an
event id back to its (seq, message id) key."""

from __future__ import annotations

from typing import Any

from wxgate.models import WebhookEvent
from wxgate.store.message_rows import from_i64

# A seq is a signed 64-bit integer in both schemas: 18 digits always fit, a 19th may not.
_MAX_SEQ_DIGITS = 18


def row_event(r: Any) -> WebhookEvent:
    """An event from a row of (seq, message_id, app, status, url, occurred_at, errcode, errmsg,
    wechat_msgid, batch_id, trace, attempts, last_error)."""
    seq, message_id = r[0], str(r[1])
    msgid = r[8]
    return WebhookEvent(
        id=f"evt_{message_id}_{seq}",
        message_id=message_id,
        app=str(r[2]),
        status=str(r[3]),
        url=str(r[4]),
        occurred_at=r[5],
        errcode=r[6],
        errmsg=r[7],
        wechat_msgid=None if msgid is None else from_i64(msgid),
        batch_id=r[9],
        trace=r[10],
        attempts=r[11],
        last_error=r[12],
    )


def event_key(event_id: str) -> tuple[int, str] | None:
    """(seq, message id) of an event id; None for an id this store never made (including a
    seq too long for the column, which would fail to bind rather than match nothing)."""
    head, sep, tail = event_id.rpartition("_")
    if not sep or not head.startswith("evt_") or not tail.isdigit() or len(tail) > _MAX_SEQ_DIGITS:
        return None
    return int(tail), head[4:]
