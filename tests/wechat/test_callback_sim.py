"""The simulator's own receipt pushes (written independently from docs/wechat-api.md) go through
our verify_url / parse_push, plain and AES safe mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from support.wechat import message, settings_for
from wxgate.clock import SystemClock
from wxgate.models import MessageKind
from wxgate.settings import AppSettings
from wxgate.sim.config import SimApp, SimConfig
from wxgate.sim.testing import running_simulator
from wxgate.wechat.callback import CallbackError, Receipt, parse_push, verify_url
from wxgate.wechat.client import WeChatClient
from wxgate.wechat.tokens import MemoryTokenCache, TokenBroker

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


class Receiver:
    """A stand-in for the gateway's callback route: verify, parse, answer "success"."""

    def __init__(self, app: AppSettings) -> None:
        self.app = app
        self.receipts: list[Receipt] = []
        self.rejected: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            if request.method == "GET":
                echo = verify_url(
                    self.app.callback_token,
                    q["signature"],
                    q["timestamp"],
                    q["nonce"],
                    q["echostr"],
                )
                return web.Response(text=echo)
            self.receipts += parse_push(self.app, dict(q), await request.read())
        except CallbackError as exc:
            self.rejected.append(str(exc))
            return web.Response(status=400)
        return web.Response(text="success")


@asynccontextmanager
async def _serve(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/wechat/callback/sandbox", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/wechat/callback/sandbox"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "aes"])
async def test_simulator_receipts_parse(aes: bool) -> None:
    app = AppSettings(
        name="sandbox",
        appid="wx_sandbox",
        secret="sandbox_secret",
        callback_token="cb_token",
        encoding_aes_key=AES_KEY if aes else None,
    )
    receiver = Receiver(app)
    async with _serve(receiver) as url:
        sim_app = SimApp(
            appid="wx_sandbox",
            secret="sandbox_secret",
            callback_url=url,
            callback_token="cb_token",
            encoding_aes_key=AES_KEY if aes else None,
        )
        # With a msgid in the subscribe answer, so each receipt can be checked against it.
        config = SimConfig(apps=[sim_app], receipt_delay_s=0.0, subscribe_msgid=True)
        async with running_simulator(config) as sim:
            assert (await sim.sim.admin.verify_callback("wx_sandbox"))["ok"]
            async with WeChatClient(settings_for(sim.base_url), SystemClock()) as client:
                broker = TokenBroker(client, MemoryTokenCache(), SystemClock())
                sent = {
                    "o_alice": await broker.send(app, message("o_alice")),
                    "o_blocked_1": await broker.send(app, message("o_blocked_1")),
                    "o_sysfail_1": await broker.send(app, message("o_sysfail_1")),
                    "o_sub": await broker.send(app, message("o_sub", kind=MessageKind.SUBSCRIBE)),
                }
            await sim.wait_receipts()
            assert (await sim.stats())["receipts_sent"] == 4
    assert receiver.rejected == []
    got = {r.openid: r for r in receiver.receipts}
    assert {openid: r.msgid for openid, r in got.items()} == sent
    assert got["o_alice"].status == "success"
    assert got["o_blocked_1"].status == "failed:user block"
    assert got["o_sysfail_1"].status == "failed: system failed"
    assert got["o_sub"].status == "success"
    assert got["o_alice"].event_key == f"o_alice:{got['o_alice'].create_time}:{sent['o_alice']}"


async def test_wrong_callback_token_is_rejected() -> None:
    app = AppSettings(
        name="sandbox", appid="wx_sandbox", secret="sandbox_secret", callback_token="ours"
    )
    receiver = Receiver(app)
    async with _serve(receiver) as url:
        sim_app = SimApp(
            appid="wx_sandbox", secret="sandbox_secret", callback_url=url, callback_token="theirs"
        )
        config = SimConfig(apps=[sim_app], receipt_delay_s=0.0, receipt_tries=1)
        async with running_simulator(config) as sim:
            assert not (await sim.sim.admin.verify_callback("wx_sandbox"))["ok"]
            async with WeChatClient(settings_for(sim.base_url), SystemClock()) as client:
                broker = TokenBroker(client, MemoryTokenCache(), SystemClock())
                await broker.send(app, message())
            await sim.wait_receipts()
            # The 403 is an answer: WeChat does not push again (receipt_tries is not used).
            stats = await sim.stats()
            assert (stats["receipts_refused"], stats["receipts_failed"]) == (1, 0)
    assert receiver.receipts == []
    assert receiver.rejected == ["bad signature", "bad signature"]
