"""GET|POST /wechat/callback/{app}: WeChat's URL check and its event pushes (receipts).

Authenticated by WeChat's signature, not an API key. Never slow: only the store is touched,
and "success" is answered only after every receipt is recorded, so a store failure makes
WeChat push again instead of losing the receipt.
"""

from __future__ import annotations

from aiohttp import web

from wxgate.api.body import read_limited
from wxgate.api.context import Gateway
from wxgate.api.errors import ApiError
from wxgate.settings import AppSettings
from wxgate.wechat.callback import MAX_BODY_BYTES, CallbackError, parse_push, verify_url

_TEXT = "text/plain"


# CallbackError carries no kind, so its (stable, module-local) reason text tells a forged or
# stale request (403, nothing stored) from a signed one we cannot read (400).
_FORBIDDEN_REASONS = ("bad signature", "bad msg_signature", "timestamp")


def _rejected(exc: CallbackError) -> ApiError:
    reason = str(exc)
    if reason.startswith(_FORBIDDEN_REASONS):
        return ApiError(403, "bad_signature", "callback signature did not verify")
    return ApiError(400, "invalid_request", f"callback rejected: {reason}")


class CallbackRoutes:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def _app(self, request: web.Request) -> AppSettings:
        name = request.match_info["app"]
        app = self.gw.apps.get(name)
        # Without a token anyone could compute a valid signature, so such an app has no callback.
        if app is None or not app.callback_token:
            raise ApiError(404, "not_found", f"no callback configured for app {name!r}", "app")
        return app

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
            raise _rejected(exc) from None
        return web.Response(text=echostr, content_type=_TEXT)

    async def push(self, request: web.Request) -> web.Response:
        app = self._app(request)
        # WeChat sends text/xml; read_body's JSON content-type check does not apply here.
        body = await read_limited(request, min(self.gw.max_body_bytes, MAX_BODY_BYTES))
        try:
            receipts = parse_push(app, request.query, body, now=self.gw.clock.now())
        except CallbackError as exc:
            raise _rejected(exc) from None
        for r in receipts:
            updated = await self.gw.store.record_receipt(app.name, r.msgid, r.status, r.event_key)
            if updated is not None:
                self.gw.metrics.on_receipt(
                    app.name, updated.status.value, updated.created_at, self.gw.clock.now()
                )
        return web.Response(text="success", content_type=_TEXT)
