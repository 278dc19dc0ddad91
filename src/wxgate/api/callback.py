"""GET|POST /wechat/callback/{app}: WeChat's URL check and its event pushes (receipts).

Authenticated by WeChat's signature, not an API key. In plain mode that signature covers
only token, timestamp and nonce, not the body, so a push is also held to a timestamp window,
its (timestamp, nonce) is used once (remembered in the store, for every process), and a
receipt only changes a message sent to the event's FromUserName. Never slow: only the store
is touched, and "success" is answered only after every receipt is recorded, so a store
failure makes WeChat push again instead of losing the receipt. Refusals are one throttled
log line, never a traceback.
"""

from __future__ import annotations

import logging

from aiohttp import web

from wxgate.api.body import read_limited
from wxgate.api.context import ApiContext
from wxgate.api.errors import ApiError
from wxgate.api.throttled_log import ThrottledLog
from wxgate.policy.receipt_links import Match, PendingReceipt
from wxgate.settings import AppSettings, callback_max_skew_s
from wxgate.store.receipt_links import ReceiptLinker
from wxgate.wechat.callback import (
    MAX_BODY_BYTES,
    CallbackError,
    Push,
    Receipt,
    open_push,
    verify_url,
)

log = logging.getLogger("wxgate.api.callback")

_TEXT = "text/plain"
# Past the window's end a replay fails the timestamp check; a second of slack for rounding.
_NONCE_SLACK_S = 1.0


class CallbackRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._log = ThrottledLog(log, ctx.clock)
        self._links = ReceiptLinker(ctx.store)

    def _app(self, request: web.Request) -> AppSettings:
        name = request.match_info["app"]
        app = self.ctx.apps.get(name)
        # Without a token anyone could compute a valid signature, so such an app has no callback.
        if app is None or not app.callback_token:
            raise ApiError(404, "not_found", f"no callback configured for app {name!r}", "app")
        return app

    def _rejected(self, app: AppSettings, exc: CallbackError) -> ApiError:
        """403 for a request that is not (or no longer) authentic, 400 for a signed one we
        cannot read; one throttled line per app says why."""
        self._log.warning(f"{app.name}:rejected", "callback for app %r refused: %s", app.name, exc)
        if exc.forbidden:
            return ApiError(403, "bad_signature", "callback signature did not verify")
        return ApiError(400, "invalid_request", f"callback rejected: {exc}")

    async def verify(self, request: web.Request) -> web.Response:
        app = self._app(request)
        q = request.query
        try:
            echostr = verify_url(
                app.callback_token,
                q.get("signature", ""),
                q.get("timestamp", ""),
                q.get("nonce", ""),
                q.get("echostr", ""),
            )
        except CallbackError as exc:
            raise self._rejected(app, exc) from None
        return web.Response(text=echostr, content_type=_TEXT)

    async def push(self, request: web.Request) -> web.Response:
        app = self._app(request)
        # WeChat sends text/xml; read_body's JSON content-type check does not apply here.
        body = await read_limited(request, min(self.ctx.max_body_bytes, MAX_BODY_BYTES))
        now = self.ctx.clock.now()
        window_s = callback_max_skew_s(self.ctx.settings, app)
        try:
            push = open_push(app, request.query, body, now=now, max_skew_s=window_s)
        except CallbackError as exc:
            raise self._rejected(app, exc) from None
        await self._use_nonce(app, push, now, window_s)
        for r in push.receipts:
            await self._apply(app, r)
        for c in push.choices:  # a reject suppresses later messages of that template
            await self.ctx.store.set_choice(
                app.name, c.openid, c.template_id, c.accepted, float(c.create_time)
            )
        return web.Response(text="success", content_type=_TEXT)

    async def _use_nonce(self, app: AppSettings, push: Push, now: float, window_s: float) -> None:
        """Refuse a (timestamp, nonce) already used with another body: a captured URL replayed
        with a forged body. The same push again (WeChat's retry, whether or not it keeps the
        nonce) goes on and is applied idempotently, so it changes nothing twice."""
        ttl_s = push.timestamp + window_s + _NONCE_SLACK_S - now
        nonce = f"{push.timestamp}:{push.nonce}"
        if await self.ctx.store.remember_nonce(app.name, nonce, push.digest, ttl_s, now):
            return
        self._log.warning(
            f"{app.name}:replay", "callback for app %r refused: nonce reused", app.name
        )
        raise ApiError(403, "replayed", "callback nonce was already used")

    async def _apply(self, app: AppSettings, r: Receipt) -> None:
        store = self.ctx.store
        known = await store.find_by_wechat_msgid(app.name, r.msgid)
        linked_to: str | None = None
        if known is None and r.template_id is not None:
            # A subscribe receipt no msgid claims: its send may have answered without one.
            how, linked_to = await self._links.match(
                app.name,
                r.openid,
                r.template_id,
                PendingReceipt(r.msgid, r.status, r.event_key, r.create_time),
                self.ctx.clock.now(),
            )
            if how is Match.WAIT:
                return  # kept with its send, which applies it when its answer is recorded
            if how is not Match.ATTACH:
                self.ctx.metrics.on_receipt_unlinked(app.name, how.value)
                self._log.warning(
                    f"{app.name}:{how.value}",
                    "callback for app %r: %s subscribe receipt for msgid %d kept, not applied",
                    app.name,
                    how.value,
                    r.msgid,
                )
        if known is not None and known.touser != r.openid:
            # Answered "success" all the same: WeChat would only retry, and a forger learns
            # nothing. The store checks again (an early receipt waits with its openid).
            self._log.warning(
                f"{app.name}:openid",
                "callback for app %r: receipt for msgid %d names another openid; ignored",
                app.name,
                r.msgid,
            )
            return
        tracer = self.ctx.tracer
        if tracer.enabled and known is not None:
            # A child of the message's accept span. A receipt that beats the ack (known is
            # None) is applied by the ack later and gets no span of its own.
            attrs = {
                "wxgate.message_id": known.id,
                "wxgate.app": app.name,
                "wechat.status": r.status,
            }
            with tracer.start("wxgate.receipt", known.trace, attrs, "consumer") as span:
                updated = await store.record_receipt(
                    app.name, r.msgid, r.status, r.event_key, r.openid, message_id=linked_to
                )
                span.set("wxgate.status", "duplicate" if updated is None else updated.status.value)
        else:
            updated = await store.record_receipt(
                app.name, r.msgid, r.status, r.event_key, r.openid, message_id=linked_to
            )
        if updated is not None:
            self.ctx.metrics.on_receipt(
                app.name, updated.status.value, updated.created_at, self.ctx.clock.now()
            )
