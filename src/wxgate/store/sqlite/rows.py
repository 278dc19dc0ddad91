"""Messages -> SQLite rows: the INSERT of a new message (one cached statement per shape) and
json_each parameters. The column list, row decoding and encodings both SQL backends share are
store/message_rows.py (re-exported here for this package's modules).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from wxgate.models import Message
from wxgate.store.message_rows import COLUMNS as COLUMNS
from wxgate.store.message_rows import STATUSES as STATUSES
from wxgate.store.message_rows import from_i64 as from_i64
from wxgate.store.message_rows import json_text, own_columns
from wxgate.store.message_rows import row_message as row_message
from wxgate.store.message_rows import to_i64 as to_i64

Conn = sqlite3.Connection

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
    data, url, mp, page, shared = own_columns(m)
    optional = (
        url,
        None if mp is None else json_text(mp),
        page,
        m.miniprogram_state,
        m.lang,
        m.idempotency_key,
        m.batch_id,
        m.callback_url,
        m.expire_at,
        None if notes is None else json_text(notes),
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
        json_text(data),
        m.priority,
        m.created_at,
        m.not_before,
        status,
        now,
        *[v for v in optional if v is not None],
    )


def json_param(value: object) -> str:
    """A list for json_each(?): bound as text (a bytes parameter would be a blob to SQLite)."""
    return json_text(value)
