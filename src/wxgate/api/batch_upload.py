"""A streamed batch upload (NDJSON or CSV): read incrementally, committed in chunks, held
until the body ends.

The honest atomicity: every CHUNK recipients are one commit, so a 100,000-recipient upload is
never one giant transaction or one giant body in memory. The batch is created `loading` and
its messages go in parked, so nothing of it is sent before the whole body is in; then it
turns `running` (unless someone paused or cancelled it meanwhile). If the upload fails:
- bad input anywhere (a bad line, too deep, too many recipients or bytes): 400/413 and the
  batch is cancelled, so nothing of it is ever sent: a file refused at line 37,012 is a file
  to fix and upload again, not the first 35,000 recipients of it;
- the connection breaks, the queue is full (429) or the store fails: the batch becomes
  `incomplete`, keeping the recipients committed so far (`total` says how many); resume sends
  them, cancel drops them;
- anything else (a bug: a 500): cancelled, like bad input, since nothing says the body was good;
- the gateway dies mid-upload: the batch stays `loading` (resume or cancel it the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from msgspec.structs import replace

from wxgate.api.auth import callback_hosts, caller, require_app
from wxgate.api.batch_stream import (
    CSV_TYPES,
    BatchHeader,
    CsvRecipients,
    NdjsonRecipients,
    header_from,
    too_large,
)
from wxgate.api.context import ApiContext
from wxgate.api.data_limits import BatchBudget, DataLimits, size_of
from wxgate.api.errors import ApiError, invalid
from wxgate.api.intake import batch_from, normalize_data, resolve_app
from wxgate.api.outcome import OutcomeUnknown
from wxgate.api.template_check import checked_batch
from wxgate.errors import StoreTimeout, WxgateError
from wxgate.models import Batch, BatchAccepted, BatchStatus, Message, Recipient, new_id, new_ids
from wxgate.store.batch_shared import merged

log = logging.getLogger("wxgate.api")

# Recipients per commit: big enough that the commit's cost is spread thin, small enough that
# the chunk in memory (and a commit's hold on the writer) stays modest.
CHUNK = 5_000
_REFUSED = frozenset({400, 413, 415})  # bad input: the batch is cancelled
# How a body breaks off: the client went away (ConnectionResetError, a read timeout) or the
# body turned unreadable (a chunked body cut short, a gzip stream that turns to junk: the
# parser's HttpProcessingError or aiohttp's RequestPayloadError). Only these leave an
# `incomplete` batch.
_BROKEN = (OSError, HttpProcessingError, web.RequestPayloadError)


def check_rate(rate_per_s: float | None, field: str = "rate_per_s") -> None:
    if rate_per_s is not None and not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise invalid(field, "expected a number > 0 (or null for the app's rate only)")


class StreamedBatch:
    """One upload: `await StreamedBatch(ctx, request, mime).run()`."""

    def __init__(
        self, ctx: ApiContext, request: web.Request, mime: str, trace: str | None = None
    ) -> None:
        self.ctx = ctx
        self.trace = trace  # kept by every message (tracing/context.py)
        self.request = request
        self.mime = mime
        self.batch: Batch | None = None
        self.accepted = 0
        self.limits = DataLimits.of(ctx.settings.server)
        self.budget: BatchBudget | None = None  # the batch's data bytes so far (_load)

    async def run(self) -> BatchAccepted:
        ctx, request = self.ctx, self.request
        max_bytes = ctx.settings.server.max_stream_bytes
        if request.content_length is not None and request.content_length > max_bytes:
            raise too_large(max_bytes)  # before a batch exists
        reader: NdjsonRecipients | CsvRecipients
        if self.mime in CSV_TYPES:
            reader = CsvRecipients(request.content, max_bytes)
        else:
            reader = NdjsonRecipients(request.content, max_bytes)
        await reader.read_header()
        header_line = reader.header_line if isinstance(reader, NdjsonRecipients) else None
        header = header_from(request.query, header_line)
        check_rate(header.rate_per_s)
        app = resolve_app(ctx.apps, header.app)
        require_app(caller(request), app.name)
        now = ctx.clock.now()
        proto = self._prototype(header, app.name, now)
        batch = self.batch = Batch(
            id=proto.batch_id or "",
            app=app.name,
            template_id=header.template_id,
            total=0,
            created_at=now,
            status=BatchStatus.LOADING,
            rate_per_s=header.rate_per_s,
            shared=proto.shared,  # stored once, here; chunks store their own data only
        )
        try:
            await ctx.store.enqueue([], batch)
        except StoreTimeout as exc:
            raise OutcomeUnknown(exc, batch_id=batch.id) from None
        try:
            await self._load(reader, proto)
        except asyncio.CancelledError:
            await asyncio.shield(self._incomplete())
            raise
        except ApiError as exc:
            raise await self._failed(exc) from None
        except WxgateError as exc:
            await self._incomplete()
            if isinstance(exc, StoreTimeout):  # a chunk's commit: outcome unknown
                raise OutcomeUnknown(exc, batch_id=batch.id) from None
            raise
        except _BROKEN as exc:
            await self._incomplete()
            raise ApiError(
                400,
                "upload_broken",
                f"the body broke off ({type(exc).__name__}) after {self.accepted} recipients; "
                f"batch {batch.id} is incomplete: resume it to send those, or cancel it",
            ) from None
        except Exception:
            await self._cancelled()
            raise
        if self.accepted == 0:
            await ctx.store.set_batch_status(batch.id, BatchStatus.CANCELLED)
            raise invalid("recipients", f"no recipients in the body (batch {batch.id} cancelled)")
        await ctx.store.set_batch_total(batch.id, self.accepted)
        status = BatchStatus.RUNNING
        if not await ctx.store.set_batch_status(
            batch.id, BatchStatus.RUNNING, expect=BatchStatus.LOADING
        ):
            current = await ctx.store.get_batch(batch.id)  # paused or cancelled meanwhile
            status = current.status if current is not None else BatchStatus.CANCELLED
        ctx.wake()
        return BatchAccepted(batch.id, self.accepted, status)

    def _prototype(self, header: BatchHeader, app: str, now: float) -> Message:
        """Every recipient's message but for id, touser and its own data: batch_from's checks
        (kind, urls, times, quiet hours, priority, the shared data's size) run once, on a
        one-recipient batch. Its `shared` is the batch's, referenced by every message."""
        body = header.as_batch_in([Recipient("-")])
        hosts = callback_hosts(self.request)
        _, [proto] = batch_from(
            body,
            self.ctx.apps[app],
            now,
            new_id(),
            1,
            key_hosts=hosts,
            limits=self.limits,
            trace=self.trace,
        )
        return proto

    async def _load(self, reader: NdjsonRecipients | CsvRecipients, proto: Message) -> None:
        ctx = self.ctx
        assert self.batch is not None
        limit = ctx.settings.server.max_stream_recipients
        shared = proto.data
        self.budget = BatchBudget(shared, self.limits)
        chunk: list[tuple[int, Recipient]] = []
        async for row in reader.rows():
            chunk.append(row)
            if self.accepted + len(chunk) > limit:
                raise ApiError(
                    413, "payload_too_large", f"more than {limit} recipients in one batch"
                )
            if len(chunk) >= CHUNK:
                await self._commit(chunk, proto, shared)
                chunk = []
        if chunk:
            await self._commit(chunk, proto, shared)

    async def _commit(
        self, rows: list[tuple[int, Recipient]], proto: Message, shared: dict[str, dict[str, str]]
    ) -> None:
        ctx, batch, budget = self.ctx, self.batch, self.budget
        assert batch is not None and budget is not None
        current = await ctx.store.get_batch(batch.id)
        if current is None or current.status == BatchStatus.CANCELLED:
            raise ApiError(409, "conflict", f"batch {batch.id} was cancelled during the upload")
        messages = []
        room, own_total = budget.room, 0
        for msg_id, (n, r) in zip(new_ids(len(rows)), rows, strict=True):
            if r.data:
                own = normalize_data(r.data, f"line {n}.data")
                data = merged(shared, own)
                size = size_of(own)
                if size > room:
                    budget.check_effective(data, f"line {n}.data")
                own_total += size
                messages.append(replace(proto, id=msg_id, touser=r.touser, data=data))
            else:
                messages.append(replace(proto, id=msg_id, touser=r.touser))
        budget.add(own_total)
        app = ctx.apps[batch.app]
        if app.validate != "off":  # template_check.py
            labels = [f"line {n}" for n, _ in rows]
            await checked_batch(ctx.templates, app, messages, [r for _, r in rows], labels)
        await ctx.depth.admit(len(messages))
        await ctx.store.enqueue(messages)
        ctx.depth.accepted(len(messages))
        ctx.metrics.on_accepted(batch.app, len(messages))
        self.accepted += len(messages)
        await ctx.store.set_batch_total(batch.id, self.accepted)

    async def _failed(self, exc: ApiError) -> ApiError:
        """The answer for an upload stopped by an ApiError, after settling the batch."""
        batch = self.batch
        assert batch is not None
        if exc.status in _REFUSED:
            await self._cancelled()
            note = f"batch {batch.id} is cancelled: nothing of it is sent"
        elif exc.status == 409:
            return exc
        else:
            await self._incomplete()
            note = (
                f"batch {batch.id} is incomplete with the first {self.accepted} recipients: "
                "resume it to send those, or cancel it"
            )
        return ApiError(exc.status, exc.error, f"{exc.message}; {note}", exc.field, exc.headers)

    async def _cancelled(self) -> None:
        assert self.batch is not None
        with contextlib.suppress(WxgateError):  # the store is down: it stays `loading`
            await self.ctx.store.set_batch_status(self.batch.id, BatchStatus.CANCELLED)

    async def _incomplete(self) -> None:
        batch = self.batch
        if batch is None:
            return
        try:
            await self.ctx.store.set_batch_total(batch.id, self.accepted)
            await self.ctx.store.set_batch_status(
                batch.id, BatchStatus.INCOMPLETE, expect=BatchStatus.LOADING
            )
        except WxgateError:
            # The store is down too: the batch stays `loading`, which resume/cancel handle.
            log.warning("batch %s: could not mark the broken upload incomplete", batch.id)
