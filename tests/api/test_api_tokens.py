"""The access-token service against the real TokenBroker, WeChatClient and simulator."""

from __future__ import annotations

from pathlib import Path

from support.api import AUTH, KEY, SHOP, ApiRig, running_gateway
from wxgate.clock import SystemClock
from wxgate.sdk import AsyncGatewayClient
from wxgate.settings import WeChatSettings
from wxgate.sim.config import SimApp, SimConfig
from wxgate.sim.testing import running_simulator
from wxgate.store.sqlite import SQLiteStore
from wxgate.wechat.client import WeChatClient
from wxgate.wechat.tokens import TokenBroker


async def test_token_service(tmp_path: Path) -> None:
    config = SimConfig(apps=[SimApp(appid=SHOP.appid, secret=SHOP.secret)])
    async with running_simulator(config) as sim:
        clock = SystemClock()
        client = WeChatClient(WeChatSettings(base_url=sim.base_url), clock)
        cache = SQLiteStore(str(tmp_path / "tokens.db"), clock)
        await cache.open()
        broker = TokenBroker(client, cache, clock)
        try:
            async with client, running_gateway(tmp_path / "db", broker=broker) as rig:
                resp = await rig.client.get("/v1/apps/shop/access-token", headers=AUTH)
                assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
                first = await resp.json()
                assert first["access_token"] and first["expires_at"] > clock.now()
                _, again = await rig.get("/v1/apps/shop/access-token")
                assert again == first and broker.fetches[SHOP.appid] == 1

                # A stale report about some other token changes nothing...
                path = "/v1/apps/shop/access-token/invalidate"
                status, body = await rig.post(path, {"access_token": "not-the-token"})
                assert status == 200 and body == {"app": "shop", "status": "stale"}
                await rig.get("/v1/apps/shop/access-token")
                assert broker.fetches[SHOP.appid] == 1
                # ...the current one is dropped and fetched anew.
                await rig.post(path, {"access_token": first["access_token"]})
                status, _ = await rig.get("/v1/apps/shop/access-token")
                assert status == 200 and broker.fetches[SHOP.appid] == 2

                async with AsyncGatewayClient(str(rig.client.make_url("/")), KEY) as api:
                    token = await api.access_token("shop")
                    assert "access_token='***'" in repr(token)
                    await api.invalidate_access_token("shop", token.access_token)
                    assert (await api.access_token("shop")).access_token
                assert broker.fetches[SHOP.appid] == 3

                status, body = await rig.get("/v1/apps/nope/access-token")
                assert status == 404 and body["field"] == "app"
                status, body = await rig.post(path, {"token": "x"})
                assert status == 400 and body["field"] == "token"
        finally:
            await cache.close()


async def test_no_broker_is_503(rig: ApiRig) -> None:
    status, body = await rig.get("/v1/apps/shop/access-token")
    assert status == 503 and body["error"] == "token_service_unavailable"
