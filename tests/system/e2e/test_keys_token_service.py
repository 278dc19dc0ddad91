"""The company-wide token service end to end: a real gateway (SQLite or Redis) and the
simulator. Two other systems borrow the gateway's token with their own keys, both see it die
(40001), both report it, and WeChat sees exactly one refresh. Calls are counted by key name,
a noisy key is held to its own limit, and the sync Python client works as the README shows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.e2e import TEMPLATE, AppSpec, Rig, running_rig
from wxgate.sdk import GatewayClient

BILLING, CRM, NOISY, SENDER = "k-billing-0a1b", "k-crm-2c3d", "k-noisy-4e5f", "k-sender-6a7b"
KEYS = [
    {"name": "billing", "key": BILLING, "scopes": ["token"], "apps": ["a"]},
    {"name": "crm", "key": CRM, "scopes": ["token", "read"]},
    {"name": "noisy", "key": NOISY, "scopes": ["token"], "rate_per_s": 1, "burst": 2},
    {"name": "sender", "key": SENDER, "scopes": ["send"]},
]
TOKEN_PATH = "/v1/apps/a/access-token"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if request.param == "postgres":
        yield {"url": request.getfixturevalue("postgres_db")}
    elif request.param == "redis":
        yield {"url": request.getfixturevalue("redis_url")}
    else:
        yield {}


async def _call(
    rig: Rig, key: str, method: str = "GET", path: str = TOKEN_PATH, body: Any = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(
            method, rig.runtime.url + path, json=body, headers={"Authorization": f"Bearer {key}"}
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None), resp


async def _send_with(rig: Rig, token: str) -> int:
    """What another system does with the borrowed token: call WeChat (the simulator) itself."""
    body = {"touser": "o_user", "template_id": TEMPLATE, "data": {"thing1": {"value": "hi"}}}
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{rig.sim.base_url}/cgi-bin/message/template/send",
            params={"access_token": token},
            json=body,
        ) as resp,
    ):
        return int((await resp.json(content_type=None))["errcode"])


def _sample(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_two_callers_one_invalidation_one_refresh(
    tmp_path: Path, store: dict[str, Any]
) -> None:
    # A fresh appid each run: a shared Redis may hold another run's token for "wx_a".
    app = AppSpec("a", f"wx_tok_{uuid.uuid4().hex[:10]}", "secret_a", "token_a")
    async with running_rig(tmp_path, (app,), server={"keys": KEYS}, store=store) as rig:
        fetches = lambda: rig.sim.state.token_fetches[app.appid]  # noqa: E731

        (s1, t1, r1), (s2, t2, _) = await asyncio.gather(_call(rig, BILLING), _call(rig, CRM))
        assert s1 == s2 == 200 and t1 == t2 and r1.headers["Cache-Control"] == "no-store"
        token = t1["access_token"]
        assert t1["expires_at"] > rig.runtime.clock.now() + 600
        assert fetches() == 1
        assert await _send_with(rig, token) == 0

        await rig.sim.revoke_tokens(app.appid)
        assert await _send_with(rig, token) == 40001  # both callers see it die...
        path = TOKEN_PATH + "/invalidate"
        reports = await asyncio.gather(
            _call(rig, BILLING, "POST", path, {"access_token": token}),
            _call(rig, CRM, "POST", path, {"access_token": token}),
        )
        assert sorted(body["status"] for _, body, _ in reports) == ["invalidated", "stale"]

        # ...and both get the same new token, from one refresh.
        (_, n1, _), (_, n2, _) = await asyncio.gather(_call(rig, BILLING), _call(rig, CRM))
        assert n1["access_token"] == n2["access_token"] != token
        assert fetches() == 2
        assert await _send_with(rig, n1["access_token"]) == 0
        # A late report about the dead token changes nothing.
        status, late, _ = await _call(rig, CRM, "POST", path, {"access_token": token})
        assert status == 200 and late["status"] == "stale"
        assert (await _call(rig, CRM))[1] == n2 and fetches() == 2

        # The README's Python example (the sync client, so off the event loop).
        def borrow() -> str:
            with GatewayClient(rig.runtime.url, CRM) as gw:
                return gw.access_token("a").access_token

        assert await asyncio.to_thread(borrow) == n1["access_token"]

        # Scope and app checks, and a noisy key held to its own limit.
        assert (await _call(rig, SENDER))[0] == 403
        status, body, _ = await _call(rig, BILLING, path="/v1/apps/b/access-token")
        assert status == 403 and body["field"] == "app"
        noisy = [await _call(rig, NOISY) for _ in range(3)]
        assert [s for s, _, _ in noisy] == [200, 200, 429]
        assert noisy[2][2].headers["Retry-After"] == "1"
        assert (await _call(rig, CRM))[0] == 200  # others are not held back

        text = await rig.api.metrics_text()
    name = "wxgate_token_service_requests_total"
    assert _sample(text, name, key="billing", action="get") == 2
    assert _sample(text, name, key="billing", action="invalidate") == 1
    assert _sample(text, name, key="crm", action="get") == 5  # 3 here, the client, the last
    assert _sample(text, name, key="crm", action="invalidate") == 2
    assert _sample(text, name, key="noisy", action="get") == 2  # the 429 never reached it
    assert _sample(text, "wxgate_api_key_limited_total", key="noisy") == 1
    for secret in (BILLING, CRM, NOISY, SENDER, token):
        assert secret not in text
