"""Health, readiness, stats, OpenAPI, metrics hook, auth variants, limits and failures."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from support.api import AUTH, KEY, NEWS, SHOP, ApiRig, make_settings, msg_body, running_gateway
from wxgate.api.app import create_app
from wxgate.api.auth import ApiKey, KeyRing, Scope
from wxgate.api.ops import METRICS_HANDLER
from wxgate.clock import FakeClock
from wxgate.models import AppPause
from wxgate.settings import KeySettings
from wxgate.store.sqlite import SQLiteStore


async def test_healthz_and_readyz_need_no_key(rig: ApiRig) -> None:
    resp = await rig.client.get("/healthz")
    assert resp.status == 200 and await resp.json() == {"status": "ok"}
    resp = await rig.client.get("/readyz")
    assert resp.status == 200 and await resp.json() == {"status": "ready"}


async def test_store_down_is_503_everywhere(rig: ApiRig) -> None:
    await rig.store.close()  # honest outage: the real store, closed
    resp = await rig.client.get("/readyz")
    assert resp.status == 503 and resp.headers["Retry-After"]
    resp = await rig.client.get("/healthz")
    assert resp.status == 200
    for method, path, body in (
        ("POST", "/v1/messages", msg_body()),
        ("POST", "/v1/batches", {"template_id": "t", "recipients": [{"touser": "a"}]}),
        ("GET", "/v1/messages/x", None),
        ("GET", "/v1/stats", None),
        ("GET", "/v1/dead-letters", None),
    ):
        resp = await rig.client.request(method, path, json=body, headers=AUTH)
        assert resp.status == 503, path
        assert (await resp.json())["error"] == "store_unavailable"
        assert resp.headers["Retry-After"] == "5"


async def test_stats(tmp_path: Path) -> None:
    async def extra() -> dict[str, Any]:
        return {"apps": {"shop": {"breaker": "closed", "paused": False, "in_flight": 0}}}

    async with running_gateway(tmp_path / "db", stats_extra=extra) as rig:
        await rig.post("/v1/messages", msg_body())
        await rig.post("/v1/messages", msg_body(send_at=rig.clock.now() + 60))
        until = rig.clock.now() + 300
        await rig.store.set_pause(AppPause("shop", until, "quota", 45009))
        status, stats = await rig.get("/v1/stats")
    assert status == 200
    assert {k: v for k, v in stats["by_status"].items() if v} == {"queued": 1, "scheduled": 1}
    assert stats["queue_depth"] == 2
    assert stats["pauses"] == [
        {"app": "shop", "until": until, "reason": "quota", "errcode": 45009, "by": None}
    ]  # by: who paused it by hand (None: the gateway itself)
    assert stats["delivery"]["apps"]["shop"]["breaker"] == "closed"


async def test_queue_depth_limit_is_429(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "db", make_settings(max_queue_depth=2)) as rig:
        assert (await rig.post("/v1/messages", msg_body()))[0] == 202
        assert (await rig.post("/v1/messages", msg_body()))[0] == 202
        before = await rig.snapshot()
        resp = await rig.client.post("/v1/messages", json=msg_body(), headers=AUTH)
        assert resp.status == 429 and resp.headers["Retry-After"] == "5"
        assert (await resp.json())["error"] == "queue_full"
        batch = {"template_id": "t", "recipients": [{"touser": "a"}]}
        assert (await rig.post("/v1/batches", batch))[0] == 429
        assert await rig.snapshot() == before
        # Once workers drain the queue (and the cached depth is re-read), it accepts again.
        for m in await rig.store.lease(10, 30.0, rig.clock.now()):
            await rig.store.expire(m.id, m.lease_token)
        rig.clock.advance(2)
        assert (await rig.post("/v1/messages", msg_body()))[0] == 202


async def test_sha256_keys(tmp_path: Path) -> None:
    hashed = "sha256:" + hashlib.sha256(b"hashed-secret").hexdigest()
    settings = make_settings(api_keys=[hashed, "plain-secret"])
    async with running_gateway(tmp_path / "db", settings) as rig:
        for key, status in (
            ("hashed-secret", 200),
            ("plain-secret", 200),
            (hashed, 401),
            (KEY, 401),
        ):
            resp = await rig.client.get("/v1/stats", headers={"Authorization": f"Bearer {key}"})
            assert resp.status == status, key


def test_keyring_repr_hides_secrets() -> None:
    ring = KeyRing([ApiKey("ops", "s3cret", {Scope.READ})])
    assert "s3cret" not in repr(ring) and "s3cret" not in repr(ring._keys[0])
    assert ring.authenticate("Bearer s3cret") is ring._keys[0]
    assert ring.authenticate("bearer s3cret") is ring._keys[0]
    assert ring.authenticate("Bearer s3cre") is None


async def test_scopes_are_checked_per_route(tmp_path: Path) -> None:
    """Keys carry scopes; a read-only key may read but not send."""
    clock = FakeClock()
    store = SQLiteStore(str(tmp_path / "db"), clock, retention_s=3600)
    await store.open()
    reader = KeySettings(name="reader", key=KEY, scopes=["read"])
    app = create_app(make_settings(api_keys=[], keys=[reader]), store, clock)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            assert (await client.get("/v1/stats", headers=AUTH)).status == 200
            resp = await client.post("/v1/messages", json=msg_body(), headers=AUTH)
            assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
            resp = await client.post("/v1/dead-letters/requeue", json={"ids": []}, headers=AUTH)
            assert resp.status == 403
            resp = await client.get("/v1/apps/shop/access-token", headers=AUTH)
            assert resp.status == 403
        assert not any((await store.stats()).by_status.values())
    finally:
        await store.close()


async def test_unexpected_error_is_500_without_details(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> dict[str, Any]:
        raise RuntimeError("secret=hunter2 went wrong")

    async with running_gateway(tmp_path / "db", stats_extra=broken) as rig:
        with caplog.at_level(logging.ERROR, logger="wxgate.api"):
            status, body = await rig.get("/v1/stats")
    assert status == 500 and body["error"] == "internal"
    assert "hunter2" not in body["message"] and "Traceback" not in body["message"]
    error_id = body["message"].rsplit(" ", 1)[-1]
    assert any(error_id in r.getMessage() for r in caplog.records)


async def test_metrics_hook(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(str(tmp_path / "db"), clock, retention_s=3600)
    await store.open()

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="wxgate_up 1\n")

    try:
        plain = create_app(make_settings(), store, clock)
        async with TestClient(TestServer(plain, host="127.0.0.1")) as client:
            assert (await client.get("/metrics")).status == 404
        hooked = create_app(make_settings(), store, clock)
        hooked[METRICS_HANDLER] = metrics
        async with TestClient(TestServer(hooked, host="127.0.0.1")) as client:
            resp = await client.get("/metrics")
            assert resp.status == 200 and await resp.text() == "wxgate_up 1\n"
    finally:
        await store.close()


async def test_callback_needs_a_token(tmp_path: Path) -> None:
    no_token = msgspec.structs.replace(NEWS, callback_token="")
    async with running_gateway(tmp_path / "db", make_settings([SHOP, no_token])) as rig:
        resp = await rig.client.get("/wechat/callback/news", params={"echostr": "x"})
        assert resp.status == 404
