"""POST /v1/batches (one template, many recipients, one commit), the recent ones, progress,
pause, resume and cancel."""

from __future__ import annotations

import msgspec
from aiohttp import web

from wxgate.api.body import read_json
from wxgate.api.context import Gateway
from wxgate.api.errors import ApiError, invalid
from wxgate.api.intake import batch_from, resolve_app
from wxgate.api.responses import json_response
from wxgate.api.schemas import BatchList
from wxgate.models import FINAL_STATUSES, Batch, BatchAccepted, BatchIn, BatchProgress, new_id

_DECODER = msgspec.json.Decoder(BatchIn)
_FINAL = frozenset(s.value for s in FINAL_STATUSES)
MAX_LIST = 100


class BatchRoutes:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def create(self, request: web.Request) -> web.Response:
        gw = self.gw
        body = await read_json(request, _DECODER, gw.max_batch_body_bytes)
        app = resolve_app(gw.apps, body.app)
        batch, messages = batch_from(
            body, app, gw.clock.now(), new_id(), gw.settings.server.max_batch_recipients
        )
        await gw.depth.admit(batch.total)
        results = await gw.store.enqueue(messages, batch)
        gw.depth.accepted(batch.total)
        gw.metrics.on_accepted(batch.app, sum(1 for r in results if r.created))
        gw.wake()
        return json_response(BatchAccepted(batch.id, batch.total, batch.status), status=202)

    async def _progress(self, batch_id: str) -> BatchProgress:
        batch = await self.gw.store.get_batch(batch_id)
        if batch is None:
            raise ApiError(404, "not_found", f"no batch {batch_id!r}", "id")
        return await self._progress_of(batch)

    async def _progress_of(self, batch: Batch) -> BatchProgress:
        counts = await self.gw.store.batch_counts(batch.id)
        status = batch.status
        if status == "running" and sum(n for s, n in counts.items() if s in _FINAL) >= batch.total:
            status = "done"
        return BatchProgress(
            batch.id, status, batch.total, counts, batch.app, batch.template_id, batch.created_at
        )

    async def list(self, request: web.Request) -> web.Response:
        """The newest batches first, with their progress (the dashboard's batch list)."""
        raw = request.query.get("limit") or "20"
        try:
            limit = int(raw)
        except ValueError:
            raise invalid("limit", "expected an integer") from None
        if not 1 <= limit <= MAX_LIST:
            raise invalid("limit", f"expected 1-{MAX_LIST}")
        batches = await self.gw.store.recent_batches(limit)
        return json_response(BatchList([await self._progress_of(b) for b in batches]))

    async def get(self, request: web.Request) -> web.Response:
        return json_response(await self._progress(request.match_info["id"]))

    async def pause(self, request: web.Request) -> web.Response:
        """Stops leasing the batch's messages; those in flight finish. Resume picks them up."""
        progress = await self._progress(request.match_info["id"])
        if progress.status in ("done", "cancelled"):
            raise ApiError(409, "conflict", f"the batch is {progress.status}")
        if progress.status != "paused":
            await self.gw.store.set_batch_status(progress.id, "paused")
        return json_response(await self._progress(progress.id))

    async def resume(self, request: web.Request) -> web.Response:
        progress = await self._progress(request.match_info["id"])
        if progress.status == "cancelled":
            raise ApiError(409, "conflict", "a cancelled batch cannot be resumed")
        if progress.status == "paused":
            await self.gw.store.set_batch_status(progress.id, "running")
        return json_response(await self._progress(progress.id))

    async def cancel(self, request: web.Request) -> web.Response:
        """Cancels the batch's pending messages; ones already sent or in flight stay as they are."""
        progress = await self._progress(request.match_info["id"])
        if progress.status == "done":
            raise ApiError(409, "conflict", "every message of this batch is already final")
        if progress.status != "cancelled":
            await self.gw.store.set_batch_status(progress.id, "cancelled")
        return json_response(await self._progress(progress.id))
