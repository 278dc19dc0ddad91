"""Reading a streamed batch body: NDJSON or CSV recipients, line by line, never whole.

`POST /v1/batches` with `Content-Type: application/x-ndjson` (one recipient object per line,
optionally led by one `{"header": {...}}` line) or `text/csv` (a `touser` column; every other
column fills the template field of that name). The batch's shared settings (template_id,
app, data, ...) come from the query string and/or the NDJSON header line. The caller commits
what this yields in chunks (api/batches.py); nothing here touches the store.

Hostile bodies cost their length, once: every line is scanned once (a CSV record's quotes
are counted per line, never re-counted), the body is bounded in bytes, in bytes per line or
record and in blank lines, and the reader hands the event loop back every few dozen KiB.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec
from aiohttp import StreamReader

from wxgate.api.body import decode_value, deeper_than, field_of
from wxgate.api.errors import ApiError, invalid
from wxgate.models import BatchIn, BatchShared, Recipient

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})
CSV_TYPES = frozenset({"text/csv", "application/csv"})
# One recipient per line: a line (or a CSV record, whose quoted fields may span lines) longer
# than this is a broken file, not a recipient.
MAX_LINE_BYTES = 65_536
# More blank lines in a row than this is junk, not spacing: refused at once rather than read
# up to the byte limit.
MAX_BLANK_RUN = 1_000
# The reader yields to the event loop after this much work: each line counts its bytes plus
# LINE_COST for the per-line overhead, so neither long lines nor many short ones (blank ones
# included) hold the loop for more than a millisecond or so.
YIELD_EVERY = 32_768
LINE_COST = 64
# The header line and query JSON are compared and merged as Python objects: bounded first.
MAX_HEADER_DEPTH = 32


class BatchHeader(BatchShared, forbid_unknown_fields=True, kw_only=True):
    """What a streamed batch shares: BatchIn without its recipients."""

    def as_batch_in(self, recipients: list[Recipient]) -> BatchIn:
        fields = msgspec.structs.asdict(self)
        return BatchIn(recipients=recipients, **fields)


_HEADER_FIELDS = frozenset(f.name for f in msgspec.structs.fields(BatchHeader))
_JSON_QUERY_FIELDS = frozenset({"data", "miniprogram"})  # JSON text in the query string
_RECIPIENT = msgspec.json.Decoder(Recipient)
_LINE = msgspec.json.Decoder(dict[str, Any])
_QUERY_JSON = msgspec.json.Decoder()


def header_from(query: Mapping[str, str], line: Mapping[str, Any] | None) -> BatchHeader:
    """The shared settings from the query string and the NDJSON header line; a setting given
    in both must agree."""
    raw: dict[str, Any] = {}
    for key, value in query.items():
        if key not in _HEADER_FIELDS:
            raise invalid(key, "unknown query parameter for a streamed batch")
        if key in _JSON_QUERY_FIELDS:
            raw[key] = decode_value(_QUERY_JSON, value.encode(), key)
            if deeper_than(raw[key], MAX_HEADER_DEPTH):
                raise invalid(key, f"JSON nested deeper than {MAX_HEADER_DEPTH} levels")
        else:
            raw[key] = value
    if line is not None and deeper_than(line, MAX_HEADER_DEPTH):
        raise invalid("header", f"JSON nested deeper than {MAX_HEADER_DEPTH} levels")
    for key, value in (line or {}).items():
        if key in raw and raw[key] != value:
            raise invalid(f"header.{key}", "differs from the query parameter of that name")
        raw[key] = value
    if "template_id" not in raw:
        raise invalid("template_id", "required: as a query parameter or in the header line")
    try:
        # Query values are text: strict=False turns "12.5" into 12.5 where a number is due.
        return msgspec.convert(raw, BatchHeader, strict=False)
    except msgspec.ValidationError as exc:
        field, reason = field_of(exc)
        raise invalid(field, reason) from None


def too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"the streamed body is larger than {max_bytes} bytes (server.max_stream_bytes)",
    )


async def lines(content: StreamReader, max_bytes: int) -> AsyncIterator[tuple[int, bytes]]:
    """(line number from 1, line without its end of line) as the body arrives.

    413 as soon as the body passes `max_bytes`; 400 for a line over MAX_LINE_BYTES or more
    than MAX_BLANK_RUN blank lines in a row. `readany` does not suspend while data is
    buffered, so a fast client would otherwise keep the loop here: yield every YIELD_EVERY.
    """
    buf = bytearray()
    n = size = blanks = 0
    budget = YIELD_EVERY
    while chunk := await content.readany():
        size += len(chunk)
        if size > max_bytes:
            raise too_large(max_bytes)
        scan = len(buf)  # the old tail holds no newline: search only what is new
        buf += chunk
        start = 0
        while (end := buf.find(b"\n", scan)) >= 0:
            n += 1
            line = bytes(buf[start:end]).rstrip(b"\r")
            start = scan = end + 1
            if not line or line.isspace():
                blanks += 1
                if blanks > MAX_BLANK_RUN:
                    raise invalid(f"line {n}", f"more than {MAX_BLANK_RUN} blank lines in a row")
            else:
                blanks = 0
            yield n, line
            budget -= len(line) + LINE_COST
            if budget <= 0:
                budget = YIELD_EVERY
                await asyncio.sleep(0)
        del buf[:start]
        if len(buf) > MAX_LINE_BYTES:
            raise invalid(f"line {n + 1}", f"longer than {MAX_LINE_BYTES} bytes")
    if buf.strip():
        yield n + 1, bytes(buf).rstrip(b"\r")


Row = tuple[int, Recipient]  # (line number, recipient)


class NdjsonRecipients:
    """One JSON recipient per line ({"touser", "data"}); blank lines are skipped. The first
    line may be {"header": {...}} with the batch's shared settings."""

    def __init__(self, content: StreamReader, max_bytes: int) -> None:
        self._lines = lines(content, max_bytes)
        self.header_line: dict[str, Any] | None = None
        self._first: tuple[int, bytes] | None = None

    async def read_header(self) -> None:
        async for n, line in self._lines:
            if not line.strip():
                continue
            obj = decode_value(_LINE, line, f"line {n}")
            if "header" in obj:
                if set(obj) != {"header"} or not isinstance(obj["header"], dict):
                    raise invalid(f"line {n}", 'expected {"header": {...}} alone on its line')
                self.header_line = obj["header"]
            else:
                self._first = (n, line)
            return

    async def rows(self) -> AsyncIterator[Row]:
        if self._first is not None:
            yield self._recipient(*self._first)
        async for n, line in self._lines:
            if line.strip():
                yield self._recipient(n, line)

    @staticmethod
    def _recipient(n: int, line: bytes) -> Row:
        return n, decode_value(_RECIPIENT, line, f"line {n}")


class CsvRecipients:
    """A header row naming a `touser` column; each other column fills the template field of
    that name (an empty cell leaves the shared value). Quoted fields may span lines."""

    def __init__(self, content: StreamReader, max_bytes: int) -> None:
        self._lines = lines(content, max_bytes)
        self._columns: list[str] = []

    async def read_header(self) -> None:
        async for n, record in self._records():
            columns = [c.strip() for c in record]
            if "touser" not in columns:
                raise invalid(f"line {n}", "the first row must name a 'touser' column")
            if len(set(columns)) != len(columns) or "" in columns:
                raise invalid(f"line {n}", "column names must be distinct and not empty")
            self._columns = columns
            return
        raise invalid(None, "the CSV is empty: expected a header row with a 'touser' column")

    async def rows(self) -> AsyncIterator[Row]:
        columns = self._columns
        touser_at = columns.index("touser")
        async for n, record in self._records():
            if len(record) != len(columns):
                raise invalid(f"line {n}", f"{len(record)} cells for {len(columns)} columns")
            touser = record[touser_at].strip()
            if not touser:
                raise invalid(f"line {n}.touser", "empty")
            if len(touser) > 128:
                raise invalid(f"line {n}.touser", "longer than 128 characters")
            data = {c: v for c, v in zip(columns, record, strict=True) if v and c != "touser"}
            yield n, Recipient(touser, data or None)

    async def _records(self) -> AsyncIterator[tuple[int, list[str]]]:
        """CSV records: a line that leaves a quote open (an odd number of quote characters)
        continues on the next line, as RFC 4180 allows. Each line's quotes are counted once,
        as it arrives, and a record is joined once, when it closes: linear in the body. A
        quoted field still open past MAX_LINE_BYTES is refused then, not at the end."""
        pending: list[str] = []
        start = size = 0
        quoted = False
        async for n, raw in self._lines:
            try:
                text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError:
                raise invalid(f"line {n}", "not UTF-8") from None
            if not pending:
                if not text.strip():
                    continue
                start, size = n, 0
            pending.append(text)
            size += len(raw) + 1
            if text.count('"') % 2:
                quoted = not quoted
            if quoted:
                if size > MAX_LINE_BYTES:
                    raise invalid(f"line {start}", "a quoted field never ends")
                continue
            joined = pending[0] if len(pending) == 1 else "\n".join(pending)
            pending = []
            try:
                record = next(csv.reader([joined]))
            except csv.Error as exc:
                raise invalid(f"line {start}", f"bad CSV: {exc}") from None
            yield start, record
        if pending:
            raise invalid(f"line {start}", "a quoted field never ends")
