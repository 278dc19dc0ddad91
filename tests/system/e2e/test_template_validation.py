"""Template validation end to end: the gateway reads each app's template list from the
simulator and checks `data` at accept time. App `a` rejects, `b` truncates, `c` is off, and
`d`'s appid is unknown to WeChat, so its list cannot be read."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from support.e2e import APP_A, APP_B, Api, AppSpec, settings_dict, sim_config
from support.wait import wait_until
from wxgate.runtime import Runtime
from wxgate.sandbox import free_port
from wxgate.settings import from_dict
from wxgate.sim.config import SimTemplate, default_templates
from wxgate.sim.testing import SimHandle, running_simulator

APP_C = AppSpec("c", "wx_c", "secret_c", "token_c")
APP_D = AppSpec("d", "wx_d", "secret_d", "token_d")
_RECIPIENTS = itertools.count()
MODES = {"a": "reject", "b": "truncate", "c": "off", "d": "reject"}
LONG = "订单已发货预计明天送达请保持电话畅通以便快递员联系您谢谢"  # 28 characters


@dataclass
class Rig:
    sim: SimHandle
    runtime: Runtime
    api: Api

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        return await self.api.post(path, body)

    async def send(self, app: str, template_id: str, data: Any, **kw: Any) -> tuple[int, Any]:
        """POST one message to a recipient of its own (subscribe sends carry no client_msg_id:
        the simulator's record is found by openid)."""
        touser = f"o_t{next(_RECIPIENTS)}"
        body = {"app": app, "touser": touser, "template_id": template_id, "data": data, **kw}
        return await self.post("/v1/messages", body)

    @property
    def list_calls(self) -> int:
        return self.sim.sim.templates.calls


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    port = free_port()
    async with running_simulator(sim_config(port, [APP_A, APP_B, APP_C])) as sim:
        data = settings_dict(
            tmp_path,
            port,
            sim.base_url,
            [APP_A, APP_B, APP_C, APP_D],
            templates={"unknown_refresh_s": 30.0, "fetch_timeout_s": 2.0},
        )
        for app in data["apps"]:
            app["validate"] = MODES[app["name"]]
        async with Runtime(from_dict(data)) as runtime:
            api = Api(runtime.url)
            try:
                yield Rig(sim, runtime, api)
            finally:
                await api.close()


@pytest.fixture
async def r(tmp_path: Path) -> AsyncIterator[Rig]:
    async with rig(tmp_path) as value:
        yield value


async def delivered_data(r: Rig, msg_id: str) -> dict[str, Any]:
    touser = (await r.api.message(msg_id))["touser"]

    async def arrived() -> list[dict[str, Any]]:
        return await r.sim.deliveries(openid=touser)

    [row] = await wait_until(arrived, 10, f"{msg_id} at the simulator")
    data: dict[str, Any] = row["data"]
    return data


async def test_an_unknown_field_is_a_400_naming_it(r: Rig) -> None:
    for app in ("a", "b"):
        status, body = await r.send(app, "tpl_order_shipped", {"thing1": "ok", "keyword9": "x"})
        assert status == 400, body
        assert body["field"] == "data.keyword9"
        assert "thing1, character_string2, time3" in body["message"]


async def test_an_unknown_template_id_is_a_400(r: Rig) -> None:
    status, body = await r.send("a", "tpl_nope", {"thing1": "ok"})
    assert (status, body["field"]) == (400, "template_id")
    assert "40037" in body["message"]


async def test_over_long_value_rejected_or_truncated_and_recorded(r: Rig) -> None:
    data = {"thing1": LONG, "character_string2": "SF1234567890"}
    status, body = await r.send("a", "tpl_order_shipped", data)
    assert (status, body["field"]) == (400, "data.thing1.value")
    assert "28 characters" in body["message"] and "at most 20" in body["message"]

    status, body = await r.send("b", "tpl_order_shipped", data)
    assert status == 202, body
    view = await r.api.message(body["id"])
    assert view["notes"] == [
        "data.thing1: truncated from 28 to 20 characters "
        "(thing limit 20; kept the first 17 + '...')"
    ]
    sent = await delivered_data(r, body["id"])
    assert sent["thing1"]["value"] == LONG[:17] + "..."
    assert sent["character_string2"]["value"] == "SF1234567890"


async def test_off_lets_anything_through(r: Rig) -> None:
    status, body = await r.send("c", "tpl_whatever", {"keyword9": LONG * 3, "x": "y"})
    assert status == 202, body
    assert (await r.api.message(body["id"])).get("notes") is None
    sent = await delivered_data(r, body["id"])
    assert sent["keyword9"]["value"] == LONG * 3


async def test_subscribe_templates_are_checked_by_keyword_type(r: Rig) -> None:
    full = {
        "thing1": "鼠标",
        "character_string2": "A-1",
        "phrase3": "已发货",
        "time4": "2024-05-01",
    }
    ok = await r.send("a", "sub_order_status", full, kind="subscribe")
    assert ok[0] == 202, ok
    missing = {k: v for k, v in full.items() if k != "phrase3"}
    status, body = await r.send("a", "sub_order_status", missing, kind="subscribe")
    assert (status, body["field"]) == (400, "data.phrase3")
    status, body = await r.send(
        "a", "sub_order_status", {**full, "time4": "tomorrow"}, kind="subscribe"
    )
    assert (status, body["field"]) == (400, "data.time4.value")
    status, body = await r.send(
        "b", "sub_order_status", {**full, "phrase3": "已经发货了呢"}, kind="subscribe"
    )
    assert status == 202, body
    assert (await delivered_data(r, body["id"]))["phrase3"]["value"] == "已经发货了"
    # The OA list does not hold subscribe templates, nor the other way round.
    status, body = await r.send("a", "tpl_order", {"thing1": "x"}, kind="subscribe")
    assert (status, body["field"]) == (400, "template_id")


async def test_a_batch_names_the_recipient_or_the_shared_field(r: Rig) -> None:
    batch: dict[str, Any] = {
        "template_id": "tpl_order",
        "data": {"thing1": "Sale starts"},
        "recipients": [{"touser": "o_1"}, {"touser": "o_2", "data": {"thing1": LONG}}],
    }
    status, body = await r.post("/v1/batches", {**batch, "app": "a"})
    assert (status, body["field"]) == (400, "recipients[1].data.thing1.value")
    status, body = await r.post(
        "/v1/batches", {**batch, "app": "a", "data": {"thing1": "x", "bogus": "y"}}
    )
    assert (status, body["field"]) == (400, "data.bogus")
    status, body = await r.post("/v1/batches", {**batch, "app": "b"})
    assert status == 202, body


async def test_lists_are_cached_refreshed_on_unknown_ids_and_fail_open(r: Rig) -> None:
    data = {"thing1": "ok"}
    results = await asyncio.gather(*(r.send("a", "tpl_order", data) for _ in range(50)))
    assert {s for s, _ in results} == {202}
    assert r.list_calls == 1, "one fetch for 50 concurrent first sends (single flight)"
    for i in range(5):
        status, _ = await r.send("a", f"tpl_unknown_{i}", data)
        assert status == 400
    assert r.list_calls == 2, "unknown ids refresh the list at most once per interval"

    # A template added in WeChat's backend after the list was cached is found at once.
    assert (await r.send("b", "tpl_order", data))[0] == 202
    calls = r.list_calls
    cfg = r.sim.config.app(APP_B.appid)
    assert cfg is not None
    added = SimTemplate(template_id="tpl_new", keys=["thing1", "time2"])
    await r.sim.add_app(msgspec.structs.replace(cfg, templates=[*default_templates(), added]))
    status, body = await r.send("b", "tpl_new", {"thing1": "ok", "time2": "12:00"})
    assert status == 202, body
    assert r.list_calls == calls + 1

    # No list to be had (WeChat does not know this appid): accepted, unchecked, and said so.
    status, body = await r.send("d", "tpl_order", {"anything": LONG})
    assert status == 202, body
    notes = (await r.api.message(body["id"]))["notes"]
    assert len(notes) == 1 and notes[0].startswith("template not checked: ")


async def test_a_streamed_batch_is_checked_line_by_line(r: Rig) -> None:
    lines = [{"touser": "o_s1"}, {"touser": "o_s2", "data": {"thing1": LONG}}]
    body = "\n".join(msgspec.json.encode(x).decode() for x in lines) + "\n"
    query = {"app": "a", "template_id": "tpl_order", "data": '{"thing1": "Sale"}'}
    headers = {"Content-Type": "application/x-ndjson"}
    async with r.api.session.post("/v1/batches", params=query, data=body, headers=headers) as resp:
        status, answer = resp.status, await resp.json()
    assert status == 400, answer
    assert answer["field"] == "line 2.data.thing1.value"
    query["app"] = "b"
    async with r.api.session.post("/v1/batches", params=query, data=body, headers=headers) as resp:
        assert resp.status == 202, await resp.text()


async def test_a_batch_with_truncated_shared_data_delivers_it_whole(r: Rig) -> None:
    """The batch's shared data is stored once and truncated once; each recipient gets it,
    updated by its own (issue 11: batch data is no longer copied per row)."""
    batch = {
        "app": "b",
        "template_id": "tpl_order",
        "data": {"thing1": LONG, "amount2": "9.90"},
        "recipients": [
            {"touser": "o_tr1"},
            {"touser": "o_tr2", "data": {"amount2": "1.00"}},
            {"touser": "o_tr3", "data": {"thing1": "Short"}},
        ],
    }
    status, body = await r.post("/v1/batches", batch)
    assert status == 202, body

    async def got(openid: str) -> dict[str, Any]:
        async def arrived() -> list[dict[str, Any]]:
            return await r.sim.deliveries(openid=openid)

        [row] = await wait_until(arrived, 10, f"{openid} at the simulator")
        return {k: v["value"] for k, v in row["data"].items()}

    first = await got("o_tr1")
    assert first["amount2"] == "9.90"
    assert first["thing1"] != LONG and len(first["thing1"]) <= 20
    assert await got("o_tr2") == {"thing1": first["thing1"], "amount2": "1.00"}
    assert await got("o_tr3") == {"thing1": "Short", "amount2": "9.90"}
