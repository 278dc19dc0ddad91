"""Receipts pushed to a real receiver in the test, checked with wxgate.wechat.crypto."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from support.sim import APPID, SECRET, SUBSCRIBE_PATH, send, sub, token, tpl
from wxgate.sim.config import SimApp, SimConfig
from wxgate.sim.testing import running_simulator
from wxgate.wechat import crypto

CALLBACK_TOKEN = "cb_token"
BIZSEND_PATH = "/cgi-bin/message/subscribe/bizsend"
AES_KEY = base64.b64encode(os.urandom(32)).decode().rstrip("=")


@dataclass
class Receiver:
    url: str = ""
    aes_key: str | None = None
    fail_first: int = 0  # answer 500 to this many pushes
    stall_first: int = 0  # answer these pushes only at teardown (past the sender's timeout)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    json_bodies: list[dict[str, object]] = field(default_factory=list)
    events: list[ET.Element] = field(default_factory=list)
    attempts: int = 0
    problems: list[str] = field(default_factory=list)
    got: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        q = request.query
        body = await request.read()
        if not crypto.check_signature(q["signature"], CALLBACK_TOKEN, q["timestamp"], q["nonce"]):
            self.problems.append("bad signature")
        if self.attempts <= self.stall_first:
            await self.release.wait()
            return web.Response(text="success")
        if body.startswith(b"{"):
            self.json_bodies.append(json.loads(body))
            self.got.set()
            return web.Response(text="success")
        root = ET.fromstring(body)
        if self.aes_key is not None:
            if q.get("encrypt_type") != "aes":
                self.problems.append("not encrypted")
            encrypted = root.findtext("Encrypt") or ""
            if not crypto.check_signature(
                q["msg_signature"], CALLBACK_TOKEN, q["timestamp"], q["nonce"], encrypted
            ):
                self.problems.append("bad msg_signature")
            if root.findtext("ToUserName") != "gh_test":
                self.problems.append("bad outer ToUserName")
            root = ET.fromstring(crypto.decrypt(self.aes_key, APPID, encrypted))
        if self.attempts <= self.fail_first:
            return web.Response(status=500)
        self.events.append(root)
        self.got.set()
        return web.Response(text="success")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/wechat/callback", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/wechat/callback"
    try:
        yield rec
    finally:
        rec.release.set()
        await runner.cleanup()


def _config(rec: Receiver) -> SimConfig:
    app = SimApp(
        appid=APPID,
        secret=SECRET,
        callback_url=rec.url,
        callback_token=CALLBACK_TOKEN,
        encoding_aes_key=rec.aes_key,
        original_id="gh_test",
    )
    return SimConfig(apps=[app], receipt_delay_s=0.0)


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "aes"])
async def test_template_receipts(
    receiver: Receiver, http: aiohttp.ClientSession, aes: bool
) -> None:
    receiver.aes_key = AES_KEY if aes else None
    async with running_simulator(_config(receiver)) as sim:
        tok = await token(http, sim.base_url)
        sent = {
            openid: (await send(http, sim.base_url, tok, tpl(openid, cmid=f"c-{openid}")))["msgid"]
            for openid in ("oAlice", "o_blocked_1", "o_sysfail_1")
        }
        # A dedupe re-send answers again but pushes nothing new.
        await send(http, sim.base_url, tok, tpl("oAlice", cmid="c-oAlice"))
        await sim.wait_receipts()
        assert not receiver.problems
        by_openid = {e.findtext("FromUserName"): e for e in receiver.events}
        assert len(receiver.events) == 3
        expected = {
            "oAlice": "success",
            "o_blocked_1": "failed:user block",
            "o_sysfail_1": "failed: system failed",
        }
        for openid, status in expected.items():
            event = by_openid[openid]
            assert event.findtext("ToUserName") == "gh_test"
            assert event.findtext("MsgType") == "event"
            assert event.findtext("Event") == "TEMPLATESENDJOBFINISH"
            assert int(event.findtext("MsgID") or 0) == sent[openid]
            assert event.findtext("Status") == status
            assert int(event.findtext("CreateTime") or 0) > 1_600_000_000
        stats = await sim.stats()
        assert stats["receipts_sent"] == 3 and stats["receipts_failed"] == 0


async def test_subscribe_sent_event(receiver: Receiver, http: aiohttp.ClientSession) -> None:
    config = _config(receiver)
    config.subscribe_msgid = True  # the answer carries the msgid the receipt repeats
    async with running_simulator(config) as sim:
        tok = await token(http, sim.base_url)
        msgid = (await send(http, sim.base_url, tok, sub("oBob"), SUBSCRIBE_PATH))["msgid"]
        await sim.wait_receipts()
        [event] = receiver.events
        assert event.findtext("Event") == "subscribe_msg_sent_event"
        item = event.find("SubscribeMsgSentEvent/List")
        assert item is not None
        assert item.findtext("TemplateId") == "tpl_sub_1"
        assert int(item.findtext("MsgID") or 0) == msgid
        assert item.findtext("ErrorCode") == "0" and item.findtext("ErrorStatus") == "success"


async def test_subscribe_and_bizsend_answer_without_msgid(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    """By default neither subscribe/send nor bizsend answers a msgid; receipts carry one."""
    async with running_simulator(_config(receiver)) as sim:
        tok = await token(http, sim.base_url)
        answer = await send(http, sim.base_url, tok, sub("oBob"), SUBSCRIBE_PATH)
        assert answer == {"errcode": 0, "errmsg": "ok"}
        biz = {"touser": "oCarol", "template_id": "oa_1", "data": {"thing1": {"value": "ok"}}}
        assert await send(http, sim.base_url, tok, biz, BIZSEND_PATH) == answer
        await sim.wait_receipts()
        assert len(receiver.events) == 2
        for event in receiver.events:
            assert event.findtext("Event") == "subscribe_msg_sent_event"
            assert int(event.findtext("SubscribeMsgSentEvent/List/MsgID") or 0) > 0
        templates = {e.findtext("SubscribeMsgSentEvent/List/TemplateId") for e in receiver.events}
        assert templates == {"tpl_sub_1", "oa_1"}


async def test_json_pushes_have_list_as_an_object(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    config = _config(receiver)
    config.apps[0].push_format = "json"
    async with running_simulator(config) as sim:
        tok = await token(http, sim.base_url)
        await send(http, sim.base_url, tok, sub("oBob"), SUBSCRIBE_PATH)
        await sim.wait_receipts()
        [event] = receiver.json_bodies
        assert event["Event"] == "subscribe_msg_sent_event"
        assert event["FromUserName"] == "oBob" and event["ToUserName"] == "gh_test"
        item = event["SubscribeMsgSentEvent"]["List"]  # type: ignore[index]
        assert item["TemplateId"] == "tpl_sub_1" and item["ErrorCode"] == "0"


async def test_an_http_error_answer_is_not_retried(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    """WeChat pushes again only when no answer came in time: a 500 is an answer."""
    receiver.fail_first = 1
    async with running_simulator(_config(receiver)) as sim:
        tok = await token(http, sim.base_url)
        await send(http, sim.base_url, tok, tpl("oAlice"))
        await sim.wait_receipts()
        assert receiver.attempts == 1 and not receiver.events
        assert sim.state.receipts_refused == 1 and sim.state.receipts_retried == 0


async def test_no_answer_in_time_is_retried_three_times(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    receiver.stall_first = 2
    config = _config(receiver)
    config.receipt_timeout_s = 0.5
    async with running_simulator(config) as sim:
        tok = await token(http, sim.base_url)
        await send(http, sim.base_url, tok, tpl("oAlice"))
        await sim.wait_receipts()
        assert receiver.attempts == 3 and len(receiver.events) == 1
        assert sim.state.receipts_sent == 1 and sim.state.receipts_retried == 2
        receiver.stall_first = 10**6
        await send(http, sim.base_url, tok, tpl("oBob"))
        await sim.wait_receipts()
        assert receiver.attempts == 6
        assert sim.state.receipts_failed == 1


async def test_receipts_wait_for_the_delay(receiver: Receiver, http: aiohttp.ClientSession) -> None:
    config = _config(receiver)
    config.receipt_delay_s = 0.3
    async with running_simulator(config) as sim:
        tok = await token(http, sim.base_url)
        await send(http, sim.base_url, tok, tpl("oAlice"))
        await asyncio.sleep(0.1)
        assert not receiver.events
        await asyncio.wait_for(receiver.got.wait(), 2)


async def test_no_callback_url_no_receipts(http: aiohttp.ClientSession) -> None:
    async with running_simulator() as sim:
        tok = await token(http, sim.base_url)
        await send(http, sim.base_url, tok, tpl("oAlice"))
        await sim.wait_receipts()
        assert sim.state.receipts_sent == 0 and sim.sim.receipts.pending == 0


async def test_verify_callback_url(receiver: Receiver, http: aiohttp.ClientSession) -> None:
    async def echo(request: web.Request) -> web.Response:
        q = request.query
        ok = crypto.check_signature(q["signature"], CALLBACK_TOKEN, q["timestamp"], q["nonce"])
        return web.Response(text=q["echostr"] if ok else "no")

    app = web.Application()
    app.router.add_get("/cb", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/cb"
        async with running_simulator(_config(receiver)) as sim:
            async with http.post(f"{sim.base_url}/_sim/verify-callback?appid={APPID}") as resp:
                assert (await resp.json())["ok"] is True
    finally:
        await runner.cleanup()
