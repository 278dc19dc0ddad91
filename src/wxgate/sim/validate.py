"""Send-body checks with WeChat's errcodes (docs/wechat-api.md §2, §3.1 and §4).

Well-formed bodies decode straight into typed Structs (the fast path). Only when that fails is
the body decoded loosely to find which field is wrong, since the errcode depends on the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec


# gc=False: request bodies are acyclic and short-lived, so the cycle collector can skip them.
class Item(msgspec.Struct, gc=False):
    value: str


class MiniProgram(msgspec.Struct, gc=False):
    appid: str = ""
    pagepath: str = ""


class TemplateReq(msgspec.Struct, gc=False):
    touser: str = ""
    template_id: str = ""
    data: dict[str, Item] | None = None
    client_msg_id: str | None = None
    url: str | None = None
    miniprogram: MiniProgram | None = None


class SubscribeReq(msgspec.Struct, gc=False):
    touser: str = ""
    template_id: str = ""
    data: dict[str, Item] | None = None
    page: str | None = None
    miniprogram_state: str | None = None
    lang: str | None = None


Req = TemplateReq | SubscribeReq
Problem = tuple[int, str | None]  # (errcode, errmsg without rid; None = the standard one)

_OPENID = re.compile(r"[0-9A-Za-z_\-]{1,64}")
_KEY = re.compile(r"[A-Za-z][0-9A-Za-z_]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUMBER = re.compile(r"[0-9]{1,32}(\.[0-9]+)?")
_LETTER = re.compile(r"[A-Za-z]{1,32}")
_CHARSTR = re.compile(r"[\x21-\x7e]{1,32}")
_TIME = re.compile(r"[0-9\s:\-/.~年月日时分秒点至T+]{1,64}")
_AMOUNT = re.compile(r"[¥￥$€£]?[0-9]{1,10}(\.[0-9]{1,2})?元?")
_PHONE = re.compile(r"[0-9+\-\s().]{1,17}")
_STATES = frozenset(("developer", "trial", "formal"))
_LANGS = frozenset(("zh_CN", "en_US", "zh_HK", "zh_TW"))

_template_decoder = msgspec.json.Decoder(TemplateReq)
_subscribe_decoder = msgspec.json.Decoder(SubscribeReq)
_any_decoder = msgspec.json.Decoder()


def _bad(field: str, why: str) -> Problem:
    return 47003, f"argument invalid! {field} {why}"


def _check_name(v: str) -> bool:
    return len(v) <= (20 if v.isascii() else 10)


# Subscribe keyword types (key = type + index, e.g. thing1, number01) -> value check.
_SUBSCRIBE_RULES: dict[str, Callable[[str], bool]] = {
    "thing": lambda v: len(v) <= 20,
    "number": lambda v: _NUMBER.fullmatch(v) is not None,
    "letter": lambda v: _LETTER.fullmatch(v) is not None,
    "symbol": lambda v: len(v) <= 5 and not any(c.isalnum() for c in v),
    "character_string": lambda v: _CHARSTR.fullmatch(v) is not None,
    "time": lambda v: _TIME.fullmatch(v) is not None and any(c.isdigit() for c in v),
    "date": lambda v: _TIME.fullmatch(v) is not None and any(c.isdigit() for c in v),
    "amount": lambda v: _AMOUNT.fullmatch(v) is not None,
    "phone_number": lambda v: _PHONE.fullmatch(v) is not None,
    "car_number": lambda v: len(v) <= 8,
    "name": _check_name,
    "phrase": lambda v: len(v) <= 5,
}


def _common(touser: str, template_id: str) -> Problem | None:
    if not touser or _OPENID.fullmatch(touser) is None or touser.startswith("o_invalid"):
        return 40003, None
    if not template_id or template_id.startswith("tpl_invalid"):
        return 40037, None
    if len(template_id) > 128:
        return 40036, None
    return None


def _data(data: dict[str, Item] | None, subscribe: bool) -> Problem | None:
    if not data:
        return _bad("data", "is empty")
    for key, item in data.items():
        if _KEY.fullmatch(key) is None:
            return _bad(f"data.{key}", "invalid")
        if not subscribe:
            continue  # template values are truncated by WeChat, not rejected (2023 rules)
        v = item.value
        if not v:
            return _bad(f"data.{key}.value", "is empty")
        if _CONTROL.search(v):
            return _bad(f"data.{key}.value", "invalid")
        rule = _SUBSCRIBE_RULES.get(key.rstrip("0123456789"))
        if rule is not None and not rule(v):
            return _bad(f"data.{key}.value", "exceeds limit or invalid format")
    return None


def check_template(body: bytes) -> tuple[TemplateReq | None, Problem | None]:
    try:
        req = _template_decoder.decode(body)
    except msgspec.ValidationError:
        return None, _diagnose(body, subscribe=False)
    except msgspec.DecodeError:
        return None, (47001, None)
    problem = _common(req.touser, req.template_id) or _data(req.data, subscribe=False)
    return req, problem


def check_subscribe(body: bytes) -> tuple[SubscribeReq | None, Problem | None]:
    try:
        req = _subscribe_decoder.decode(body)
    except msgspec.ValidationError:
        return None, _diagnose(body, subscribe=True)
    except msgspec.DecodeError:
        return None, (47001, None)
    problem = _common(req.touser, req.template_id)
    if problem is None and req.page and req.page.startswith("pages/invalid"):
        problem = 41030, None
    if problem is None and req.miniprogram_state and req.miniprogram_state not in _STATES:
        problem = _bad("miniprogram_state", "invalid")
    if problem is None and req.lang and req.lang not in _LANGS:
        problem = _bad("lang", "invalid")
    return req, problem or _data(req.data, subscribe=True)


def _diagnose(body: bytes, subscribe: bool) -> Problem:
    """The typed decode failed: find the first wrong field, in the order WeChat checks them."""
    try:
        raw: Any = _any_decoder.decode(body)
    except msgspec.DecodeError:
        return 47001, None
    if not isinstance(raw, dict):
        return 47001, None
    touser, template_id = raw.get("touser"), raw.get("template_id")
    if not isinstance(touser, str) or not touser:
        return 40003, None
    if not isinstance(template_id, str):
        return 40037, None
    first = _common(touser, template_id)
    if first is not None:
        return first
    data = raw.get("data")
    if not isinstance(data, dict) or not data:
        return _bad("data", "is empty" if not data else "invalid")
    for key, item in data.items():
        if not isinstance(item, dict):
            return _bad(f"data.{key}", "invalid")
        if "value" not in item:
            return _bad(f"data.{key}.value", "is empty")
        if not isinstance(item["value"], str):
            return _bad(f"data.{key}.value", "invalid")
    # data was fine, so an optional field had the wrong type.
    return 47001, None
