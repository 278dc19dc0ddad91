"""The simulator's template-list endpoints, and sends checked against them when asked.

The gateway's parser (written separately, docs/architecture.md §10) reads what the simulator serves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from wxgate.models import MessageKind
from wxgate.sim.config import SimApp, SimConfig, SimTemplate
from wxgate.sim.testing import SimHandle, running_simulator
from wxgate.wechat.templates import parse_templates

APPID, SECRET = "wx_t", "secret_t"


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    config = SimConfig(
        apps=[
            SimApp(appid=APPID, secret=SECRET),
            SimApp(
                appid="wx_strict",
                secret="s",
                validate_templates=True,
                templates=[
                    SimTemplate(template_id="T", keys=["thing1"]),
                    SimTemplate(template_id="S", keys=["thing1"], kind="subscribe"),
                ],
            ),
        ]
    )
    async with running_simulator(config) as handle:
        yield handle


async def token(s: aiohttp.ClientSession, base: str, appid: str, secret: str) -> str:
    body = {"grant_type": "client_credential", "appid": appid, "secret": secret}
    async with s.post(f"{base}/cgi-bin/stable_token", json=body) as resp:
        return str((await resp.json())["access_token"])


async def call(s: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, bytes]:
    async with s.request(method, url, **kw) as resp:
        return resp.status, await resp.read()


async def test_lists_in_wechat_shapes_read_by_the_gateway_parser(sim: SimHandle) -> None:
    base = sim.base_url
    async with aiohttp.ClientSession() as s:
        tok = await token(s, base, APPID, SECRET)
        status, raw = await call(
            s, "GET", f"{base}/cgi-bin/template/get_all_private_template?access_token={tok}"
        )
        oa = parse_templates(MessageKind.TEMPLATE, status, raw)
        assert oa["tpl_order_shipped"].keys == ("thing1", "character_string2", "time3")
        assert set(oa) == {"tpl_order_shipped", "tpl_order"}
        async with s.post(
            f"{base}/cgi-bin/template/get_all_private_template", params={"access_token": tok}
        ) as r:
            body = await r.json()
        assert set(body["template_list"][0]) == {
            "template_id",
            "title",
            "primary_industry",
            "deputy_industry",
            "content",
            "example",
        }
        status, raw = await call(s, "GET", f"{base}/wxaapi/newtmpl/gettemplate?access_token={tok}")
        sub = parse_templates(MessageKind.SUBSCRIBE, status, raw)
        # One list for mini-program and OA subscribe templates (an account has one kind).
        assert set(sub) == {"sub_order_status", "oa_order_status"}
        assert parse_templates(MessageKind.OA_SUBSCRIBE, status, raw) == sub
        assert sub["sub_order_status"].keys == ("thing1", "character_string2", "phrase3", "time4")
        async with s.get(f"{base}/wxaapi/newtmpl/gettemplate", params={"access_token": tok}) as r:
            answer = await r.json()
        assert (answer["errcode"], answer["errmsg"]) == (0, "ok")
        assert set(answer["data"][0]) == {"priTmplId", "title", "content", "example", "type"}
        # A token is needed, as for every API call.
        async with s.get(f"{base}/wxaapi/newtmpl/gettemplate?access_token=nope") as r:
            assert (await r.json())["errcode"] in (40001, 40014)
        async with s.get(f"{base}/cgi-bin/template/get_all_private_template") as r:
            assert (await r.json())["errcode"] == 41001


async def test_sends_are_unchecked_unless_the_app_asks(sim: SimHandle) -> None:
    base = sim.base_url
    async with aiohttp.ClientSession() as s:
        loose = await token(s, base, APPID, SECRET)
        strict = await token(s, base, "wx_strict", "s")

        async def send(tok: str, path: str, template_id: str, data: dict[str, Any]) -> int:
            body = {"touser": "o_user", "template_id": template_id, "data": data}
            async with s.post(f"{base}{path}?access_token={tok}", json=body) as r:
                return int((await r.json())["errcode"])

        tpl, sub = "/cgi-bin/message/template/send", "/cgi-bin/message/subscribe/send"
        anything = {"keyword9": {"value": "x"}}
        assert await send(loose, tpl, "tpl_anything", anything) == 0, "unchanged by default"
        assert await send(strict, tpl, "T", {"thing1": {"value": "x"}}) == 0
        assert await send(strict, tpl, "tpl_anything", {"thing1": {"value": "x"}}) == 40037
        assert await send(strict, tpl, "S", {"thing1": {"value": "x"}}) == 40037, "wrong kind"
        assert await send(strict, tpl, "T", anything) == 47003
        assert await send(strict, sub, "S", {"thing1": {"value": "x"}}) == 0
