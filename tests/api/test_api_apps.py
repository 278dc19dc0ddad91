"""GET /v1/apps, POST /v1/apps/{app}/pause and /resume through the real app and SQLite store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from support.api import AUTH, NEWS, SHOP, ApiRig, make_settings, msg_body, running_gateway
from wxgate.models import AppPause
from wxgate.policy.ratelimit import shanghai_day
from wxgate.settings import KeySettings, Settings

OPS_KEY = "k-ops-0123456789"
READER_KEY = "k-reader-0123456789"


def _settings() -> Settings:
    keys = [
        KeySettings(name="ops", key=OPS_KEY, scopes=["send", "read", "admin"]),
        KeySettings(name="reader", key=READER_KEY, scopes=["read"]),
    ]
    return make_settings([SHOP, NEWS], keys=keys)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _apps(rig: ApiRig, key: str = OPS_KEY) -> dict[str, dict[str, Any]]:
    status, body = await rig.get("/v1/apps", headers=_auth(key))
    assert status == 200
    return {a["name"]: a for a in body["apps"]}


async def test_list_shows_every_app_running_with_rate_and_quota(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "wx.db", _settings()) as rig:
        await rig.store.incr_quota("shop", shanghai_day(rig.clock.now()), 7)
        apps = await _apps(rig)
        assert sorted(apps) == ["news", "shop"]
        shop = apps["shop"]
        assert shop["state"] == "running" and shop["pause"] is None
        assert shop["appid"] == "wx_shop" and "secret" not in str(shop)
        assert shop["rate_per_s"] == shop["max_rate_per_s"] == SHOP.rate_per_s
        assert shop["quota"]["template"] == {"used": 7, "limit": SHOP.quota_for("template")}
        assert shop["quota"]["subscribe"]["used"] == 0


async def test_pause_then_resume_by_hand_is_shared_logged_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wxgate.api")
    async with running_gateway(tmp_path / "wx.db", _settings()) as rig:
        until = rig.clock.now() + 3600
        status, view = await rig.post(
            "/v1/apps/shop/pause",
            {"reason": "template review", "until": until},
            headers=_auth(OPS_KEY),
        )
        assert status == 200
        assert view["state"] == "paused"
        assert view["pause"] == {
            "reason": "template review",
            "errcode": None,
            "meaning": None,
            "until": until,
            "by": "ops",
        }
        # In the store, where every process reads it, and not replaced by an automatic pause.
        [stored] = await rig.store.get_pauses()
        assert (stored.app, stored.by, stored.until) == ("shop", "ops", until)
        await rig.store.set_pause(AppPause("shop", rig.clock.now() + 60, "config", 48001))
        assert (await _apps(rig, READER_KEY))["shop"]["pause"]["by"] == "ops"
        assert "app shop paused by ops: template review" in caplog.text

        status, view = await rig.post("/v1/apps/shop/resume", None, headers=_auth(OPS_KEY))
        assert status == 200 and view["state"] == "running" and view["pause"] is None
        assert await rig.store.get_pauses() == []
        assert "app shop resumed by ops: ended the pause 'template review'" in caplog.text
        assert (await _apps(rig))["news"]["state"] == "running"


async def test_pause_without_until_lasts_until_resumed(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "wx.db", _settings()) as rig:
        status, view = await rig.post(
            "/v1/apps/news/pause", {"reason": "campaign on hold"}, headers=_auth(OPS_KEY)
        )
        assert status == 200 and view["pause"]["until"] is None
        rig.clock.advance(30 * 86400)
        assert (await _apps(rig))["news"]["state"] == "paused"


async def test_resume_ends_an_automatic_quota_pause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wxgate.api")
    async with running_gateway(tmp_path / "wx.db", _settings()) as rig:
        auto = AppPause("shop", rig.clock.now() + 80000, "daily quota reached", 45009)
        await rig.store.set_pause(auto)
        shop = (await _apps(rig))["shop"]
        assert shop["state"] == "paused"
        assert shop["pause"]["errcode"] == 45009 and shop["pause"]["by"] is None
        assert shop["pause"]["meaning"]
        status, _ = await rig.post("/v1/apps/shop/resume", None, headers=_auth(OPS_KEY))
        assert status == 200 and await rig.store.get_pauses() == []
        assert "errcode 45009 (set by the gateway)" in caplog.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "x" * 201}, "reason"),
        ({"reason": "ok", "until": 1.0}, "until"),
        ({"reason": "ok", "until": "tomorrow"}, "until"),
        ({"reason": "ok", "extra": 1}, "extra"),
        ({}, "reason"),
    ],
)
async def test_bad_pause_bodies_are_400_naming_the_field(
    tmp_path: Path, body: dict[str, object], field: str
) -> None:
    async with running_gateway(tmp_path / "wx.db", _settings()) as rig:
        status, err = await rig.post("/v1/apps/shop/pause", body, headers=_auth(OPS_KEY))
        assert status == 400, err
        assert field in (err.get("field") or "") + err["message"]
        assert await rig.store.get_pauses() == []


async def test_unknown_app_is_404_and_scopes_are_enforced(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "wx.db", _settings()) as rig:
        status, err = await rig.post("/v1/apps/nope/pause", {"reason": "x"}, headers=_auth(OPS_KEY))
        assert status == 404 and "'nope'" in err["message"] and "shop" in err["message"]
        status, err = await rig.post(
            "/v1/apps/shop/pause", {"reason": "x"}, headers=_auth(READER_KEY)
        )
        assert status == 403 and "admin" in err["message"]
        status, _ = await rig.post("/v1/apps/shop/resume", None, headers=_auth(READER_KEY))
        assert status == 403
        resp = await rig.client.get("/v1/apps")  # no Authorization header at all
        assert resp.status == 401


async def test_plain_api_key_is_named_in_the_pause(rig: ApiRig) -> None:
    status, view = await rig.post("/v1/apps/shop/pause", {"reason": "drill"}, headers=AUTH)
    assert status == 200 and view["pause"]["by"] == "api_keys[0]"


async def test_a_message_held_by_a_config_pause_says_so(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "wx.db", _settings()) as rig:
        body = msg_body(app="shop")
        status, accepted = await rig.post("/v1/messages", body, headers=_auth(OPS_KEY))
        assert status == 202
        _, view = await rig.get(f"/v1/messages/{accepted['id']}")
        assert view["status"] == "queued" and view["paused"] is None
        # The dispatcher's pause for errcode 48001 (api unauthorized): the message shows it.
        until = rig.clock.now() + 60
        await rig.store.set_pause(AppPause("shop", until, "api unauthorized", 48001))
        _, view = await rig.get(f"/v1/messages/{accepted['id']}")
        assert view["status"] == "queued" and view["attempts"] == 0
        assert view["paused"]["errcode"] == 48001 and view["paused"]["until"] == until
        assert view["paused"]["reason"] == "api unauthorized" and view["paused"]["meaning"]
        rig.clock.advance(61)  # the pause ran out: nothing holds it any more
        _, view = await rig.get(f"/v1/messages/{accepted['id']}")
        assert view["paused"] is None
