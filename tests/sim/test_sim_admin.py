"""/_sim endpoints, run-time apps, TLS with the generated CA, and the CLI."""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from support.sim import APPID, classic_token, send, token, tpl
from wxgate.sim.cli import build_config
from wxgate.sim.config import SimApp, SimConfig, config_from_dict, load_config
from wxgate.sim.testing import SimHandle, running_simulator


async def _json(http: aiohttp.ClientSession, method: str, url: str, json: object = None) -> Any:
    async with http.request(method, url, json=json) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def test_deliveries_filters(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    tok = await token(http, sim.base_url)
    for openid, cmid in (("oA", "1"), ("oA", "2"), ("oB", "3")):
        await send(http, sim.base_url, tok, tpl(openid, cmid=cmid))
    base = f"{sim.base_url}/_sim/deliveries"
    assert len(await _json(http, "GET", base)) == 3
    rows = await _json(http, "GET", f"{base}?openid=oA")
    assert [r["client_msg_id"] for r in rows] == ["1", "2"]
    assert len(await _json(http, "GET", f"{base}?client_msg_id=3&app={APPID}")) == 1
    assert await _json(http, "GET", f"{base}?app=wx_other") == []
    assert await _json(http, "GET", f"{base}?count_only=1&openid=oA") == {"count": 2}
    rows = await _json(http, "GET", f"{base}?offset=1&limit=1")
    assert [r["openid"] for r in rows] == ["oA"]
    assert await _json(http, "GET", f"{base}?duplicates=1") == []


async def test_stats_and_reset(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    tok = await token(http, sim.base_url)
    await send(http, sim.base_url, tok, tpl(cmid="x"))
    await send(http, sim.base_url, tok, tpl(cmid="x"))
    await send(http, sim.base_url, tok, tpl("o_invalid"))
    stats = await _json(http, "GET", f"{sim.base_url}/_sim/stats")
    assert isinstance(stats, dict)
    assert stats["delivered"] == 1 and stats["deduplicated"] == 1
    assert stats["requests"] == 4 and stats["errors"] == {"40003": 1}
    assert stats["token_fetches"] == {APPID: 1}
    for key in ("receipts_sent", "receipts_failed", "receipts_pending", "accepted"):
        assert key in stats
    await _json(http, "POST", f"{sim.base_url}/_sim/reset")
    assert (await sim.stats())["delivered"] == 0 and not await sim.deliveries()
    assert (await send(http, sim.base_url, tok, tpl(cmid="x")))["errcode"] == 0  # token kept
    await _json(http, "POST", f"{sim.base_url}/_sim/reset?tokens=1")
    assert (await send(http, sim.base_url, tok, tpl()))["errcode"] == 40001


async def test_add_app_at_run_time(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    new = {"appid": "wx_new", "secret": "s3cret", "daily_quota": 5}
    assert await _json(http, "POST", f"{sim.base_url}/_sim/apps", json=new) == {
        "ok": True,
        "appid": "wx_new",
    }
    answer = await classic_token(http, sim.base_url, "wx_new", "s3cret")
    assert (await send(http, sim.base_url, answer["access_token"], tpl()))["errcode"] == 0
    apps = await _json(http, "GET", f"{sim.base_url}/_sim/apps")
    assert {a["appid"] for a in apps} == {APPID, "wx_new"}
    assert "s3cret" not in str(apps)
    async with http.post(f"{sim.base_url}/_sim/apps", json={"appid": "x"}) as resp:
        assert resp.status == 400
    bad_key = {"appid": "wx_k", "secret": "s", "encoding_aes_key": "short"}
    async with http.post(f"{sim.base_url}/_sim/apps", json=bad_key) as resp:
        assert resp.status == 400
    await sim.add_app(SimApp(appid="wx_direct", secret="d"))
    assert "wx_direct" in sim.state.apps


async def test_tls_with_generated_ca(http: aiohttp.ClientSession) -> None:
    async with running_simulator(SimConfig(tls=True)) as sim:
        assert sim.base_url.startswith("https://127.0.0.1:")
        assert sim.ca_file is not None and sim.ca_file.exists()
        ctx = ssl.create_default_context(cafile=str(sim.ca_file))
        connector = aiohttp.TCPConnector(ssl=ctx)
        async with aiohttp.ClientSession(connector=connector) as tls_http:
            tok = await token(tls_http, sim.base_url)
            assert (await send(tls_http, sim.base_url, tok, tpl()))["errcode"] == 0
            local = sim.base_url.replace("127.0.0.1", "localhost")
            assert (await classic_token(tls_http, local))["access_token"]
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await token(http, sim.base_url)  # the system store does not know our CA
        ca_file = sim.ca_file
    assert not ca_file.exists()  # the temp dir went away with the simulator


def test_build_config_file_then_flags(tmp_path: Path) -> None:
    toml = tmp_path / "sim.toml"
    toml.write_text(
        'port = 9200\nslow_s = 2.0\n[[apps]]\nappid = "wx_f"\nsecret = "sf"\ndaily_quota = 7\n'
        '[faults]\nlatency_ms = 20\nerror_rates = { "-1" = 0.1 }\n'
    )
    cfg = build_config(
        config_file=toml,
        host=None,
        port=None,
        apps=[],
        callback_url="http://127.0.0.1:1/cb",
        callback_token="t",
        aes_key=None,
        original_id=None,
        latency_ms=None,
        tls=False,
    )
    assert cfg.port == 9200 and cfg.slow_s == 2.0
    assert cfg.apps[0].appid == "wx_f" and cfg.apps[0].daily_quota == 7
    assert cfg.apps[0].callback_url == "http://127.0.0.1:1/cb"
    assert cfg.faults.latency_ms == 20 and cfg.faults.error_rates == {"-1": 0.1}
    cfg = build_config(
        config_file=None,
        host="0.0.0.0",
        port=1,
        apps=["wx_1:s1", "wx_2:s2"],
        callback_url=None,
        callback_token=None,
        aes_key=None,
        original_id="gh_x",
        latency_ms=50,
        tls=True,
    )
    assert [a.appid for a in cfg.apps] == ["wx_1", "wx_2"]
    assert cfg.apps[1].original_id == "gh_x" and cfg.faults.latency_ms == 50 and cfg.tls


def test_toml_takes_cli_spellings(tmp_path: Path) -> None:
    toml = tmp_path / "sim.toml"
    toml.write_text(
        'app = ["wx_1:s1", "wx_2:s2"]\ncallback_url = "http://127.0.0.1:1/cb"\n'
        'callback_token = "tok"\nlatency_ms = 5\n'
    )
    cfg = load_config(toml)
    assert [(a.appid, a.secret) for a in cfg.apps] == [("wx_1", "s1"), ("wx_2", "s2")]
    assert {a.callback_token for a in cfg.apps} == {"tok"}
    assert cfg.faults.latency_ms == 5
    with pytest.raises(ValueError):
        config_from_dict({"app": "no-secret"})
    with pytest.raises(msgspec.ValidationError):
        config_from_dict({"slow_s": "soon"})


async def test_cli_serves_until_sigterm(http: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wxgate.sim",
        "--port",
        "0",
        "--app",
        "wx_cli:cli_secret",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert "wx_cli" in line and "cli_secret" not in line
        base = line.split("listening on ")[1].split()[0]
        answer = await classic_token(http, base, "wx_cli", "cli_secret")
        assert "access_token" in answer
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
