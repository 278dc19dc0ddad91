"""Receipts pushed to a real receiver in the test, checked with wxgate.wechat.crypto."""

from __future__ import annotations

import asyncio
import base64
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
AES_KEY = base64.b64encode(os.urandom(32)).decode().rstrip("=")


@dataclass
class Receiver:
    url: str = ""
    aes_key: str | None = None
    fail_first: int = 0  # answer 500 to this many pushes
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
    async with running_simulator(_config(receiver)) as sim:
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


async def test_receipts_are_retried_three_times(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    receiver.fail_first = 2
    async with running_simulator(_config(receiver)) as sim:
        tok = await token(http, sim.base_url)
        await send(http, sim.base_url, tok, tpl("oAlice"))
        await sim.wait_receipts()
        assert receiver.attempts == 3 and len(receiver.events) == 1
        assert sim.state.receipts_sent == 1 and sim.state.receipts_retried == 2
        receiver.fail_first = 10**6
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
