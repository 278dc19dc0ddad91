"""The api.weixin.qq.com endpoints: tokens, template and subscribe sends, quota calls.

The send handler is the hot path of every benchmark: no logging, no middleware, pre-encoded
success bodies, and fault checks skipped behind one boolean when nothing is injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

import msgspec
from aiohttp import web

from wxgate.sim import answers
from wxgate.sim.deliveries import KINDS
from wxgate.sim.faults import Compiled
from wxgate.sim.receipts import Receipt, ReceiptSender
from wxgate.sim.state import AppState, SimState, minute_of
from wxgate.sim.templates import check_listed, check_send
from wxgate.sim.tokens import TokenRecord, shanghai_day
from wxgate.sim.validate import (
    BizsendReq,
    SubscribeReq,
    TemplateReq,
    check_bizsend,
    check_subscribe,
    check_template,
)

TEMPLATE, SUBSCRIBE, BIZSEND = 0, 1, 2
_KIND_NAMES = KINDS  # SimTemplate.kind of each kind number
SUCCESS, USER_BLOCK, SYSTEM_FAILED = 0, 1, 2
_STATUS_TEXT = ("success", "failed:user block", "failed: system failed")
_JSON = "application/json"

# Test recipients by openid prefix (o_invalid is a validation error, see validate.py).
_ALWAYS = {
    "o_unfollowed": 43004,
    "o_refused": 43101,
    "o_unsubscribed": 43101,  # has not accepted the template (subscribe kinds' answer)
    "o_unauthorized": 48001,
    "o_notfollowing": 50005,
}
_SPECIAL = (
    "o_unfollowed",
    "o_refused",
    "o_unsubscribed",
    "o_unauthorized",
    "o_notfollowing",
    "o_baddata",
    "o_busy",
    "o_minute",
    "o_quota",
    "o_5xx",
    "o_blocked",
    "o_sysfail",
    "o_slow",
    "o_reset",
)
_LINGER_RST = struct.pack("ii", 1, 0)
_any = msgspec.json.Decoder()


def _token_of(request: web.Request) -> str | None:
    qs = request.query_string
    if qs.startswith("access_token=") and "&" not in qs:
        return qs[13:]
    return request.query.get("access_token")


def reset_connection(request: web.Request) -> None:
    """Drop the connection with a TCP RST and no answer, like a middlebox losing it."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    transport.abort()


class Api:
    def __init__(self, state: SimState, receipts: ReceiptSender) -> None:
        self.state = state
        self.receipts = receipts
        self.stopping = asyncio.Event()  # set at shutdown so held answers end at once

    async def hold(self, request: web.Request, seconds: float) -> web.Response | None:
        """Keep the answer back for `seconds`; at shutdown, drop the connection instead."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        if self.stopping.is_set():
            return self.drop_connection(request)
        return None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/cgi-bin/token", self.token),
            web.post("/cgi-bin/stable_token", self.stable_token),
            web.post("/cgi-bin/message/template/send", self.template_send),
            web.post("/cgi-bin/message/subscribe/send", self.subscribe_send),
            web.post("/cgi-bin/message/subscribe/bizsend", self.bizsend),
            web.get("/cgi-bin/message/template/send", self.require_post),
            web.get("/cgi-bin/message/subscribe/send", self.require_post),
            web.get("/cgi-bin/message/subscribe/bizsend", self.require_post),
            web.post("/cgi-bin/openapi/quota/get", self.quota_get),
            web.post("/cgi-bin/clear_quota", self.clear_quota),
        ]

    # -- answers -------------------------------------------------------------------------

    def error(self, errcode: int, detail: str | None = None) -> web.Response:
        self.state.errors[errcode] += 1
        return web.Response(body=answers.error_body(errcode, detail), content_type=_JSON)

    def http_error(self, status: int) -> web.Response:
        self.state.http_errors[status] += 1
        return web.Response(
            status=status, body=answers.html_error(status), content_type="text/html"
        )

    def drop_connection(self, request: web.Request) -> web.Response:
        self.state.resets += 1
        reset_connection(request)
        return web.Response(status=500)  # never reaches the client; aiohttp discards it

    async def _gate(self, request: web.Request, f: Compiled, now: float) -> web.Response | None:
        """Latency, outage and HTTP 5xx faults shared by every API endpoint."""
        if f.has_latency:
            await asyncio.sleep(f.latency_s())
        if not f.gated:
            return None
        if f.in_outage(now):
            if f.faults.outage_mode == "reset":
                return self.drop_connection(request)
            return self.http_error(503)
        if f.draw_5xx():
            return self.http_error(f.faults.http_5xx_status)
        return None

    # -- tokens --------------------------------------------------------------------------

    def _token_app(
        self, grant_type: Any, appid: Any, secret: Any, wrong_secret: int
    ) -> AppState | web.Response:
        if grant_type != "client_credential":
            return self.error(40002)
        if not appid or not isinstance(appid, str):
            return self.error(41002)
        app = self.state.apps.get(appid)
        if app is None:
            return self.error(40013)
        if not secret or not isinstance(secret, str):
            return self.error(41004)
        if secret != app.cfg.secret:
            return self.error(wrong_secret, answers.SECRET_MSG if wrong_secret == 40001 else None)
        return app

    def _issued(self, app: AppState, rec: TokenRecord, expires_in: int) -> web.Response:
        appid = app.cfg.appid
        self.state.token_fetches[appid] += 1
        self.state.token_fetches_kind[(appid, rec.kind)] += 1
        return web.Response(body=answers.token_body(rec.token, expires_in), content_type=_JSON)

    async def token(self, request: web.Request) -> web.Response:
        st = self.state
        st.requests += 1
        now = st.clock.now()
        q = request.query
        f = st.faults.for_app(q.get("appid"))
        early = await self._gate(request, f, now)
        if early is not None:
            return early
        injected = f.draw_token_error() if f.gated else None
        if injected is not None:
            return self.error(injected)
        app = self._token_app(
            q.get("grant_type"), q.get("appid"), q.get("secret"), st.config.wrong_secret_errcode
        )
        if isinstance(app, web.Response):
            return app
        app.roll(now)
        limit = app.cfg.token_daily_limit
        if limit and app.token_calls >= limit:
            return self.error(45009)
        app.token_calls += 1
        rec, expires_in = st.tokens.classic(app.cfg.appid, now)
        return self._issued(app, rec, expires_in)

    async def stable_token(self, request: web.Request) -> web.Response:
        st = self.state
        st.requests += 1
        now = st.clock.now()
        body = await request.read()
        raw: Any = None
        if body:
            with contextlib.suppress(msgspec.DecodeError):
                raw = _any.decode(body)
        appid = raw.get("appid") if isinstance(raw, dict) else None
        f = st.faults.for_app(appid if isinstance(appid, str) else None)
        early = await self._gate(request, f, now)
        if early is not None:
            return early
        if not body:
            return self.error(44002)
        if not isinstance(raw, dict):
            return self.error(47001)
        injected = f.draw_token_error() if f.gated else None
        if injected is not None:
            return self.error(injected)
        app = self._token_app(raw.get("grant_type"), appid, raw.get("secret"), 40125)
        if isinstance(app, web.Response):
            return app
        app.roll(now)
        limit = app.cfg.stable_daily_limit
        if limit and app.stable_calls >= limit:
            return self.error(45009)
        per_minute = app.cfg.stable_minute_limit
        if per_minute:
            minute = minute_of(now)
            if minute != app.stable_minute:
                app.stable_minute, app.stable_minute_calls = minute, 0
            if app.stable_minute_calls >= per_minute:
                return self.error(45011)
            app.stable_minute_calls += 1
        app.stable_calls += 1
        rec, expires_in = st.tokens.stable(app.cfg.appid, now, raw.get("force_refresh") is True)
        return self._issued(app, rec, expires_in)

    # -- sends ---------------------------------------------------------------------------

    async def template_send(self, request: web.Request) -> web.StreamResponse:
        return await self._send(request, TEMPLATE)

    async def subscribe_send(self, request: web.Request) -> web.StreamResponse:
        return await self._send(request, SUBSCRIBE)

    async def bizsend(self, request: web.Request) -> web.StreamResponse:
        return await self._send(request, BIZSEND)

    async def _send(self, request: web.Request, kind: int) -> web.StreamResponse:
        st = self.state
        st.requests += 1
        now = st.clock.now()
        token = _token_of(request)
        if token:
            code, appid = st.tokens.check(token, now)
        else:
            code, appid = 41001, None
        f = st.faults.for_app(appid)
        if f.has_latency or f.gated:
            early = await self._gate(request, f, now)
            if early is not None:
                return early
        if code or appid is None:
            return self.error(code)
        body = await request.read()
        if not body:
            return self.error(44002)
        req: TemplateReq | SubscribeReq | BizsendReq | None
        if kind == TEMPLATE:
            req, problem = check_template(body)
        elif kind == SUBSCRIBE:
            req, problem = check_subscribe(body)
        else:
            req, problem = check_bizsend(body)
        if problem is not None or req is None:
            return self.error(*(problem or (47001, None)))
        cfg = st.apps[appid].cfg
        listed = check_listed(cfg, _KIND_NAMES[kind], req.template_id, req.data)
        if listed is not None:
            return self.error(*listed)
        if cfg.validate_templates:
            listed = check_send(cfg, _KIND_NAMES[kind], req.template_id, req.data)
            if listed is not None:
                return self.error(*listed)
        if f.gated:
            injected = f.draw_send_error()
            if injected is not None:
                return self.error(injected)
        openid = req.touser
        if kind != TEMPLATE and (appid, openid, req.template_id) in st.rejected:
            return self.error(43101)  # the user rejected this template (/_sim/subscription)
        # Subscribe sends have no client_msg_id in WeChat's API; an empty one means none.
        cmid = (req.client_msg_id or None) if isinstance(req, TemplateReq) else None
        log = st.log
        if cmid is not None:
            seen = log.find_recent(now, appid, openid, cmid)
            if seen is not None:
                # Same openid + client_msg_id within 10 min: the original answer, nothing new.
                st.deduplicated += 1
                return web.Response(body=answers.ok_send(log.msgid(seen)), content_type=_JSON)

        status = SUCCESS
        special = None
        if openid.startswith("o_"):
            for prefix in _SPECIAL:
                if openid.startswith(prefix):
                    special = prefix
                    break
        if special is not None:
            if special in _ALWAYS:
                return self.error(_ALWAYS[special])
            if special == "o_baddata":
                key = next(iter(req.data or ()), "keyword1")
                return self.error(47003, f"argument invalid! data.{key}.value invalid")
            if special == "o_blocked":
                status = USER_BLOCK
            elif special == "o_sysfail":
                status = SYSTEM_FAILED
            elif special in ("o_busy", "o_minute", "o_quota", "o_5xx"):
                n = st.try_number((appid, openid, cmid))
                if special == "o_busy" and n <= 2:
                    return self.error(-1)
                if n == 1:
                    if special == "o_minute":
                        return self.error(45011)
                    if special == "o_quota":
                        return self.error(45009)
                    if special == "o_5xx":
                        return self.http_error(502)

        app = st.apps[appid]
        app.roll(now)
        if app.day_sends >= app.cfg.daily_quota:
            return self.error(45009)
        limit = app.cfg.minute_limit
        if limit is not None:
            minute = minute_of(now)
            if minute != app.minute:
                app.minute, app.minute_sends = minute, 0
            if app.minute_sends >= limit:
                return self.error(45011)
            app.minute_sends += 1
        app.day_sends += 1

        msgid = st.next_msgid()
        log.add(now, appid, kind, status, openid, req.template_id, cmid, msgid, body)
        st.accepted += 1
        if status == SUCCESS:
            st.delivered += 1
        if app.cfg.callback_url is not None and (kind == TEMPLATE or st.config.subscribe_receipts):
            self.receipts.enqueue(
                Receipt(
                    asyncio.get_running_loop().time() + st.config.receipt_delay_s,
                    appid,
                    openid,
                    msgid,
                    req.template_id,
                    kind != TEMPLATE,
                    _STATUS_TEXT[status],
                    int(now),
                )
            )

        # Delivered already: whatever happens now, the client cannot know that it was.
        if special in ("o_slow", "o_reset") and st.try_number((appid, openid, cmid)) == 1:
            if special == "o_reset":
                return self.drop_connection(request)
            st.stalls += 1
            held = await self.hold(request, st.config.slow_s)
            if held is not None:
                return held
        elif f.gated:
            if f.draw_reset():
                return self.drop_connection(request)
            if f.draw_stall():
                st.stalls += 1
                held = await self.hold(request, f.faults.stall_s)
                if held is not None:
                    return held
        return web.Response(body=self._ok(kind, msgid), content_type=_JSON)

    def _ok(self, kind: int, msgid: int) -> bytes:
        """bizsend never answers a msgid; subscribe/send only with the subscribe_msgid option
        (docs/wechat-api.md §3): its receipt still carries one."""
        if kind == TEMPLATE or (kind == SUBSCRIBE and self.state.config.subscribe_msgid):
            return answers.ok_send(msgid)
        return answers.OK_PLAIN

    async def require_post(self, request: web.Request) -> web.Response:
        self.state.requests += 1
        return self.error(43002)

    # -- quota ---------------------------------------------------------------------------

    def _app_of(self, request: web.Request) -> AppState | web.Response:
        token = _token_of(request)
        if not token:
            return self.error(41001)
        code, appid = self.state.tokens.check(token, self.state.clock.now())
        if code or appid is None:
            return self.error(code)
        return self.state.apps[appid]

    async def quota_get(self, request: web.Request) -> web.Response:
        self.state.requests += 1
        app = self._app_of(request)
        if isinstance(app, web.Response):
            return app
        raw: Any = None
        with contextlib.suppress(msgspec.DecodeError):
            raw = _any.decode(await request.read() or b"null")
        path = raw.get("cgi_path") if isinstance(raw, dict) else None
        app.roll(self.state.clock.now())
        if path in (
            "/cgi-bin/message/template/send",
            "/cgi-bin/message/subscribe/send",
            "/cgi-bin/message/subscribe/bizsend",
        ):
            limit, used = app.cfg.daily_quota, app.day_sends
        elif path == "/cgi-bin/token":
            limit, used = app.cfg.token_daily_limit, app.token_calls
        elif path == "/cgi-bin/stable_token":
            limit, used = app.cfg.stable_daily_limit, app.stable_calls
        else:
            return self.error(76003)
        quota = {"daily_limit": limit, "used": used, "remain": max(0, limit - used)}
        body = answers.encode({"errcode": 0, "errmsg": "ok", "quota": quota})
        return web.Response(body=body, content_type=_JSON)

    async def clear_quota(self, request: web.Request) -> web.Response:
        """Resets the app's daily counts; 10 times a month, then 48006."""
        self.state.requests += 1
        app = self._app_of(request)
        if isinstance(app, web.Response):
            return app
        now = self.state.clock.now()
        month = shanghai_day(now) // 30  # close enough to a calendar month for a simulator
        seen_month, count = app.clears
        count = count if seen_month == month else 0
        if count >= 10:
            return self.error(48006)
        app.clears = (month, count + 1)
        app.day_sends = app.token_calls = app.stable_calls = 0
        return web.Response(body=answers.OK_PLAIN, content_type=_JSON)
