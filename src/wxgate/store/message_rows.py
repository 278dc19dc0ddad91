"""The message row both SQL backends share: one column list every SELECT of a message uses,
the row -> Message decoding, the msgid and JSON encodings, and what a batch message keeps
in its own row. The schemas differ only in SQL types and how each backend inserts."""

from __future__ import annotations

from typing import Any

import msgspec

from wxgate.models import Message, MessageKind, MiniProgram, Status
from wxgate.store.batch_shared import UNRESOLVED, own_data

# Message fields in Message's order; every SELECT of a message uses exactly this list.
COLUMNS = (
    "id, app, kind, touser, template_id, data, url, miniprogram, page, miniprogram_state, "
    "lang, idempotency_key, batch_id, callback_url, priority, created_at, not_before, "
    "expire_at, status, attempts, last_errcode, last_errmsg, wechat_msgid, receipt, sent_at, "
    "finished_at, updated_at, lease_token, notes, shared, redrive_rounds, trace"
)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
_decode_mp = msgspec.json.Decoder(MiniProgram).decode
_decode_notes = msgspec.json.Decoder(list[str]).decode
_KINDS = {k.value: k for k in MessageKind}
STATUSES = {s.value: s for s in Status}

_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def to_i64(value: int) -> int:
    """WeChat msgids are unsigned 64-bit; SQL integers are signed: wrap the top half."""
    return value - _U64 if value > _I64_MAX else value


def from_i64(value: int) -> int:
    return value + _U64 if value < 0 else value


def json_text(value: object) -> str:
    """JSON as text: both backends bind text (cheaper to bind than bytes in sqlite3)."""
    return _encode(value).decode()


OwnColumns = tuple[Any, str | None, MiniProgram | None, str | None, int | None]


def own_columns(m: Message) -> OwnColumns:
    """(data, url, miniprogram, page, shared) as the row stores them: a batch message keeps
    only its own data, the rest is its batch's (batch_shared.py), and `shared` is 1."""
    own = None if m.shared is None else own_data(m)
    if own is None:
        return m.data, m.url, m.miniprogram, m.page, None
    return own, None, None, None, 1


def row_message(r: Any) -> Message:
    """A Message from a row selected as COLUMNS."""
    return Message(
        id=r[0],
        app=r[1],
        kind=_KINDS[r[2]],
        touser=r[3],
        template_id=r[4],
        data=_decode(r[5]),
        url=r[6],
        miniprogram=None if r[7] is None else _decode_mp(r[7]),
        page=r[8],
        miniprogram_state=r[9],
        lang=r[10],
        idempotency_key=r[11],
        batch_id=r[12],
        callback_url=r[13],
        priority=r[14],
        created_at=r[15],
        not_before=r[16],
        expire_at=r[17],
        status=STATUSES[r[18]],
        attempts=r[19],
        last_errcode=r[20],
        last_errmsg=r[21],
        wechat_msgid=None if r[22] is None else from_i64(r[22]),
        receipt=r[23],
        sent_at=r[24],
        finished_at=r[25],
        updated_at=r[26],
        lease_token=r[27],
        notes=None if r[28] is None else _decode_notes(r[28]),
        # Filled in by the store from the batch (SharedCache.fill) before anyone sees it.
        shared=None if r[29] is None else UNRESOLVED,
        redrive_rounds=r[30] or 0,
        trace=r[31],
    )
