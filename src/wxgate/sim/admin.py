"""Introspection and control under /_sim/: deliveries, stats, faults, apps, token revocation.

The operations are plain methods so SimHandle calls them directly and HTTP just wraps them.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Literal

import aiohttp
import msgspec
from aiohttp import web

from wxgate.sim import answers
from wxgate.sim.config import SimApp
from wxgate.sim.receipts import ChoiceEvent, ReceiptSender
from wxgate.sim.state import SimState
from wxgate.wechat import crypto

_JSON = "application/json"


class _Subscription(msgspec.Struct, forbid_unknown_fields=True):
    appid: str
    openid: str
    template_id: str
    status: Literal["accept", "reject"]
    event: Literal["popup", "change"] = "popup"


def _json(obj: object, status: int = 200) -> web.Response:
    return web.Response(body=answers.encode(obj), status=status, content_type=_JSON)


def _bad(reason: str) -> web.Response:
    return _json({"error": reason}, status=400)


class Admin:
    def __init__(self, state: SimState, receipts: ReceiptSender) -> None:
        self.state = state
        self.receipts = receipts

    # -- operations ----------------------------------------------------------------------

    def deliveries(
        self,
        openid: str | None = None,
        app: str | None = None,
        client_msg_id: str | None = None,
        *,
        offset: int = 0,
        limit: int | None = None,
        duplicates: bool = False,
    ) -> list[dict[str, Any]]:
        log = self.state.log
        if duplicates:
            wanted = set(log.indices(openid, app, client_msg_id))
            idx = [i for i in log.duplicate_indices() if i in wanted]
        else:
            idx = list(log.indices(openid, app, client_msg_id))
        idx = idx[offset:] if limit is None else idx[offset : offset + limit]
        return [log.record(i) for i in idx]

    def stats(self) -> dict[str, Any]:
        out = self.state.stats()
        out["receipts_pending"] = self.receipts.pending
        return out

    def set_faults(self, changes: dict[str, Any], app: str | None = None) -> dict[str, Any]:
        """Merge fault settings; `clear: true` first drops what was set (for `app` if given)."""
        changes = dict(changes)
        plan = self.state.faults
        if changes.pop("clear", False):
            if app is None:
                plan.clear()
            else:
                plan.clear_app(app)
        if changes.pop("revoke_tokens", False):
            self.revoke_tokens(app)
        if changes:
            plan.update(changes, app, self.state.clock.now())
        return plan.describe()

    def revoke_tokens(self, appid: str | None = None) -> int:
        return self.state.tokens.revoke(appid, self.state.clock.now())

    def add_app(self, app: SimApp) -> None:
        if app.encoding_aes_key is not None:
            crypto.aes_key(app.encoding_aes_key)  # raises CryptoError (a ValueError) if bad
        self.state.add_app(app)

    def reset(self, tokens: bool = False) -> None:
        self.receipts.clear()
        self.state.reset(tokens=tokens)

    def subscription(
        self, appid: str, openid: str, template_id: str, accepted: bool, change: bool = False
    ) -> None:
        """A user accepts or rejects a subscribe template: later sends of it to them answer
        43101 until accepted again, and the popup (or change) event is pushed."""
        if appid not in self.state.apps:
            raise ValueError(f"unknown appid {appid!r}")
        if change and accepted:
            raise ValueError("subscribe_msg_change_event reports rejections only")
        key = (appid, openid, template_id)
        if accepted:
            self.state.rejected.discard(key)
        else:
            self.state.rejected.add(key)
        if self.state.apps[appid].cfg.callback_url is not None:
            due = asyncio.get_running_loop().time()
            now = int(self.state.clock.now())
            self.receipts.enqueue(
                ChoiceEvent(due, appid, openid, template_id, accepted, change, now)
            )

    async def verify_callback(self, appid: str) -> dict[str, Any]:
        """Do WeChat's URL check (GET with echostr) against the app's callback URL."""
        app = self.state.apps.get(appid)
        if app is None or app.cfg.callback_url is None:
            return {"ok": False, "reason": "unknown app or no callback_url"}
        timestamp = str(int(self.state.clock.now()))
        nonce = str(secrets.randbelow(10**10))
        echostr = secrets.token_hex(8)
        params = {
            "signature": crypto.signature(app.cfg.callback_token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": echostr,
        }
        timeout = aiohttp.ClientTimeout(total=self.state.config.receipt_timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(app.cfg.callback_url, params=params) as resp,
            ):
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return {"ok": False, "reason": type(exc).__name__}
        return {"ok": status == 200 and text == echostr, "status": status}

    # -- HTTP ----------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_sim/deliveries", self.h_deliveries),
            web.get("/_sim/stats", self.h_stats),
            web.post("/_sim/reset", self.h_reset),
            web.get("/_sim/faults", self.h_get_faults),
            web.post("/_sim/faults", self.h_set_faults),
            web.post("/_sim/revoke-tokens", self.h_revoke),
            web.get("/_sim/apps", self.h_apps),
            web.post("/_sim/apps", self.h_add_app),
            web.post("/_sim/verify-callback", self.h_verify),
            web.post("/_sim/subscription", self.h_subscription),
            web.get("/_sim/health", self.h_health),
        ]

    async def h_deliveries(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            offset = int(q.get("offset", "0"))
            limit = int(q["limit"]) if "limit" in q else None
        except ValueError:
            return _bad("offset and limit must be integers")
        if q.get("count_only") in ("1", "true"):
            n = sum(
                1
                for _ in self.state.log.indices(
                    q.get("openid"), q.get("app"), q.get("client_msg_id")
                )
            )
            return _json({"count": n})
        rows = self.deliveries(
            q.get("openid"),
            q.get("app"),
            q.get("client_msg_id"),
            offset=offset,
            limit=limit,
            duplicates=q.get("duplicates") in ("1", "true"),
        )
        return _json(rows)

    async def h_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats())

    async def h_reset(self, request: web.Request) -> web.Response:
        self.reset(tokens=request.query.get("tokens") in ("1", "true"))
        return _json({"ok": True})

    async def h_get_faults(self, request: web.Request) -> web.Response:
        return _json(self.state.faults.describe())

    async def h_set_faults(self, request: web.Request) -> web.Response:
        try:
            raw = msgspec.json.decode(await request.read() or b"{}")
        except msgspec.DecodeError:
            return _bad("body must be JSON")
        if not isinstance(raw, dict):
            return _bad("body must be a JSON object")
        app = raw.pop("app", None) or request.query.get("app")
        if app is not None and not isinstance(app, str):
            return _bad("app must be a string")
        try:
            return _json(self.set_faults(raw, app))
        except (msgspec.ValidationError, ValueError, TypeError) as exc:
            return _bad(str(exc))

    async def h_revoke(self, request: web.Request) -> web.Response:
        return _json({"revoked": self.revoke_tokens(request.query.get("appid"))})

    async def h_apps(self, request: web.Request) -> web.Response:
        apps = [
            {
                "appid": a.cfg.appid,
                "callback_url": a.cfg.callback_url,
                "original_id": a.cfg.original_id,
                "aes": a.cfg.encoding_aes_key is not None,
                "daily_quota": a.cfg.daily_quota,
                "minute_limit": a.cfg.minute_limit,
            }
            for a in self.state.apps.values()
        ]
        return _json(apps)

    async def h_add_app(self, request: web.Request) -> web.Response:
        try:
            app = msgspec.json.decode(await request.read(), type=SimApp)
            self.add_app(app)
        except (msgspec.DecodeError, ValueError) as exc:
            return _bad(str(exc))
        return _json({"ok": True, "appid": app.appid}, status=201)

    async def h_verify(self, request: web.Request) -> web.Response:
        appid = request.query.get("appid") or next(iter(self.state.apps), "")
        return _json(await self.verify_callback(appid))

    async def h_subscription(self, request: web.Request) -> web.Response:
        """{"appid", "openid", "template_id", "status": "accept"|"reject",
        "event": "popup"|"change"}: a user's choice, pushed as WeChat would."""
        try:
            raw = msgspec.json.decode(await request.read(), type=_Subscription)
            self.subscription(
                raw.appid,
                raw.openid,
                raw.template_id,
                raw.status == "accept",
                raw.event == "change",
            )
        except (msgspec.DecodeError, ValueError) as exc:
            return _bad(str(exc))
        return _json({"ok": True})

    async def h_health(self, request: web.Request) -> web.Response:
        return _json({"ok": True})
