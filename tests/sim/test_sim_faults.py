"""Fault injection at start (SimConfig.faults) and at run time (/_sim/faults, SimHandle)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from support.sim import APPID, SECRET, TEMPLATE_PATH, assert_err, classic_token, send, token, tpl
from wxgate.clock import FakeClock
from wxgate.sim.config import Faults, SimApp, SimConfig
from wxgate.sim.testing import SimHandle, running_simulator


async def _status(http: aiohttp.ClientSession, url: str, body: object) -> int:
    async with http.post(url, json=body) as resp:
        await resp.read()
        return resp.status


async def test_latency_from_config(http: aiohttp.ClientSession) -> None:
    config = SimConfig(faults=Faults(latency_ms=150))
    async with running_simulator(config) as sim:
        tok = await token(http, sim.base_url)
        started = time.monotonic()
        assert (await send(http, sim.base_url, tok, tpl()))["errcode"] == 0
        assert time.monotonic() - started >= 0.14


async def test_latency_jitter_distributions(sim: SimHandle) -> None:
    for dist in ("uniform", "exponential", "normal"):
        await sim.set_faults(latency_ms=10, latency_jitter_ms=5, latency_dist=dist)
        compiled = sim.state.faults.glob
        draws = [compiled.latency_s() for _ in range(200)]
        assert all(d >= 0 for d in draws) and len(set(draws)) > 100
    await sim.set_faults(latency_dist="uniform")
    assert all(0.010 <= sim.state.faults.glob.latency_s() < 0.015 for _ in range(100))


async def test_error_rates(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    tok = await token(http, sim.base_url)
    await sim.set_faults(error_rates={"-1": 1.0})
    assert_err(await send(http, sim.base_url, tok, tpl(cmid="c1")), -1)
    await sim.set_faults(error_rates={"45011": 1.0})
    assert_err(await send(http, sim.base_url, tok, tpl(cmid="c1")), 45011)
    await sim.set_faults(error_rates={"-1": 0.5, "45011": 0.25})
    codes = [(await send(http, sim.base_url, tok, tpl(f"o{i}")))["errcode"] for i in range(200)]
    assert 60 < codes.count(-1) < 140 and 20 < codes.count(45011) < 80 and codes.count(0) > 20
    assert sim.state.delivered == codes.count(0)


async def test_token_error_rates(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    await sim.set_faults(token_error_rates={"-1": 1.0})
    assert_err(await classic_token(http, sim.base_url), -1)


async def test_http_5xx_rate(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    tok = await token(http, sim.base_url)
    await sim.set_faults(http_5xx_rate=1.0, http_5xx_status=504)
    url = f"{sim.base_url}{TEMPLATE_PATH}?access_token={tok}"
    assert await _status(http, url, tpl()) == 504
    assert not await sim.deliveries()


async def test_reset_rate_delivers_without_answer(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    tok = await token(http, sim.base_url)
    await sim.set_faults(reset_rate=1.0)
    with pytest.raises(aiohttp.ClientConnectionError):
        await send(http, sim.base_url, tok, tpl(cmid="c1"))
    assert len(await sim.deliveries()) == 1
    await sim.set_faults(clear=True)
    assert (await send(http, sim.base_url, tok, tpl(cmid="c1")))["msgid"] == sim.state.log.msgid(0)


async def test_stall_rate(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    tok = await token(http, sim.base_url)
    await sim.set_faults(stall_rate=1.0, stall_s=0.3)
    started = time.monotonic()
    assert (await send(http, sim.base_url, tok, tpl()))["errcode"] == 0
    assert time.monotonic() - started >= 0.28
    assert sim.state.stalls == 1


async def test_stalled_request_ends_at_shutdown(http: aiohttp.ClientSession) -> None:
    async with running_simulator(SimConfig(faults=Faults(stall_rate=1.0, stall_s=60))) as sim:
        tok = await token(http, sim.base_url)
        pending = asyncio.create_task(send(http, sim.base_url, tok, tpl()))
        while not sim.state.stalls:
            await asyncio.sleep(0.01)
        started = time.monotonic()
    assert time.monotonic() - started < 5
    with pytest.raises(aiohttp.ClientError):
        await pending


@pytest.mark.parametrize("mode", ["503", "reset"])
async def test_outage(
    sim: SimHandle, http: aiohttp.ClientSession, clock: FakeClock, mode: str
) -> None:
    tok = await token(http, sim.base_url)
    await sim.set_faults(outage_s=30, outage_mode=mode)
    url = f"{sim.base_url}{TEMPLATE_PATH}?access_token={tok}"
    if mode == "503":
        assert await _status(http, url, tpl()) == 503
        async with http.get(f"{sim.base_url}/cgi-bin/token") as resp:
            assert resp.status == 503  # token endpoints are down too
    else:
        with pytest.raises(aiohttp.ClientConnectionError):
            await _status(http, url, tpl())
    async with http.get(f"{sim.base_url}/_sim/stats") as resp:
        assert resp.status == 200  # the control plane stays up
    clock.advance(31)
    assert await _status(http, url, tpl()) == 200
    assert len(await sim.deliveries()) == 1


async def test_per_app_faults(http: aiohttp.ClientSession) -> None:
    apps = [SimApp(appid="wx_a", secret="sa"), SimApp(appid="wx_b", secret="sb")]
    async with running_simulator(SimConfig(apps=apps)) as sim:
        await sim.set_faults(app="wx_a", error_rates={"-1": 1.0})
        toks = {
            a: (await classic_token(http, sim.base_url, a, s))["access_token"]
            for a, s in (("wx_a", "sa"), ("wx_b", "sb"))
        }
        assert_err(await send(http, sim.base_url, toks["wx_a"], tpl()), -1)
        assert (await send(http, sim.base_url, toks["wx_b"], tpl()))["errcode"] == 0
        described = await sim.set_faults(app="wx_a", clear=True)
        assert described["apps"] == {}
        assert (await send(http, sim.base_url, toks["wx_a"], tpl()))["errcode"] == 0


async def test_faults_over_http(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    base = f"{sim.base_url}/_sim/faults"
    async with http.post(base, json={"app": APPID, "http_5xx_rate": 0.5, "outage_s": 10}) as r:
        assert r.status == 200
        body = await r.json()
    assert body["apps"][APPID]["http_5xx_rate"] == 0.5
    assert body["apps"][APPID]["outage_until"] is not None
    async with http.get(base) as r:
        assert (await r.json())["global"]["http_5xx_rate"] == 0.0
    for bad in ({"http_5xx_rate": "lots"}, {"no_such_knob": 1}, [1]):
        async with http.post(base, json=bad) as r:
            assert r.status == 400
    async with http.post(base, json={"app": APPID, "clear": True}) as r:
        assert (await r.json())["apps"] == {}


async def test_revoke_via_faults(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    tok = await token(http, sim.base_url)
    await sim.set_faults(revoke_tokens=True)
    assert_err(await send(http, sim.base_url, tok, tpl()), 40001)
    assert (await classic_token(http, sim.base_url, APPID, SECRET))["access_token"] != tok
