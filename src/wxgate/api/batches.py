"""POST /v1/batches (one template, many recipients, one commit), progress and cancel."""

from __future__ import annotations

import msgspec
from aiohttp import web

from wxgate.api.body import read_json
from wxgate.api.context import Gateway
from wxgate.api.errors import ApiError
from wxgate.api.intake import batch_from, resolve_app
from wxgate.api.responses import json_response
from wxgate.models import FINAL_STATUSES, BatchAccepted, BatchIn, BatchProgress, new_id

_DECODER = msgspec.json.Decoder(BatchIn)
_FINAL = frozenset(s.value for s in FINAL_STATUSES)


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
        await gw.store.enqueue(messages, batch)
        gw.depth.accepted(batch.total)
        return json_response(BatchAccepted(batch.id, batch.total, batch.status), status=202)

    async def _progress(self, batch_id: str) -> BatchProgress:
        batch = await self.gw.store.get_batch(batch_id)
        if batch is None:
            raise ApiError(404, "not_found", f"no batch {batch_id!r}", "id")
        counts = await self.gw.store.batch_counts(batch_id)
        status = batch.status
        if status == "running" and sum(n for s, n in counts.items() if s in _FINAL) >= batch.total:
            status = "done"
        return BatchProgress(batch.id, status, batch.total, counts)

    async def get(self, request: web.Request) -> web.Response:
        return json_response(await self._progress(request.match_info["id"]))

    async def cancel(self, request: web.Request) -> web.Response:
        """Cancels the batch's pending messages; ones already sent or in flight stay as they are."""
        progress = await self._progress(request.match_info["id"])
        if progress.status == "done":
            raise ApiError(409, "conflict", "every message of this batch is already final")
        if progress.status != "cancelled":
            await self.gw.store.set_batch_status(progress.id, "cancelled")
        return json_response(await self._progress(progress.id))
