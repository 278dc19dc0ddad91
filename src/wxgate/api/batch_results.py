"""GET /v1/batches/{id}/results: one row per recipient with its final status, errcode and
WeChat msgid, streamed page by page from the store (never the whole batch in memory).

The CSV is opened in spreadsheets, and its text cells come from callers and from WeChat
(touser, errmsg, receipt): a cell a spreadsheet would run as a formula is escaped (OWASP's
CSV injection advice). The NDJSON is data for programs and stays exactly as stored.
"""

from __future__ import annotations

import csv
import io

import msgspec
from aiohttp import web

from wxgate.api.schemas import MessageView
from wxgate.clock import iso8601
from wxgate.models import Message
from wxgate.store.base import Store

PAGE = 2_000
FORMATS = {"csv": "text/csv", "ndjson": "application/x-ndjson"}


class ResultRow(msgspec.Struct, omit_defaults=False):
    """One recipient's outcome (the NDJSON shape, epoch seconds; the CSV has the same columns,
    its times in ISO 8601 UTC for spreadsheets and people)."""

    id: str
    touser: str
    status: str
    errcode: int | None
    errmsg: str | None
    wechat_msgid: int | None
    receipt: str | None
    sent_at: float | None
    finished_at: float | None


COLUMNS = tuple(f.name for f in msgspec.structs.fields(ResultRow))
_TIMES = COLUMNS.index("sent_at")  # this column and the ones after it are times
assert COLUMNS[_TIMES:] == ("sent_at", "finished_at")
# What makes Excel, LibreOffice or Sheets read a cell as a formula (or hide one after a tab
# or carriage return): such a text cell is led by a single quote, which they show as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_encode = msgspec.json.Encoder().encode


def row_of(m: Message, now: float) -> ResultRow:
    status = MessageView.of(m, now).status  # a pending message past expire_at reads expired
    return ResultRow(
        m.id,
        m.touser,
        status.value,
        m.last_errcode,
        m.last_errmsg,
        m.wechat_msgid,
        m.receipt,
        m.sent_at,
        m.finished_at,
    )


def spreadsheet_safe(value: object) -> object:
    """A text cell that would start a formula, led by a single quote; anything else as it
    is. Numbers are no formula (errcode -1 is WeChat's "busy"): they stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv(rows: list[ResultRow], header: bool) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")  # RFC 4180: so a bare CR in a cell is quoted
    if header:
        w.writerow(COLUMNS)
    for r in rows:
        cells = msgspec.structs.astuple(r)
        times = tuple("" if t is None else iso8601(t) for t in cells[_TIMES:])
        w.writerow([*("" if v is None else spreadsheet_safe(v) for v in cells[:_TIMES]), *times])
    return out.getvalue().encode()


def _ndjson(rows: list[ResultRow]) -> bytes:
    return b"".join(_encode(r) + b"\n" for r in rows)


async def stream_results(
    request: web.Request, store: Store, batch_id: str, fmt: str, now: float
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": f"{FORMATS[fmt]}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="batch-{batch_id}.{fmt}"',
        }
    )
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    cursor: str | None = None
    first = True
    while True:
        page, cursor = await store.batch_messages(batch_id, cursor, PAGE)
        rows = [row_of(m, now) for m in page]
        if fmt == "csv":
            await resp.write(_csv(rows, header=first))
        elif rows:
            await resp.write(_ndjson(rows))
        first = False
        if cursor is None:
            break
    await resp.write_eof()
    return resp
