"""Send-body checks with WeChat's errcodes (docs/wechat-api.md §2, §3.1 and §4).

The value rules of typed keys (`thing1`, `phrase3`) come from policy/template_values.py, the
one module the simulator shares with the gateway (pyproject.toml says why): both kinds refuse
a value that breaks its type's rule with 47003, and old-style template keys are only cut.

Well-formed bodies decode straight into typed Structs (the fast path). Only when that fails is
the body decoded loosely to find which field is wrong, since the errcode depends on the field.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from wxgate.policy.template_values import value_problem


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


class BizsendReq(msgspec.Struct, gc=False):
    """An OA subscription notification: `page` is a web URL, no client_msg_id."""

    touser: str = ""
    template_id: str = ""
    data: dict[str, Item] | None = None
    page: str | None = None
    miniprogram: MiniProgram | None = None


Req = TemplateReq | SubscribeReq | BizsendReq
Problem = tuple[int, str | None]  # (errcode, errmsg without rid; None = the standard one)

_OPENID = re.compile(r"[0-9A-Za-z_\-]{1,64}")
_KEY = re.compile(r"[A-Za-z][0-9A-Za-z_]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_STATES = frozenset(("developer", "trial", "formal"))
_LANGS = frozenset(("zh_CN", "en_US", "zh_HK", "zh_TW"))

_template_decoder = msgspec.json.Decoder(TemplateReq)
_subscribe_decoder = msgspec.json.Decoder(SubscribeReq)
_bizsend_decoder = msgspec.json.Decoder(BizsendReq)
_any_decoder = msgspec.json.Decoder()


def _bad(field: str, why: str) -> Problem:
    return 47003, f"argument invalid! {field} {why}"


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
        v = item.value
        if subscribe and not v:
            return _bad(f"data.{key}.value", "is empty")
        if subscribe and _CONTROL.search(v):
            return _bad(f"data.{key}.value", "invalid")
        # Typed keys of both kinds; old-style template keys are cut on screen instead.
        if value_problem(key, v) is not None:
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


def check_bizsend(body: bytes) -> tuple[BizsendReq | None, Problem | None]:
    """bizsend: the subscribe value rules (empty and control characters refused too)."""
    try:
        req = _bizsend_decoder.decode(body)
    except msgspec.ValidationError:
        return None, _diagnose(body, subscribe=True)
    except msgspec.DecodeError:
        return None, (47001, None)
    problem = _common(req.touser, req.template_id)
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
