"""policy.template_rules and wechat.templates' parser, with literals."""

from __future__ import annotations

from typing import Any

import pytest

from wxgate.errors import Disposition, WeChatError
from wxgate.models import MessageKind
from wxgate.policy.template_rules import (
    CompiledTemplate,
    TemplateViolation,
    check,
    placeholders,
)
from wxgate.wechat.templates import parse_templates


def d(**values: str) -> dict[str, dict[str, str]]:
    return {k: {"value": v} for k, v in values.items()}


OA = CompiledTemplate.of(
    "tpl_oa",
    "template",
    placeholders(
        "商品\uff1a{{thing1.DATA}}\n单号\uff1a{{character_string2.DATA}}\n{{keyword3.DATA}}"
    ),
)
SUB = CompiledTemplate.of(
    "tpl_sub",
    "subscribe",
    placeholders(
        "{{thing1.DATA}}{{number2.DATA}}{{amount3.DATA}}{{phrase4.DATA}}{{name5.DATA}}"
        "{{character_string6.DATA}}{{letter7.DATA}}"
    ),
)
SUB_OK = d(
    thing1="鼠标",
    number2="12.5",
    amount3="¥12.50",
    phrase4="已发货",
    name5="张三",
    character_string6="SF-123",
    letter7="abc",
)


def violation(template: CompiledTemplate, data: Any, mode: str = "reject") -> tuple[str, str]:
    with pytest.raises(TemplateViolation) as info:
        check(template, data, mode)
    return info.value.field, info.value.reason


def test_placeholders_in_order_once_each() -> None:
    content = (
        "{{first.DATA}}\n订单号\uff1a{{ keyword1.DATA }}\n{{keyword1.DATA}}{{remark.DATA}}{{x}}"
    )
    assert placeholders(content) == ("first", "keyword1", "remark")


def test_good_data_comes_back_as_the_same_object() -> None:
    data = d(thing1="ok", character_string2="A1", keyword3="x" * 20)
    assert check(OA, data, "reject") == (data, None)
    assert check(OA, data, "reject")[0] is data
    assert check(SUB, SUB_OK, "truncate")[0] is SUB_OK


def test_unknown_keys_are_named_but_legacy_oa_keys_pass() -> None:
    field, reason = violation(OA, d(thing1="ok", keyword9="x"))
    assert field == "data.keyword9"
    assert "thing1, character_string2, keyword3" in reason
    assert check(OA, d(first="hello", thing1="ok", remark="bye"), "reject")[1] is None
    assert violation(SUB, {**SUB_OK, **d(first="x")})[0] == "data.first"


@pytest.mark.parametrize(
    ("key", "value", "limit"),
    [("thing1", "x" * 21, 20), ("character_string2", "A" * 33, 32), ("keyword3", "y" * 21, 20)],
)
def test_oa_limits_by_key_prefix(key: str, value: str, limit: int) -> None:
    field, reason = violation(OA, d(**{key: value}))
    assert field == f"data.{key}.value"
    assert f"at most {limit}" in reason
    data, notes = check(OA, d(**{key: value}), "truncate")
    assert data[key]["value"] == value[: limit - 3] + "..."
    assert notes is not None and notes[0].startswith(f"data.{key}: truncated from")


def test_truncation_never_changes_the_input_and_keeps_colors() -> None:
    data = {"thing1": {"value": "x" * 30, "color": "#173177"}}
    out, _ = check(OA, data, "truncate")
    assert data["thing1"]["value"] == "x" * 30
    assert out["thing1"] == {"value": "x" * 17 + "...", "color": "#173177"}


def test_oa_line_breaks() -> None:
    assert violation(OA, d(thing1="a\nb")) == (
        "data.thing1.value",
        violation(OA, d(thing1="\n"))[1],
    )
    data, notes = check(OA, d(thing1="a\r\nb"), "truncate")
    assert data["thing1"]["value"] == "a b"
    assert notes == ["data.thing1: line breaks replaced by spaces"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("number2", "12a"),
        ("number2", "1" * 33),
        ("amount3", "twelve"),
        ("letter7", "abc1"),
        ("thing1", ""),
        ("thing1", "bad\x07"),
    ],
)
def test_subscribe_values_of_the_wrong_form_fail_in_both_modes(key: str, value: str) -> None:
    data = {**SUB_OK, **d(**{key: value})}
    for mode in ("reject", "truncate"):
        assert violation(SUB, data, mode)[0] == f"data.{key}.value"


def test_subscribe_truncation_by_type() -> None:
    data = {**SUB_OK, **d(thing1="商" * 25, phrase4="已经发货了呢", name5="a" * 25)}
    out, notes = check(SUB, data, "truncate")
    assert out["thing1"]["value"] == "商" * 17 + "..."
    assert out["phrase4"]["value"] == "已经发货了", "a phrase is cut, no room for ..."
    assert out["name5"]["value"] == "a" * 17 + "...", "20 for letters"
    assert notes is not None and len(notes) == 3
    assert check(SUB, {**SUB_OK, **d(name5="张" * 11)}, "truncate")[0]["name5"]["value"] == (
        "张" * 7 + "..."
    ), "10 for CJK"


def test_subscribe_needs_every_field() -> None:
    field, reason = violation(SUB, {k: v for k, v in SUB_OK.items() if k != "amount3"})
    assert field == "data.amount3"
    assert "47003" in reason


def test_parse_oa_and_subscribe_lists() -> None:
    oa = (
        b'{"template_list":[{"template_id":"T1","title":"t","primary_industry":"IT",'
        b'"deputy_industry":"x","content":"{{first.DATA}}\\n\\u5355\\u53f7: {{keyword1.DATA}}",'
        b'"example":"e"}]}'
    )
    [(tid, tpl)] = parse_templates(MessageKind.TEMPLATE, 200, oa).items()
    assert (tid, tpl.kind, tpl.keys) == ("T1", "template", ("first", "keyword1"))
    sub = (
        b'{"errcode":0,"errmsg":"ok","data":[{"priTmplId":"S1","title":"t",'
        b'"content":"{{thing1.DATA}}\\n{{time2.DATA}}","example":"e","type":2}]}'
    )
    [(tid, tpl)] = parse_templates(MessageKind.SUBSCRIBE, 200, sub).items()
    assert (tid, tpl.kind, tpl.keys) == ("S1", "subscribe", ("thing1", "time2"))
    assert parse_templates(MessageKind.TEMPLATE, 200, b'{"template_list":[]}') == {}


def test_parse_errors() -> None:
    with pytest.raises(WeChatError) as info:
        parse_templates(MessageKind.TEMPLATE, 200, b'{"errcode":40001,"errmsg":"bad"}')
    assert info.value.disposition is Disposition.REFRESH_TOKEN
    with pytest.raises(WeChatError) as info:
        parse_templates(MessageKind.SUBSCRIBE, 200, b'{"errcode":48001,"errmsg":"no"}')
    assert info.value.errcode == 48001
    for status, body in ((502, b"<html>"), (200, b"not json")):
        with pytest.raises(WeChatError):
            parse_templates(MessageKind.TEMPLATE, status, body)
