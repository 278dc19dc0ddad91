"""POST /v1/messages (the ingest hot path), GET and DELETE /v1/messages/{id}."""

from __future__ import annotations

import msgspec
from aiohttp import web

from wxgate.api.apps import pause_view_of
from wxgate.api.auth import callback_hosts, caller, require_app
from wxgate.api.body import read_json
from wxgate.api.context import ApiContext
from wxgate.api.data_limits import check_message_data
from wxgate.api.errors import ApiError
from wxgate.api.idempotency import body_digest, key_conflict
from wxgate.api.intake import idempotency_key, message_from, resolve_app
from wxgate.api.outcome import OutcomeUnknown
from wxgate.api.responses import json_response
from wxgate.api.schemas import MessageView
from wxgate.api.template_check import checked_message
from wxgate.errors import StoreTimeout
from wxgate.models import PENDING_STATUSES, Accepted, MessageIn, Status, new_id
from wxgate.store.base import CancelOutcome
from wxgate.tracing import NO_SPAN, Span, from_headers

_DECODER = msgspec.json.Decoder(MessageIn)


def _not_found(msg_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no message {msg_id!r}", "id")


class MessageRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def create(self, request: web.Request) -> web.Response:
        """Validate, then answer 202 only once the store has committed (accepted = durable).

        A valid W3C traceparent (tracestate) is kept with the message: as it came with tracing
        off, else as the context of this accept's span, the parent of the message's others."""
        trace = from_headers(request.headers)
        tracer = self.ctx.tracer
        if not tracer.enabled:
            return await self._create(request, trace, NO_SPAN)
        attrs = {"http.route": "/v1/messages"}
        with tracer.start("wxgate.accept", trace, attrs, "server") as span:
            return await self._create(request, span.context(trace), span)

    async def _create(self, request: web.Request, trace: str | None, span: Span) -> web.Response:
        ctx = self.ctx
        body = await read_json(request, _DECODER, ctx.max_body_bytes)
        app = resolve_app(ctx.apps, body.app)
        require_app(caller(request), app.name)
        key = idempotency_key(body.idempotency_key, request.headers.get("Idempotency-Key"))
        hosts = callback_hosts(request)
        message = message_from(body, app, ctx.clock.now(), new_id(), key, hosts)
        if key is not None:
            message.idempotency_digest = body_digest(body, app.name, message.data)
        message.trace = trace
        span.set("wxgate.message_id", message.id)
        span.set("wxgate.app", app.name)
        check_message_data(message.data, ctx.settings.server.max_data_bytes)
        if app.validate != "off":
            message = await checked_message(ctx.templates, app, message)
        if ctx.depth.limit > 0:
            await ctx.depth.admit(1)
        try:
            (result,) = await ctx.store.enqueue((message,))
        except StoreTimeout as exc:
            raise OutcomeUnknown(exc, message_id=message.id) from None
        if result.conflict:
            raise key_conflict(key or "", result.id)
        status = result.status
        if result.created:
            ctx.depth.accepted(1)
            ctx.metrics.on_accepted(message.app)
            ctx.wake()
            if message.status is Status.EXPIRED:
                status = Status.EXPIRED  # whatever the store filed it as, it is never sent
        return json_response(Accepted(result.id, status), status=202)

    async def get(self, request: web.Request) -> web.Response:
        msg_id = request.match_info["id"]
        message = await self.ctx.store.get(msg_id)
        if message is None:
            raise _not_found(msg_id)
        require_app(caller(request), message.app)
        now = self.ctx.clock.now()
        paused = None
        if message.status in PENDING_STATUSES:  # why it waits, when its app is paused
            found = [p for p in await self.ctx.store.get_pauses() if p.app == message.app]
            paused = pause_view_of(found[0] if found else None, now)
        return json_response(MessageView.of(message, now, paused))

    async def cancel(self, request: web.Request) -> web.Response:
        msg_id = request.match_info["id"]
        key = caller(request)
        if key is not None and key.apps is not None:  # a key limited to apps: check first
            found = await self.ctx.store.get(msg_id)
            if found is None:
                raise _not_found(msg_id)
            require_app(key, found.app)
        outcome = await self.ctx.store.cancel(msg_id)
        if outcome == CancelOutcome.CANCELLED:
            return json_response(Accepted(msg_id, Status.CANCELLED))
        if outcome == CancelOutcome.NOT_FOUND:
            raise _not_found(msg_id)
        current = await self.ctx.store.get(msg_id)
        status = current.status.value if current is not None else "unknown"
        raise ApiError(409, "conflict", f"message is {status}; only pending ones can be cancelled")
