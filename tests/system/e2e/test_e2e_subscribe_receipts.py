"""Every channel from POST to receipt (template, mini-program subscribe, OA subscribe), and
receipts linked without a msgid (policy/receipt_links.py): HTTP API -> store -> workers ->
simulator -> receipt pushes (XML and JSON) -> the callback route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.e2e import APP_A, Rig, running_rig
from support.wait import wait_until

CHANNELS: dict[str, dict[str, Any]] = {
    "template": {"template_id": "tpl_order", "url": "https://shop.example/o/1"},
    "subscribe": {"kind": "subscribe", "template_id": "sub_order_status", "page": "pages/o"},
    "oa_subscribe": {
        "kind": "oa_subscribe",
        "template_id": "oa_order_status",
        "url": "https://shop.example/o/1",
        "miniprogram": {"appid": "wx_mini", "pagepath": "pages/o"},
    },
}


async def _final(rig: Rig, msg_id: str, status: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        view = await rig.api.message(msg_id)
        return view if view["status"] == status else None

    return await wait_until(
        reached, 20.0, f"{msg_id} to be {status}", progress=lambda: rig.api.message(msg_id)
    )


def _json_pushes(rig: Rig) -> None:
    """The app's pushes as JSON from now on (a mini program's choice)."""
    rig.sim.sim.state.apps[APP_A.appid].cfg.push_format = "json"


async def _unlinked(rig: Rig) -> float:
    text = await rig.api.metrics_text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("wxgate_receipts_unlinked_total{")
    )


@pytest.mark.parametrize("push", ["xml", "json"])
@pytest.mark.parametrize("channel", list(CHANNELS))
async def test_each_channel_from_post_to_receipt(tmp_path: Path, channel: str, push: str) -> None:
    async with running_rig(tmp_path) as rig:
        if push == "json":
            _json_pushes(rig)
        fields = CHANNELS[channel]
        ok = await rig.api.send("o_alice", **fields)
        blocked = await rig.api.send("o_blocked_1", **fields)
        view = await _final(rig, ok, "delivered")
        assert (view["kind"], view["receipt"]) == (channel, "success")
        [delivery] = await rig.sim.deliveries(openid="o_alice")
        assert delivery["kind"] == channel
        # The msgid comes from the answer (template) or from the receipt (the subscribe kinds,
        # whose answers carry none): either way it is WeChat's for this delivery.
        assert view["wechat_msgid"] == delivery["msgid"]
        if channel == "oa_subscribe":
            assert delivery["page"] == "https://shop.example/o/1", "url is sent as page"
            assert delivery["miniprogram"] == {"appid": "wx_mini", "pagepath": "pages/o"}
            assert "client_msg_id" not in delivery or delivery["client_msg_id"] is None
        view = await _final(rig, blocked, "blocked")
        assert view["receipt"] == "failed:user block"
        assert await _unlinked(rig) == 0


@pytest.mark.parametrize("channel", ["subscribe", "oa_subscribe"])
async def test_in_flight_messages_to_one_user_and_template_get_their_own_receipts(
    tmp_path: Path, channel: str
) -> None:
    """No msgid in the answers: each receipt still goes to the message it reports on."""
    async with running_rig(tmp_path) as rig:
        fields = CHANNELS[channel]
        ids = [
            await rig.api.send("o_carol", **{**fields, "data": {"thing1": f"order {n}"}})
            for n in range(3)
        ]
        views = [await _final(rig, msg_id, "delivered") for msg_id in ids]
        by_value = {
            d["data"]["thing1"]["value"]: d["msgid"]
            for d in await rig.sim.deliveries(openid="o_carol")
        }
        assert len(by_value) == 3, "each message reached WeChat once"
        for n, view in enumerate(views):
            assert view["wechat_msgid"] == by_value[f"order {n}"], view
        assert await _unlinked(rig) == 0


async def test_unsubscribed_user_is_a_drop_with_43101(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        msg_id = await rig.api.send("o_unsubscribed_1", **CHANNELS["oa_subscribe"])
        view = await _final(rig, msg_id, "dead")
        assert view["last_errcode"] == 43101 and view["attempts"] == 1


async def _suppressed(rig: Rig) -> dict[str, int]:
    status, stats = await rig.api.get("/v1/stats")
    assert status == 200
    return dict(stats["suppressed"])


@pytest.mark.parametrize("push", ["xml", "json"])
async def test_a_rejected_template_is_dead_unsent_until_accepted(tmp_path: Path, push: str) -> None:
    async with running_rig(tmp_path) as rig:
        if push == "json":
            _json_pushes(rig)
        fields = CHANNELS["oa_subscribe"]
        await rig.sim.subscription(APP_A.appid, "o_dave", "oa_order_status", accepted=False)
        await rig.sim.wait_receipts()
        assert await _suppressed(rig) == {"a": 1}
        refused = await rig.api.send("o_dave", **fields)
        view = await _final(rig, refused, "dead")
        assert view["last_errcode"] == 43101 and "rejected" in view["last_errmsg"]
        assert await rig.sim.deliveries(openid="o_dave") == []
        assert rig.sim.state.errors[43101] == 0, "no send was spent"
        # Another template of the same user is not suppressed.
        other = await rig.api.send("o_dave", **CHANNELS["subscribe"])
        await _final(rig, other, "delivered")
        # A later acceptance lifts it.
        await rig.sim.subscription(APP_A.appid, "o_dave", "oa_order_status", accepted=True)
        await rig.sim.wait_receipts()
        assert await _suppressed(rig) == {}
        again = await rig.api.send("o_dave", **fields)
        await _final(rig, again, "delivered")


async def test_change_event_rejects_and_suppression_can_be_turned_off(tmp_path: Path) -> None:
    async with running_rig(tmp_path, app_overrides={"suppress_rejected": False}) as rig:
        await rig.sim.subscription(
            APP_A.appid, "o_erin", "sub_order_status", accepted=False, change=True
        )
        await rig.sim.wait_receipts()
        assert await _suppressed(rig) == {"a": 1}
        msg_id = await rig.api.send("o_erin", **CHANNELS["subscribe"])
        view = await _final(rig, msg_id, "dead")
        # Sent anyway: WeChat (the simulator) refused it itself.
        assert view["last_errcode"] == 43101 and rig.sim.state.errors[43101] == 1


async def test_an_oa_subscribe_batch_is_delivered_with_receipts(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        fields = {k: v for k, v in CHANNELS["oa_subscribe"].items() if k != "miniprogram"}
        status, answer = await rig.api.post(
            "/v1/batches",
            {
                **fields,
                "data": {"thing1": "shipped"},
                "recipients": [{"touser": f"o_batch_{i}"} for i in range(4)],
            },
        )
        assert status == 202, answer

        async def done() -> dict[str, Any] | None:
            _, progress = await rig.api.get(f"/v1/batches/{answer['id']}")
            return progress if progress["counts"].get("delivered") == 4 else None

        await wait_until(done, 20.0, "the batch to be delivered")
        deliveries = [d for d in await rig.sim.deliveries() if d["kind"] == "oa_subscribe"]
        assert len(deliveries) == 4
        assert {d["page"] for d in deliveries} == {"https://shop.example/o/1"}
