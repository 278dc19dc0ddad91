"""Scoped keys against the real app and SQLite store: every /v1 route checks its scope, keys
limited to apps get 403 for any other app (and see only their apps), and a key's rate limit
answers 429 with Retry-After. Time is a FakeClock, so the rate limit is exact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest

from support.api import KEY, NEWS, SHOP, ApiRig, make_settings, msg_body, running_gateway
from wxgate.api.app import create_app
from wxgate.api.auth import Scope
from wxgate.clock import FakeClock
from wxgate.metrics import Metrics
from wxgate.models import ErrorInfo
from wxgate.settings import KeySettings
from wxgate.store.sqlite import SQLiteStore

SCOPES = [s.value for s in Scope]
SHOP_KEY = "k-shop-only-1234"
LIMITED_KEY = "k-limited-5678"


def _keys() -> list[KeySettings]:
    keys = [KeySettings(name=f"only-{s}", key=f"k-only-{s}", scopes=[s]) for s in SCOPES]
    keys += [
        KeySettings(name=f"not-{s}", key=f"k-not-{s}", scopes=[o for o in SCOPES if o != s])
        for s in SCOPES
    ]
    keys.append(KeySettings(name="shop-only", key=SHOP_KEY, scopes=SCOPES, apps=["shop"]))
    keys.append(
        KeySettings(name="limited", key=LIMITED_KEY, scopes=["read"], rate_per_s=2, burst=3)
    )
    return keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[ApiRig]:
    settings = make_settings(apps=[SHOP, NEWS], keys=_keys())
    async with running_gateway(tmp_path / "wx.db", settings) as g:
        yield g


async def _call(rig: ApiRig, method: str, path: str, key: str) -> tuple[int, Any]:
    body = {} if method == "POST" else None
    resp = await rig.client.request(method, path, json=body, headers=auth(key))
    raw = await resp.read()
    return resp.status, msgspec.json.decode(raw) if raw else None


async def _scoped_routes(rig: ApiRig) -> list[tuple[str, str, str]]:
    """(method, path, scope) of every route the OpenAPI document marks with a scope; and every
    /v1 route the app serves must be one of them."""
    _, doc = await rig.get("/openapi.json")
    routes = [
        (method.upper(), path, op["x-wxgate-scope"])
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if "x-wxgate-scope" in op
    ]
    app: web.Application = rig.client.app
    served = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith("/v1") and r.method != "HEAD"
    }
    assert served and served == {(m, p) for m, p, _ in routes}
    return routes


async def test_every_v1_route_checks_its_scope(rig: ApiRig) -> None:
    routes = await _scoped_routes(rig)
    assert {s for _, _, s in routes} == set(SCOPES)
    for method, template, scope in routes:
        path = template.replace("{id}", "nope").replace("{app}", "shop")
        status, body = await _call(rig, method, path, f"k-not-{scope}")
        assert status == 403 and body["error"] == "forbidden", (method, path, body)
        assert scope in body["message"]
        status, body = await _call(rig, method, path, f"k-only-{scope}")
        assert status not in (401, 403), (method, path, status, body)
        status, _ = await _call(rig, method, path, "no-such-key")
        assert status == 401
    assert not any((await rig.store.stats()).by_status.values())


async def test_a_send_only_key(rig: ApiRig) -> None:
    status, _ = await rig.post("/v1/messages", msg_body(app="shop"), headers=auth("k-only-send"))
    assert status == 202
    status, _ = await rig.get("/v1/stats", headers=auth("k-only-send"))
    assert status == 403


async def _dead_news_message(rig: ApiRig) -> str:
    _, body = await rig.post("/v1/messages", msg_body(app="news"))  # the all-scope key
    for m in await rig.store.lease(10, 30.0, rig.clock.now()):
        await rig.store.dead(m.id, m.lease_token, ErrorInfo(40003, "invalid openid"))
    return str(body["id"])


async def test_a_key_limited_to_one_app(rig: ApiRig) -> None:
    h = auth(SHOP_KEY)
    news_id = await _dead_news_message(rig)
    status, news_batch = await rig.post(
        "/v1/batches", {"app": "news", "template_id": "t", "recipients": [{"touser": "o_1"}]}
    )
    assert status == 202

    # Sends, reads and token calls for another app: 403 naming the app.
    for method, path, body in (
        ("POST", "/v1/messages", msg_body(app="news")),
        (
            "POST",
            "/v1/batches",
            {"app": "news", "template_id": "t", "recipients": [{"touser": "x"}]},
        ),
        ("GET", f"/v1/messages/{news_id}", None),
        ("DELETE", f"/v1/messages/{news_id}", None),
        ("GET", f"/v1/batches/{news_batch['id']}", None),
        ("POST", f"/v1/batches/{news_batch['id']}/cancel", None),
        ("GET", "/v1/dead-letters?app=news", None),
        ("POST", "/v1/dead-letters/requeue", {"ids": [news_id]}),
        ("POST", "/v1/dead-letters/requeue", {"app": "news"}),
        ("GET", "/v1/apps/news/access-token", None),
        ("POST", "/v1/apps/news/access-token/invalidate", {"access_token": "x"}),
    ):
        resp = await rig.client.request(method, path, json=body, headers=h)
        answer = await resp.json()
        assert resp.status == 403 and "news" in answer["message"], (method, path, answer)

    # Its own app works; the app field may be left out only when one app is configured.
    status, mine = await rig.post("/v1/messages", msg_body(app="shop"), headers=h)
    assert status == 202
    status, _ = await rig.get(f"/v1/messages/{mine['id']}", headers=h)
    assert status == 200

    # Lists and stats show its apps only.
    status, page = await rig.get("/v1/dead-letters", headers=h)
    assert status == 200 and page["items"] == []
    status, batches = await rig.get("/v1/batches", headers=h)
    assert status == 200 and batches["items"] == []
    status, stats = await rig.get("/v1/stats", headers=h)
    assert status == 200 and set(stats["by_app"]) == {"shop"}
    assert stats["by_status"] == stats["by_app"]["shop"] and stats["queue_depth"] == 1
    _, everything = await rig.get("/v1/stats")
    assert set(everything["by_app"]) == {"shop", "news"}

    # The news message is untouched.
    assert (await rig.store.get(news_id)).status.value == "dead"


async def test_rate_limit_per_key_answers_429_with_retry_after(tmp_path: Path) -> None:
    settings = make_settings(apps=[SHOP, NEWS], keys=_keys())
    metrics = Metrics()
    clock = FakeClock()
    store = SQLiteStore(str(tmp_path / "db"), clock, retention_s=3600)
    await store.open()
    app = create_app(settings, store, clock, metrics=metrics)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            h = auth(LIMITED_KEY)
            statuses = [(await client.get("/v1/stats", headers=h)).status for _ in range(3)]
            assert statuses == [200, 200, 200]  # the burst
            resp = await client.get("/v1/stats", headers=h)
            assert resp.status == 429 and resp.headers["Retry-After"] == "1"
            body = await resp.json()
            assert body["error"] == "rate_limited" and "limited" in body["message"]
            assert LIMITED_KEY not in body["message"]
            # Other keys are not held back by this one.
            assert (await client.get("/v1/stats", headers=auth(KEY))).status == 200
            clock.advance(0.5)  # 2/s: one more request's worth
            assert (await client.get("/v1/stats", headers=h)).status == 200
            assert (await client.get("/v1/stats", headers=h)).status == 429
            clock.advance(10)  # an idle spell refills the burst, no more
            statuses = [(await client.get("/v1/stats", headers=h)).status for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
    finally:
        await store.close()
    text = generate_latest(metrics.registry).decode()
    assert 'wxgate_api_key_limited_total{key="limited"} 3.0' in text
    assert LIMITED_KEY not in text
