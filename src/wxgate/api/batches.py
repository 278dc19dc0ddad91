"""POST /v1/batches (one template, many recipients: one JSON commit, or a streamed NDJSON/CSV
upload committed in chunks, see batch_upload.py), the recent ones, progress, pause, resume,
cancel, rate changes and per-recipient results."""

from __future__ import annotations

import msgspec
from aiohttp import web

from wxgate.api.auth import allowed_apps, callback_hosts, caller, require_app
from wxgate.api.batch_results import FORMATS, stream_results
from wxgate.api.batch_stream import CSV_TYPES, NDJSON_TYPES
from wxgate.api.batch_upload import StreamedBatch, check_rate
from wxgate.api.body import read_json
from wxgate.api.context import ApiContext
from wxgate.api.data_limits import DataLimits
from wxgate.api.errors import ApiError, invalid
from wxgate.api.intake import batch_from, resolve_app
from wxgate.api.outcome import OutcomeUnknown
from wxgate.api.responses import json_response
from wxgate.api.schemas import BatchList, BatchPatch
from wxgate.api.template_check import checked_batch
from wxgate.errors import StoreTimeout
from wxgate.models import (
    BATCH_DONE,
    BATCH_HELD,
    FINAL_STATUSES,
    Batch,
    BatchAccepted,
    BatchIn,
    BatchProgress,
    BatchStatus,
    new_id,
)
from wxgate.tracing import NO_SPAN, Span, from_headers

_DECODER = msgspec.json.Decoder(BatchIn)
_PATCH = msgspec.json.Decoder(BatchPatch)
_STREAM_TYPES = NDJSON_TYPES | CSV_TYPES
_FINAL = frozenset(s.value for s in FINAL_STATUSES)
MAX_LIST = 100


class BatchRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def create(self, request: web.Request) -> web.Response:
        """As MessageRoutes.create for a trace context: every message of the batch keeps the
        caller's (tracing off) or this accept span's."""
        trace = from_headers(request.headers)
        tracer = self.ctx.tracer
        if not tracer.enabled:
            return await self._create(request, trace, NO_SPAN)
        with tracer.start("wxgate.accept", trace, {"http.route": "/v1/batches"}, "server") as span:
            return await self._create(request, span.context(trace), span)

    async def _create(self, request: web.Request, trace: str | None, span: Span) -> web.Response:
        ctx = self.ctx
        mime = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if mime in _STREAM_TYPES:
            accepted = await StreamedBatch(ctx, request, mime, trace).run()
            span.set("wxgate.batch_id", accepted.id)
            span.set("wxgate.recipients", accepted.total)
            return json_response(accepted, status=202)
        body = await read_json(request, _DECODER, ctx.max_batch_body_bytes)
        check_rate(body.rate_per_s)
        app = resolve_app(ctx.apps, body.app)
        require_app(caller(request), app.name)
        server = ctx.settings.server
        batch, messages = batch_from(
            body,
            app,
            ctx.clock.now(),
            new_id(),
            server.max_batch_recipients,
            key_hosts=callback_hosts(request),
            limits=DataLimits.of(server),
            trace=trace,
        )
        span.set("wxgate.batch_id", batch.id)
        span.set("wxgate.recipients", batch.total)
        batch.rate_per_s = body.rate_per_s
        if app.validate != "off":
            await checked_batch(ctx.templates, app, messages, body.recipients)
        await ctx.depth.admit(batch.total)
        try:
            results = await ctx.store.enqueue(messages, batch)
        except StoreTimeout as exc:
            raise OutcomeUnknown(exc, batch_id=batch.id) from None
        ctx.depth.accepted(batch.total)
        ctx.metrics.on_accepted(batch.app, sum(1 for r in results if r.created))
        ctx.wake()
        return json_response(BatchAccepted(batch.id, batch.total, batch.status), status=202)

    async def _progress(self, batch_id: str, request: web.Request | None = None) -> BatchProgress:
        batch = await self.ctx.store.get_batch(batch_id)
        if batch is None:
            raise ApiError(404, "not_found", f"no batch {batch_id!r}", "id")
        if request is not None:
            require_app(caller(request), batch.app)
        return await self._progress_of(batch)

    async def _progress_of(self, batch: Batch) -> BatchProgress:
        store = self.ctx.store
        counts = await store.batch_counts(batch.id)
        status: str = batch.status  # or "done", which is reported, never stored
        # While loading, the recipients committed so far (the total is written per chunk).
        loading = status == BatchStatus.LOADING
        total = max(batch.total, sum(counts.values())) if loading else batch.total
        if (
            status == BatchStatus.RUNNING
            and sum(n for s, n in counts.items() if s in _FINAL) >= total
        ):
            status = BATCH_DONE
        errcodes = await store.batch_errcodes(batch.id) if counts.get("dead") else {}
        return BatchProgress(
            batch.id,
            status,
            total,
            counts,
            batch.app,
            batch.template_id,
            batch.created_at,
            batch.rate_per_s,
            {str(code): n for code, n in sorted(errcodes.items())},
        )

    async def list(self, request: web.Request) -> web.Response:
        """The newest batches first, with their progress (the dashboard's batch list)."""
        raw = request.query.get("limit", "20")  # `?limit=` is not an integer: 400
        try:
            limit = int(raw)
        except ValueError:
            raise invalid("limit", "expected an integer") from None
        if not 1 <= limit <= MAX_LIST:
            raise invalid("limit", f"expected 1-{MAX_LIST}")
        batches = await self.ctx.store.recent_batches(limit)
        apps = allowed_apps(request)
        if apps is not None:  # a key limited to apps sees only their batches
            batches = [b for b in batches if b.app in apps]
        return json_response(BatchList([await self._progress_of(b) for b in batches]))

    async def get(self, request: web.Request) -> web.Response:
        return json_response(await self._progress(request.match_info["id"], request))

    async def pause(self, request: web.Request) -> web.Response:
        """Stops leasing the batch's messages; those in flight finish. Resume picks them up."""
        progress = await self._progress(request.match_info["id"], request)
        if progress.status in (BATCH_DONE, BatchStatus.CANCELLED):
            raise ApiError(409, "conflict", f"the batch is {progress.status}")
        if progress.status != BatchStatus.PAUSED:
            await self.ctx.store.set_batch_status(progress.id, BatchStatus.PAUSED)
        return json_response(await self._progress(progress.id))

    async def resume(self, request: web.Request) -> web.Response:
        progress = await self._progress(request.match_info["id"], request)
        if progress.status == BatchStatus.CANCELLED:
            raise ApiError(409, "conflict", "a cancelled batch cannot be resumed")
        if progress.status in BATCH_HELD:
            # paused, incomplete (its upload broke) or loading (an upload its gateway died in)
            await self.ctx.store.set_batch_status(
                progress.id, BatchStatus.RUNNING, expect=progress.status
            )
            self.ctx.wake()
        return json_response(await self._progress(progress.id))

    async def cancel(self, request: web.Request) -> web.Response:
        """Cancels the batch's pending messages; ones already sent or in flight stay as they are."""
        progress = await self._progress(request.match_info["id"], request)
        if progress.status == BATCH_DONE:
            raise ApiError(409, "conflict", "every message of this batch is already final")
        if progress.status != BatchStatus.CANCELLED:
            await self.ctx.store.set_batch_status(progress.id, BatchStatus.CANCELLED)
        return json_response(await self._progress(progress.id))

    async def patch(self, request: web.Request) -> web.Response:
        """Change a batch's own send rate while it runs ({"rate_per_s": N}, null = none)."""
        progress = await self._progress(request.match_info["id"], request)
        body = await read_json(request, _PATCH, self.ctx.max_body_bytes)
        check_rate(body.rate_per_s)
        if progress.status in (BATCH_DONE, BatchStatus.CANCELLED):
            raise ApiError(409, "conflict", f"the batch is {progress.status}")
        await self.ctx.store.set_batch_rate(progress.id, body.rate_per_s)
        return json_response(await self._progress(progress.id))

    async def results(self, request: web.Request) -> web.StreamResponse:
        """Every recipient's final status, errcode and WeChat msgid, as CSV or NDJSON."""
        fmt = request.query.get("format", "csv")
        if fmt not in FORMATS:
            raise invalid("format", "expected csv or ndjson")
        progress = await self._progress(request.match_info["id"], request)
        return await stream_results(request, self.ctx.store, progress.id, fmt, self.ctx.clock.now())
