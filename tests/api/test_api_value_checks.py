"""Intake checks typed keys' values by name alone (`validate = "types"`, the default): a 400
naming the field and the rule instead of a 202 that WeChat later refuses with 47003
(docs/wechat-api.md §2.3, §3.1). Through the real app on the real SQLite store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from support.api import SHOP, ApiRig, make_settings, msg_body, running_gateway
from wxgate.settings import AppSettings


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("thing1", "x" * 21, "at most 20 characters"),
        ("short_thing2", "六个字的东西", "at most 5 characters"),
        ("phrase3", "OK", "Chinese only"),
        ("phrase3", "已经发货了啊", "at most 5 Chinese characters"),
        ("character_string4", "订单42", "no Chinese"),
        ("number5", "12a", "digits"),
        ("letter6", "ab1", "letters only"),
        ("symbol7", "%%%%%%", "at most 5 symbols"),
        ("amount8", "twelve", "currency sign"),
        ("time9", "tomorrow", "a time"),
        ("date10", "someday", "a date"),
        ("phone_number11", "1" * 18, "at most 17 digits"),
        ("car_number12", "粤A1234567", "at most 8 characters"),
        ("name13", "张" * 11, "at most 10 Chinese characters"),
        ("const14", "x" * 21, "approved values"),
        ("thing1", "two\nlines", "line break"),
        ("thing1", "", "is empty"),
    ],
)
@pytest.mark.parametrize("kind", ["template", "subscribe"])
async def test_a_value_wechat_would_refuse_is_a_400_naming_field_and_rule(
    rig: ApiRig, kind: str, key: str, value: str, rule: str
) -> None:
    before = await rig.snapshot()
    status, body = await rig.post("/v1/messages", msg_body(kind=kind, data={key: value}))
    assert status == 400, body
    assert body["field"] == f"data.{key}.value"
    assert rule in body["message"] and "47003" in body["message"]
    assert await rig.snapshot() == before  # nothing stored


async def test_values_within_their_rules_and_old_style_keys_are_accepted(rig: ApiRig) -> None:
    data: dict[str, Any] = {
        "thing1": "x" * 20,
        "phrase3": "已发货",
        "character_string4": "SF-1234_5678",
        "amount8": "¥128.50",
        "time9": "2019年10月1日 15:01",
        "date10": "2024-05-01 ~ 2024-05-02",
        "car_number12": "粤A12345",
        "name13": "Ann Lee",
        "const14": "已发货",
        # Old-style keys: WeChat only cuts them on screen. color is ignored since 2023-05.
        "first": {"value": "y" * 50, "color": "#173177"},
        "keyword1": "z" * 50,
        "remark": "two\nlines",
    }
    status, body = await rig.post("/v1/messages", msg_body(data=data))
    assert status == 202, body
    msg = await rig.store.get(body["id"])
    assert msg is not None and msg.data["thing1"]["value"] == "x" * 20


async def test_a_batch_names_the_recipient_whose_own_value_is_bad(rig: ApiRig) -> None:
    recipients: list[dict[str, Any]] = [
        {"touser": "o_1"},
        {"touser": "o_2", "data": {"thing1": "x" * 30}},
    ]
    status, body = await rig.post(
        "/v1/batches",
        {"template_id": "tpl", "data": {"thing1": "ok"}, "recipients": recipients},
    )
    assert status == 400, body
    assert body["field"] == "recipients[1].data.thing1.value"


async def test_validate_off_accepts_what_wechat_would_refuse(tmp_path: Path) -> None:
    app = msgspec.structs.replace(SHOP, validate="off")
    async with running_gateway(tmp_path / "db", make_settings([app])) as rig:
        status, _ = await rig.post("/v1/messages", msg_body(data={"thing1": "x" * 30}))
        assert status == 202


async def test_truncate_without_a_template_list_cuts_a_thing_but_never_a_const(
    tmp_path: Path,
) -> None:
    # No template list is reachable here: truncate falls back to the rules by key name.
    app = msgspec.structs.replace(SHOP, validate="truncate")
    async with running_gateway(tmp_path / "db", make_settings([app])) as rig:
        status, body = await rig.post("/v1/messages", msg_body(data={"thing1": "x" * 30}))
        assert status == 202, body
        msg = await rig.store.get(body["id"])
        assert msg is not None and msg.data["thing1"]["value"] == "x" * 17 + "..."
        status, body = await rig.post("/v1/messages", msg_body(data={"const2": "c" * 30}))
        assert status == 400 and body["field"] == "data.const2.value"


def test_types_is_the_default() -> None:
    assert AppSettings(name="a", appid="wx", secret="s").validate == "types"
