"""Hand-built WeChat requests for the simulator tests (no wxgate.wechat protocol code)."""

from __future__ import annotations

from typing import Any

import aiohttp

APPID, SECRET = "wx_sandbox", "sandbox_secret"
TEMPLATE_PATH = "/cgi-bin/message/template/send"
SUBSCRIBE_PATH = "/cgi-bin/message/subscribe/send"


async def classic_token(
    http: aiohttp.ClientSession, base: str, appid: str = APPID, secret: str = SECRET
) -> dict[str, Any]:
    params = {"grant_type": "client_credential", "appid": appid, "secret": secret}
    async with http.get(f"{base}/cgi-bin/token", params=params) as resp:
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json(content_type=None)
        return answer


async def stable_token(
    http: aiohttp.ClientSession,
    base: str,
    appid: str = APPID,
    secret: str = SECRET,
    force: bool | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"grant_type": "client_credential", "appid": appid, "secret": secret}
    if force is not None:
        body["force_refresh"] = force
    async with http.post(f"{base}/cgi-bin/stable_token", json=body) as resp:
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json(content_type=None)
        return answer


async def token(http: aiohttp.ClientSession, base: str) -> str:
    answer = await classic_token(http, base)
    value: str = answer["access_token"]
    return value


def tpl(touser: str = "oAlice", cmid: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "touser": touser,
        "template_id": "tpl_order_shipped",
        "url": "https://example.com/orders/42",
        "data": {"thing1": {"value": "Order 42 shipped"}, "time2": {"value": "2024-05-01 10:00"}},
    }
    if cmid is not None:
        body["client_msg_id"] = cmid
    body.update(extra)
    return body


def sub(touser: str = "oAlice", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "touser": touser,
        "template_id": "tpl_sub_1",
        "page": "pages/order/detail?id=42",
        "data": {"thing1": {"value": "Order 42"}, "number2": {"value": "3"}},
    }
    body.update(extra)
    return body


async def post(
    http: aiohttp.ClientSession,
    base: str,
    path: str,
    access_token: str | None,
    body: dict[str, Any] | bytes,
) -> dict[str, Any]:
    url = f"{base}{path}"
    if access_token is not None:
        url += f"?access_token={access_token}"
    data = body if isinstance(body, bytes) else None
    json_body = body if not isinstance(body, bytes) else None
    async with http.post(url, data=data, json=json_body) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json(content_type=None)
        return answer


async def send(
    http: aiohttp.ClientSession,
    base: str,
    access_token: str | None,
    body: dict[str, Any] | bytes,
    path: str = TEMPLATE_PATH,
) -> dict[str, Any]:
    return await post(http, base, path, access_token, body)


def assert_err(answer: dict[str, Any], errcode: int) -> None:
    assert answer["errcode"] == errcode, answer
    assert " rid: " in answer["errmsg"], answer
