"""Reading a streamed batch body: NDJSON or CSV recipients, line by line, never whole.

`POST /v1/batches` with `Content-Type: application/x-ndjson` (one recipient object per line,
optionally led by one `{"header": {...}}` line) or `text/csv` (a `touser` column; every other
column fills the template field of that name). The batch's shared settings (template_id,
app, data, ...) come from the query string and/or the NDJSON header line. The caller commits
what this yields in chunks (api/batches.py); nothing here touches the store.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec
from aiohttp import StreamReader

from wxgate.api.body import field_of
from wxgate.api.errors import invalid
from wxgate.models import BatchIn, BatchShared, Recipient

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})
CSV_TYPES = frozenset({"text/csv", "application/csv"})
# One recipient per line: a line longer than this is a broken file, not a recipient.
MAX_LINE_BYTES = 65_536


class BatchHeader(BatchShared, forbid_unknown_fields=True, kw_only=True):
    """What a streamed batch shares: BatchIn without its recipients."""

    def as_batch_in(self, recipients: list[Recipient]) -> BatchIn:
        fields = msgspec.structs.asdict(self)
        return BatchIn(recipients=recipients, **fields)


_HEADER_FIELDS = frozenset(f.name for f in msgspec.structs.fields(BatchHeader))
_JSON_QUERY_FIELDS = frozenset({"data", "miniprogram"})  # JSON text in the query string
_RECIPIENT = msgspec.json.Decoder(Recipient)
_LINE = msgspec.json.Decoder(dict[str, Any])


def header_from(query: Mapping[str, str], line: Mapping[str, Any] | None) -> BatchHeader:
    """The shared settings from the query string and the NDJSON header line; a setting given
    in both must agree."""
    raw: dict[str, Any] = {}
    for key, value in query.items():
        if key not in _HEADER_FIELDS:
            raise invalid(key, "unknown query parameter for a streamed batch")
        if key in _JSON_QUERY_FIELDS:
            try:
                raw[key] = msgspec.json.decode(value)
            except msgspec.DecodeError:
                raise invalid(key, "expected JSON in the query parameter") from None
        else:
            raw[key] = value
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


async def lines(content: StreamReader) -> AsyncIterator[tuple[int, bytes]]:
    """(line number from 1, line without its end of line) as the body arrives."""
    buf = bytearray()
    n = 0
    while chunk := await content.readany():
        buf += chunk
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            n += 1
            yield n, bytes(buf[start:end]).rstrip(b"\r")
            start = end + 1
        del buf[:start]
        if len(buf) > MAX_LINE_BYTES:
            raise invalid(f"line {n + 1}", f"longer than {MAX_LINE_BYTES} bytes")
    if buf.strip():
        yield n + 1, bytes(buf).rstrip(b"\r")


Row = tuple[int, Recipient]  # (line number, recipient)


class NdjsonRecipients:
    """One JSON recipient per line ({"touser", "data"}); blank lines are skipped. The first
    line may be {"header": {...}} with the batch's shared settings."""

    def __init__(self, content: StreamReader) -> None:
        self._lines = lines(content)
        self.header_line: dict[str, Any] | None = None
        self._first: tuple[int, bytes] | None = None

    async def read_header(self) -> None:
        async for n, line in self._lines:
            if not line.strip():
                continue
            try:
                obj = _LINE.decode(line)
            except (msgspec.DecodeError, UnicodeDecodeError):
                raise invalid(f"line {n}", "not a JSON object") from None
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
        try:
            return n, _RECIPIENT.decode(line)
        except msgspec.ValidationError as exc:
            field, reason = field_of(exc)
            raise invalid(f"line {n}" + (f".{field}" if field else ""), reason) from None
        except (msgspec.DecodeError, UnicodeDecodeError):
            raise invalid(f"line {n}", "not a JSON object") from None


class CsvRecipients:
    """A header row naming a `touser` column; each other column fills the template field of
    that name (an empty cell leaves the shared value). Quoted fields may span lines."""

    def __init__(self, content: StreamReader) -> None:
        self._lines = lines(content)
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
        """CSV records: a line ending inside quotes (odd number of quote characters so far)
        continues on the next line, as RFC 4180 allows."""
        pending: list[str] = []
        start = 0
        async for n, raw in self._lines:
            try:
                text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError:
                raise invalid(f"line {n}", "not UTF-8") from None
            if not pending:
                start = n
                if not text.strip():
                    continue
            pending.append(text)
            joined = "\n".join(pending)
            if joined.count('"') % 2:
                if len(joined) > MAX_LINE_BYTES:
                    raise invalid(f"line {start}", "a quoted field never ends")
                continue
            pending = []
            try:
                record = next(csv.reader([joined]))
            except csv.Error as exc:
                raise invalid(f"line {start}", f"bad CSV: {exc}") from None
            yield start, record
        if pending:
            raise invalid(f"line {start}", "a quoted field never ends")
