"""Messages -> PostgreSQL rows: the column arrays a group's INSERT unnests. The column list,
row decoding and encodings both SQL backends share are store/message_rows.py (re-exported
here for this package's modules)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wxgate.models import Message
from wxgate.store.message_rows import COLUMNS as COLUMNS
from wxgate.store.message_rows import STATUSES as STATUSES
from wxgate.store.message_rows import from_i64 as from_i64
from wxgate.store.message_rows import json_text as text
from wxgate.store.message_rows import own_columns
from wxgate.store.message_rows import row_message as row_message
from wxgate.store.message_rows import to_i64 as to_i64

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


def message_row(m: Message, status: str, now: float, parked: bool) -> tuple[Any, ...]:
    """One message's INSERT_COLUMNS values; `parked` leaves due_at NULL (a held batch's).

    A batch message keeps only its own data, the rest is its batch's (batch_shared.py).
    """
    data, url, mp, page, shared = own_columns(m)
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
