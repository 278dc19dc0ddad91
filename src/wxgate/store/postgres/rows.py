"""Rows <-> Messages for PostgreSQL: the column list every SELECT of a message uses, the
column arrays a group's INSERT unnests, and the msgid and JSON encodings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from wxgate.models import Message, MessageKind, MiniProgram, Status
from wxgate.store.batch_shared import UNRESOLVED, own_data

COLUMNS = (
    "id, app, kind, touser, template_id, data, url, miniprogram, page, miniprogram_state, "
    "lang, idempotency_key, batch_id, callback_url, priority, created_at, not_before, "
    "expire_at, status, attempts, last_errcode, last_errmsg, wechat_msgid, receipt, sent_at, "
    "finished_at, updated_at, lease_token, notes, shared, redrive_rounds, trace"
)
# The same list qualified by the table alias `m` (statements that join).
M_COLUMNS = ", ".join(f"m.{c.strip()}" for c in COLUMNS.split(","))

# A group's INSERT: one array per column, unnested into rows (one statement per group).
INSERT_COLUMNS = (
    ("id", "text"),
    ("app", "text"),
    ("kind", "text"),
    ("touser", "text"),
    ("template_id", "text"),
    ("data", "text"),
    ("url", "text"),
    ("miniprogram", "text"),
    ("page", "text"),
    ("miniprogram_state", "text"),
    ("lang", "text"),
    ("idempotency_key", "text"),
    ("batch_id", "text"),
    ("callback_url", "text"),
    ("priority", "text"),
    ("created_at", "float8"),
    ("not_before", "float8"),
    ("expire_at", "float8"),
    ("status", "text"),
    ("updated_at", "float8"),
    ("due_at", "float8"),
    ("notes", "text"),
    ("shared", "int4"),
    ("trace", "text"),
)
_names = ", ".join(n for n, _ in INSERT_COLUMNS)
_arrays = ", ".join(f"${i}::{t}[]" for i, (_, t) in enumerate(INSERT_COLUMNS, start=1))
INSERT_MESSAGES = f"INSERT INTO messages ({_names}) SELECT * FROM unnest({_arrays})"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
_decode_mp = msgspec.json.Decoder(MiniProgram).decode
_decode_notes = msgspec.json.Decoder(list[str]).decode
_KINDS = {k.value: k for k in MessageKind}
STATUSES = {s.value: s for s in Status}

_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def to_i64(value: int) -> int:
    """WeChat msgids are unsigned 64-bit; bigint is signed: wrap the top half."""
    return value - _U64 if value > _I64_MAX else value


def from_i64(value: int) -> int:
    return value + _U64 if value < 0 else value


def text(value: object) -> str:
    return _encode(value).decode()


def message_row(m: Message, status: str, now: float, parked: bool) -> tuple[Any, ...]:
    """One message's INSERT_COLUMNS values; `parked` leaves due_at NULL (a held batch's).

    A batch message keeps only its own data, the rest is its batch's (batch_shared.py).
    """
    own = None if m.shared is None else own_data(m)
    if own is None:
        data, url, mp, page, shared = m.data, m.url, m.miniprogram, m.page, None
    else:
        data, url, mp, page, shared = own, None, None, None, 1
    return (
        m.id,
        m.app,
        m.kind.value,
        m.touser,
        m.template_id,
        text(data),
        url,
        None if mp is None else text(mp),
        page,
        m.miniprogram_state,
        m.lang,
        m.idempotency_key,
        m.batch_id,
        m.callback_url,
        m.priority,
        float(m.created_at),
        float(m.not_before),
        None if m.expire_at is None else float(m.expire_at),
        status,
        now,
        None if parked else float(m.not_before),
        None if m.notes is None else text(m.notes),
        shared,
        m.trace,
    )


def columns_of(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows -> one list per column (INSERT_MESSAGES's parameters)."""
    if not rows:
        return [[] for _ in INSERT_COLUMNS]
    return [list(col) for col in zip(*rows, strict=True)]


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
        shared=None if r[29] is None else UNRESOLVED,
        redrive_rounds=r[30] or 0,
        trace=r[31],
    )
