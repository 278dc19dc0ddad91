"""GET /v1/messages: find by recipient, status, app, batch and time; cursor pages; a key
limited to apps finds only its apps'; bad parameters are 400s naming the parameter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from support.api import KEY, NEWS, SHOP, ApiRig, make_settings, msg_body, running_gateway
from wxgate.api.auth import Scope
from wxgate.models import ErrorInfo
from wxgate.settings import KeySettings

SHOP_KEY = "k-find-shop-1234"
SEND_KEY = "k-find-send-1234"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[ApiRig]:
    keys = [
        KeySettings(name="shop", key=SHOP_KEY, scopes=[s.value for s in Scope], apps=["shop"]),
        KeySettings(name="send", key=SEND_KEY, scopes=["send"]),
    ]
    settings = make_settings(apps=[SHOP, NEWS], keys=keys, api_keys=[KEY])
    async with running_gateway(tmp_path / "wx.db", settings) as g:
        yield g


async def _send(rig: ApiRig, **kw: Any) -> str:
    kw.setdefault("app", "shop")
    status, body = await rig.post("/v1/messages", msg_body(**kw))
    assert status == 202, body
    rig.clock.advance(1)
    return str(body["id"])


async def _ids(rig: ApiRig, query: str, **kw: Any) -> list[str]:
    status, page = await rig.get(f"/v1/messages?{query}", **kw)
    assert status == 200, page
    return [m["id"] for m in page["items"]]


async def test_find_by_each_filter_newest_first(rig: ApiRig) -> None:
    t0 = rig.clock.now()
    alice = [await _send(rig, touser="o_alice") for _ in range(3)]
    bob_news = await _send(rig, touser="o_bob", app="news")
    for m in await rig.store.lease(10, 30.0, rig.clock.now()):
        if m.id == bob_news:
            assert await rig.store.dead(m.id, m.lease_token, ErrorInfo(45009, "quota"))
        else:
            assert await rig.store.retry(m.id, m.lease_token, rig.clock.now(), None, False)

    assert await _ids(rig, "touser=o_alice") == alice[::-1]
    assert await _ids(rig, "app=news") == [bob_news]
    assert await _ids(rig, "status=dead") == [bob_news]
    assert await _ids(rig, f"since={t0 + 1}&until={t0 + 3}") == [alice[2], alice[1]]
    _, page = await rig.get("/v1/messages?touser=o_bob")
    item = page["items"][0]
    assert (item["status"], item["last_errcode"], item["attempts"]) == ("dead", 45009, 1)


async def test_batch_filter_and_cursor_pages(rig: ApiRig) -> None:
    status, batch = await rig.post(
        "/v1/batches",
        {"app": "shop", "template_id": "t", "recipients": [{"touser": f"o_{k}"} for k in range(5)]},
    )
    assert status == 202, batch
    await _send(rig)
    seen: list[str] = []
    status, page = await rig.get(f"/v1/messages?batch={batch['id']}&limit=2")
    assert status == 200 and len(page["items"]) == 2 and page["next_cursor"]
    seen += [m["id"] for m in page["items"]]
    while page["next_cursor"]:
        _, page = await rig.get(
            f"/v1/messages?batch={batch['id']}&limit=2&cursor={page['next_cursor']}"
        )
        seen += [m["id"] for m in page["items"]]
    assert len(seen) == len(set(seen)) == 5
    assert all(m["batch_id"] == batch["id"] for m in page["items"])


async def test_a_key_limited_to_an_app_finds_only_its_own(rig: ApiRig) -> None:
    shop = await _send(rig, touser="o_same")
    await _send(rig, touser="o_same", app="news")
    h = {"Authorization": f"Bearer {SHOP_KEY}"}
    assert await _ids(rig, "touser=o_same", headers=h) == [shop]  # its one app, implied
    status, body = await rig.get("/v1/messages?app=news", headers=h)
    assert status == 403 and "news" in body["message"]
    status, body = await rig.get("/v1/messages", headers={"Authorization": f"Bearer {SEND_KEY}"})
    assert status == 403  # the read scope


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=lost", "status"),
        ("app=nope", "app"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("since=yesterday", "since"),
        ("until=nan", "until"),
        ("since=1e308", "since"),
        ("status=", "status"),
        ("cursor=garbage", "cursor"),
        ("touser=" + "o" * 300, "touser"),
    ],
)
async def test_bad_parameters_are_400_naming_them(rig: ApiRig, query: str, field: str) -> None:
    status, body = await rig.get(f"/v1/messages?{query}")
    assert status == 400, body
    assert body["field"] == field, body


async def test_until_not_after_since_is_a_valid_query_that_finds_nothing(rig: ApiRig) -> None:
    # since <= created_at < until: each bound is valid on its own, so the pair is not a 400.
    msg_id = await _send(rig)
    status, page = await rig.get("/v1/messages?since=20&until=10")
    assert (status, page["items"]) == (200, []), page
    status, page = await rig.get("/v1/messages?since=0")
    assert status == 200 and [m["id"] for m in page["items"]] == [msg_id], page
