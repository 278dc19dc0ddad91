"""policy.template_values against the documented examples (docs/wechat-api.md §3.1): each
type's accepted example passes and a value just past its rule fails."""

from __future__ import annotations

import pytest

from wxgate.policy.template_values import is_listed, keyword_type, value_problem

ACCEPTED = [
    ("thing1", "汉字、数字、字母或符号abc123!"),
    ("number01", "12.5"),
    ("letter2", "abc"),
    ("symbol3", "%$#"),
    ("character_string4", "SF-1234_5678"),
    ("time5", "15:01"),
    ("time5", "15:01:30"),
    ("time5", "2019年10月1日 15:01"),
    ("time5", "15:01~16:30"),
    ("date6", "2019年10月1日"),
    ("date6", "2018-01-01"),
    ("date6", "2018/01/01"),
    ("date6", "2018.01.01"),
    ("date6", "01-01"),
    ("date6", "2019年10月1日 ~ 2019年10月2日"),
    ("amount7", "¥128.50"),
    ("amount7", "128元"),
    ("phone_number8", "+86-0766-66888866"),
    ("car_number9", "粤A8Z888挂"),
    ("name10", "张三"),
    ("name10", "John Smith"),
    ("name10", "张三Tom"),
    ("phrase11", "配送中"),
    ("short_thing12", "D-3"),
    ("const13", "已发货"),
]

REFUSED = [
    ("thing1", "x" * 21),
    ("number01", "1" * 33),
    ("letter2", "a" * 33),
    ("symbol3", "%%%%%%"),
    ("symbol3", "a%"),
    ("character_string4", "中文"),
    ("character_string4", "has space"),
    ("time5", "tomorrow"),
    ("time5", "1~2~3"),
    ("amount7", "12345678901"),
    ("phone_number8", "1" * 18),
    ("car_number9", "粤A-12345"),
    ("name10", "张" * 11),
    ("name10", "a" * 21),
    ("phrase11", "配送中ok"),
    ("short_thing12", "123456"),
    ("const13", "x" * 21),
    ("thing1", ""),
    ("thing1", "two\nlines"),
]


@pytest.mark.parametrize(("key", "value"), ACCEPTED)
def test_documented_examples_pass(key: str, value: str) -> None:
    assert value_problem(key, value) is None


@pytest.mark.parametrize(("key", "value"), REFUSED)
def test_values_past_their_rule_fail_saying_47003(key: str, value: str) -> None:
    problem = value_problem(key, value)
    assert problem is not None and "47003" in problem


@pytest.mark.parametrize("key", ["first", "keyword1", "remark", "orderId", "thing", "amount"])
def test_keys_that_are_not_typed_are_never_checked(key: str) -> None:
    assert keyword_type(key) is None
    assert value_problem(key, "x" * 500) is None


def test_listed_values_decide_for_const_and_enum() -> None:
    assert value_problem("const3", "已签收", ["已发货", "已签收"]) is None
    problem = value_problem("enum4", "丢失", ["已发货"])
    assert problem is not None and "已发货" in problem
    assert is_listed("const3") and is_listed("enum_string2") and not is_listed("thing1")
