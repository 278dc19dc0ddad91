"""What WeChat accepts as the value of a typed key (docs/wechat-api.md §2.3, §3.1).

Category templates (`template/send`) and subscribe messages (`subscribe/send`, and the
subscription notifications of a later kind) name their keys by type plus an index: `thing1`,
`character_string2`, `number01`. WeChat refuses a value that breaks its type's rule with
47003; it does not cut it. Old-style keys (`first`, `keyword1`, `remark`) and any other key
whose name is not a type are merely cut on screen, so nothing here applies to them.

Pure functions with no state: the simulator refuses with them (sim/validate.py) and intake
checks with them from key names alone (api/template_check.py), so the rules live once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3007]+")
_NUMBER = re.compile(r"-?[0-9]{1,32}(\.[0-9]+)?")
_LETTER = re.compile(r"[A-Za-z]{1,32}")
# Digits, letters and ASCII symbols (no space): Chinese is refused.
_CHARSTR = re.compile(r"[\x21-\x7e]{1,32}")
# A time or date ("15:01", "2019年10月1日 15:01", "2024-05-01"), or a range joined by "~".
_MOMENT = re.compile(r"[0-9][0-9\s:\-/.年月日时分秒点T+]*")
_AMOUNT = re.compile(r"[¥￥$€£]?[0-9]{1,10}(\.[0-9]{1,2})?元?")
_PHONE = re.compile(r"\+?[0-9][0-9\-\s()]{0,16}")
_CAR = re.compile(
    r"[\u4e00-\u9fffA-Za-z0-9][A-Za-z0-9]{0,6}[\u4e00-\u9fffA-Za-z0-9]|[\u4e00-\u9fffA-Za-z0-9]"
)


def _within(limit: int) -> Callable[[str], bool]:
    return lambda v: len(v) <= limit


def _matches(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda v: pattern.fullmatch(v) is not None


def _moment(v: str) -> bool:
    parts = v.split("~")
    return len(parts) <= 2 and all(_MOMENT.fullmatch(p.strip()) is not None for p in parts)


def _symbols(v: str) -> bool:
    return len(v) <= 5 and not any(c.isalnum() or c.isspace() for c in v)


def _phrase(v: str) -> bool:
    return len(v) <= 5 and _CJK.fullmatch(v) is not None


def _name(v: str) -> bool:
    return len(v) <= (20 if v.isascii() else 10) and not any(c.isdigit() for c in v)


def _phone(v: str) -> bool:
    return len(v) <= 17 and _PHONE.fullmatch(v) is not None


def _car(v: str) -> bool:
    return len(v) <= 8 and _CAR.fullmatch(v) is not None


@dataclass(frozen=True, slots=True)
class TypeRule:
    """One keyword type: `ok` says whether a value passes, `rule` says what it takes.
    `listed`: the value must also be one of the template's values when they are known."""

    ok: Callable[[str], bool]
    rule: str
    listed: bool = False


TYPES: Mapping[str, TypeRule] = {
    "thing": TypeRule(_within(20), "at most 20 characters"),
    "short_thing": TypeRule(_within(5), "at most 5 characters"),
    "number": TypeRule(_matches(_NUMBER), "at most 32 digits, decimals allowed"),
    "letter": TypeRule(_matches(_LETTER), "at most 32 letters, letters only"),
    "symbol": TypeRule(_symbols, "at most 5 symbols, symbols only"),
    "character_string": TypeRule(
        _matches(_CHARSTR), "at most 32 digits, letters or symbols (no Chinese, no spaces)"
    ),
    "time": TypeRule(_moment, "a time such as 15:01 or 2019年10月1日 15:01, or a range a~b"),
    "date": TypeRule(_moment, "a date such as 2019年10月1日 or 2024-05-01, or a range a~b"),
    "amount": TypeRule(
        _matches(_AMOUNT), "one currency sign and at most 10 digits (2 decimals), maybe 元"
    ),
    "phone_number": TypeRule(_phone, "a phone number: at most 17 digits, +, - and ()"),
    "car_number": TypeRule(
        _car, "at most 8 characters: letters and digits, Chinese only first or last"
    ),
    "name": TypeRule(_name, "at most 10 Chinese characters or 20 letters, no digits"),
    "phrase": TypeRule(_phrase, "at most 5 Chinese characters, Chinese only"),
    "const": TypeRule(_within(20), "one of the template's approved values", listed=True),
    "enum": TypeRule(_within(20), "one of the template's listed values", listed=True),
    "enum_string": TypeRule(_within(20), "one of the template's listed values", listed=True),
}


@functools.lru_cache(maxsize=4096)  # keys repeat: a few per template, checked per message
def keyword_type(key: str) -> str | None:
    """`thing1` -> "thing", `number01` -> "number"; None for a key that is not typed
    (`first`, `keyword1`, `remark`, `orderId`): WeChat only cuts those on screen."""
    base = key.rstrip("0123456789")
    if base == key or base not in TYPES:
        return None
    return base


def value_problem(key: str, value: str, allowed: Collection[str] | None = None) -> str | None:
    """Why WeChat would refuse `value` for `key` with 47003, or None when it is fine (or the
    key is not typed). `allowed`: the template's values for a const/enum key, when known."""
    kind = keyword_type(key)
    if kind is None:
        return None
    if not value:
        return "is empty (WeChat answers 47003)"
    if _CONTROL.search(value):
        return "contains a control character or line break (WeChat answers 47003)"
    rule = TYPES[kind]
    if rule.listed and allowed is not None:
        if value in allowed:
            return None
        return f"a {kind} value must be one of {sorted(allowed)} (WeChat answers 47003)"
    if not rule.ok(value):
        return f"a {kind} value takes {rule.rule} (WeChat answers 47003)"
    return None


def is_listed(key: str) -> bool:
    """A const/enum key: its value must be one the template lists, and is never cut."""
    kind = keyword_type(key)
    return kind is not None and TYPES[kind].listed
