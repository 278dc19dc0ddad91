"""What the dashboard needs from the gateway, without a browser: its files served without a
key under a strict CSP, and the /v1/stats fields it draws (finished_by_app, top_errcodes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from wxgate.api.app import create_app
from wxgate.clock import FakeClock
from wxgate.metrics import Metrics
from wxgate.models import ErrorInfo, Message, SendResult, new_id
from wxgate.settings import AppSettings, ServerSettings, Settings
from wxgate.store.sqlite import SQLiteStore

KEY = "browser-routes-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SHOP = AppSettings(name="shop", appid="wx_shop", secret="s", callback_token="t")
FILES = ("dashboard.js", "dashboard.css")


class Running:
    def __init__(
        self, client: TestClient[web.Request, web.Application], store: SQLiteStore
    ) -> None:
        self.client, self.store = client, store


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Running]:
    clock = FakeClock()
    settings = Settings(server=ServerSettings(api_keys=[KEY]), apps=[SHOP])
    store = SQLiteStore(str(tmp_path / "db"), clock, retention_s=3600)
    await store.open()
    metrics = Metrics()
    metrics.on_failed("shop", "drop", 40003)
    metrics.on_failed("shop", "drop", 40003)
    metrics.on_failed("shop", "retry", -1)
    app = create_app(settings, store, clock, metrics=metrics)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            yield Running(client, store)
    finally:
        await store.close()


async def test_page_and_files_need_no_key(gw: Running) -> None:
    resp = await gw.client.get("/dashboard")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    for name in FILES:
        assert f'"dashboard/{name}"' in page
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "http" not in page.replace("http-equiv", "")  # no CDN, no external font

    for name, kind in zip(FILES, ("text/javascript", "text/css"), strict=True):
        resp = await gw.client.get(f"/dashboard/{name}")
        assert resp.status == 200 and resp.content_type == kind, name
        etag = resp.headers["ETag"]
        again = await gw.client.get(f"/dashboard/{name}", headers={"If-None-Match": etag})
        assert again.status == 304


async def test_script_writes_no_html(gw: Running) -> None:
    script = await (await gw.client.get("/dashboard/dashboard.js")).text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


async def test_unknown_file_slash_and_the_api_still_locked(gw: Running) -> None:
    resp = await gw.client.get("/dashboard/../pyproject.toml")
    assert resp.status == 404
    resp = await gw.client.get("/dashboard/secret.py")
    assert resp.status == 404
    resp = await gw.client.get("/dashboard/", allow_redirects=False)
    assert resp.status == 301 and resp.headers["Location"] == "../dashboard"
    resp = await gw.client.get("/v1/stats")
    assert resp.status == 401


async def test_stats_carry_finished_counts_and_errcodes(gw: Running) -> None:
    now = FakeClock().now()
    msgs = [
        Message(
            id=new_id(),
            app="shop",
            touser="o",
            template_id="t",
            data={},
            created_at=now,
            not_before=now,
        )
        for _ in range(3)
    ]
    await gw.store.enqueue(msgs)
    sent, dead, _in_flight = await gw.store.lease(3, 30.0, now)
    await gw.store.ack(sent.id, sent.lease_token, SendResult(1, now))
    await gw.store.dead(dead.id, dead.lease_token, ErrorInfo(40003, "invalid openid"))
    resp = await gw.client.get("/v1/stats", headers=AUTH)
    stats = await resp.json()
    assert stats["finished_by_app"] == {"shop": {"sent": 1, "dead": 1}}
    assert stats["top_errcodes"] == [
        {"errcode": 40003, "count": 2, "meaning": "invalid openid", "disposition": "drop"},
        {"errcode": -1, "count": 1, "meaning": "system busy", "disposition": "retry"},
    ]
