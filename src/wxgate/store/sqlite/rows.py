"""Rows <-> Messages: the one column list every SELECT of a message uses, the INSERT of a new
one, and the msgid and JSON encodings the writer and the readers share.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from wxgate.models import Message, MessageKind, MiniProgram, Status
from wxgate.store.batch_shared import UNRESOLVED, own_data

Conn = sqlite3.Connection

# Message fields in Message's order; every SELECT of a message uses exactly this list.
COLUMNS = (
    "id, app, kind, touser, template_id, data, url, miniprogram, page, miniprogram_state, "
    "lang, idempotency_key, batch_id, callback_url, priority, created_at, not_before, "
    "expire_at, status, attempts, last_errcode, last_errmsg, wechat_msgid, receipt, sent_at, "
    "finished_at, updated_at, lease_token, notes, shared, redrive_rounds, trace"
)

# A new message's columns: always bound, then the optional ones, bound only when set.
_INSERT_ALWAYS = (
    "id, app, kind, touser, template_id, data, priority, created_at, not_before, status, updated_at"
)
_INSERT_OPTIONAL = (
    "url",
    "miniprogram",
    "page",
    "miniprogram_state",
    "lang",
    "idempotency_key",
    "batch_id",
    "callback_url",
    "expire_at",
    "notes",
    "due_at",
    "shared",
    "trace",
)
_INSERTS: dict[tuple[bool, ...], str] = {}


def _insert_sql(present: tuple[bool, ...]) -> str:
    names = [n for n, p in zip(_INSERT_OPTIONAL, present, strict=True) if p]
    columns = ", ".join([_INSERT_ALWAYS, *names])
    marks = ", ".join("?" * (11 + len(names)))
    return _INSERTS.setdefault(present, f"INSERT INTO messages ({columns}) VALUES ({marks})")


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
_decode_mp = msgspec.json.Decoder(MiniProgram).decode
_decode_notes = msgspec.json.Decoder(list[str]).decode
_KINDS = {k.value: k for k in MessageKind}
STATUSES = {s.value: s for s in Status}

_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def to_i64(value: int) -> int:
    """WeChat msgids are unsigned 64-bit; SQLite integers are signed: wrap the top half."""
    return value - _U64 if value > _I64_MAX else value


def from_i64(value: int) -> int:
    return value + _U64 if value < 0 else value


def message_insert(
    m: Message, status: str, now: float, parked: bool = False
) -> tuple[str, tuple[Any, ...]]:
    """(INSERT statement, parameters) for a new message; `parked` leaves due_at NULL.

    Only str, int and float are bound: Python's sqlite3 sends every other value (None,
    bytes, str subclasses) through its adapter registry, a tuple build, a dict lookup and
    two attribute lookups per parameter. Unset columns are left out of the statement (one
    cached statement per shape) and JSON goes in as text, which made an insert about a third
    cheaper in instructions.

    A batch message keeps only its own data, the rest is its batch's (batch_shared.py).
    """
    notes = m.notes
    own = None if m.shared is None else own_data(m)
    if own is None:
        data, url, mp, page, shared = m.data, m.url, m.miniprogram, m.page, None
    else:
        data, url, mp, page, shared = own, None, None, None, 1
    optional = (
        url,
        None if mp is None else _encode(mp).decode(),
        page,
        m.miniprogram_state,
        m.lang,
        m.idempotency_key,
        m.batch_id,
        m.callback_url,
        m.expire_at,
        None if notes is None else _encode(notes).decode(),
        None if parked else m.not_before,
        shared,
        m.trace,
    )
    present = tuple([v is not None for v in optional])
    sql = _INSERTS.get(present) or _insert_sql(present)
    return sql, (
        m.id,
        m.app,
        m.kind.value,  # plain str, not the StrEnum member
        m.touser,
        m.template_id,
        _encode(data).decode(),
        m.priority,
        m.created_at,
        m.not_before,
        status,
        now,
        *[v for v in optional if v is not None],
    )


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


def json_param(value: object) -> str:
    """A list for json_each(?): bound as text (a bytes parameter would be a blob to SQLite)."""
    return _encode(value).decode()
