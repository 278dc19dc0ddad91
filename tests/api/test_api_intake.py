"""The intake rules as pure functions: data shape, kinds, times, msgspec error paths."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from wxgate.api.body import field_of
from wxgate.api.errors import ApiError
from wxgate.api.intake import (
    batch_from,
    idempotency_key,
    message_from,
    normalize_data,
    resolve_app,
)
from wxgate.models import (
    BatchIn,
    MessageIn,
    MessageKind,
    MiniProgram,
    Recipient,
    Status,
    new_id,
    new_ids,
)
from wxgate.settings import AppSettings

NOW = 1_700_000_000.0
APP = AppSettings(name="shop", appid="wx_shop", secret="s")


def field_err(fn: Any, *args: Any) -> str | None:
    with pytest.raises(ApiError) as info:
        fn(*args)
    assert info.value.status == 400
    return info.value.field


def test_data_shorthand_and_full_form() -> None:
    got = normalize_data({"a": "x", "b": {"value": "y", "color": "#ff0000"}, "c": 12, "d": 1.5})
    assert got == {
        "a": {"value": "x"},
        "b": {"value": "y", "color": "#ff0000"},
        "c": {"value": "12"},
        "d": {"value": "1.5"},
    }


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"k": None}, "data.k"),
        ({"k": True}, "data.k"),
        ({"k": ["x"]}, "data.k"),
        ({"k": {"color": "#fff"}}, "data.k.value"),
        ({"k": {"value": {"x": 1}}}, "data.k.value"),
        ({"k": {"value": "v", "colour": "#fff"}}, "data.k.colour"),
        ({"k": {"value": "v", "color": "red"}}, "data.k.color"),
        ({"": "v"}, "data"),
    ],
)
def test_bad_data_names_the_field(data: dict[str, Any], field: str) -> None:
    assert field_err(normalize_data, data) == field


def test_resolve_app() -> None:
    apps = {"shop": APP}
    assert resolve_app(apps, None) is APP
    assert resolve_app(apps, "shop") is APP
    assert field_err(resolve_app, apps, "nope") == "app"
    assert field_err(resolve_app, {**apps, "b": APP}, None) == "app"
    assert field_err(resolve_app, {}, None) == "app"


def test_idempotency_key_header_and_body() -> None:
    assert idempotency_key("a", None) == "a"
    assert idempotency_key(None, "h") == "h"
    assert idempotency_key("h", "h") == "h"
    assert field_err(idempotency_key, "a", "b") == "idempotency_key"
    assert field_err(idempotency_key, None, "x" * 257) == "idempotency_key"


def body(**kw: Any) -> MessageIn:
    return MessageIn(touser="o_1", template_id="tpl", data={"k": "v"}, **kw)


def test_message_times() -> None:
    m = message_from(body(send_at=NOW + 60, expire_at=NOW + 120), APP, NOW, new_id(), None)
    assert (m.not_before, m.expire_at, m.status) == (NOW + 60, NOW + 120, Status.QUEUED)
    past = message_from(body(send_at=NOW - 60), APP, NOW, new_id(), None)
    assert past.not_before == NOW
    gone = message_from(body(expire_at=NOW - 1), APP, NOW, new_id(), None)
    assert gone.status == Status.EXPIRED and gone.finished_at == NOW


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"send_at": NOW + 10, "expire_at": NOW + 5}, "expire_at"),
        ({"send_at": (NOW + 10) * 1000}, "send_at"),  # milliseconds by mistake
        ({"expire_at": -1.0}, "expire_at"),
        ({"page": "pages/x"}, "page"),  # template messages have no page
        ({"lang": "zh_CN"}, "lang"),
        ({"kind": MessageKind.SUBSCRIBE, "url": "https://x"}, "url"),
        ({"kind": MessageKind.SUBSCRIBE, "miniprogram_state": "beta"}, "miniprogram_state"),
        ({"kind": MessageKind.SUBSCRIBE, "lang": "fr_FR"}, "lang"),
        ({"kind": MessageKind.OA_SUBSCRIBE, "page": "pages/x"}, "page"),  # url is its page
        ({"kind": MessageKind.OA_SUBSCRIBE, "lang": "zh_CN"}, "lang"),
        ({"kind": MessageKind.OA_SUBSCRIBE, "miniprogram_state": "trial"}, "miniprogram_state"),
        ({"kind": MessageKind.OA_SUBSCRIBE, "url": "pages/x"}, "url"),  # a web URL
        ({"url": "javascript:alert(1)"}, "url"),
        ({"callback_url": "ftp://x"}, "callback_url"),
        ({"priority": "asap"}, "priority"),
    ],
)
def test_message_rules(kw: dict[str, Any], field: str) -> None:
    assert field_err(message_from, body(**kw), APP, NOW, new_id(), None) == field


def test_oa_subscribe_fields_kept() -> None:
    m = message_from(
        body(
            kind=MessageKind.OA_SUBSCRIBE,
            url="https://shop.example/o/1",
            miniprogram=MiniProgram("wx_mini", "pages/o"),
        ),
        APP,
        NOW,
        new_id(),
        None,
    )
    assert (m.kind, m.url, m.miniprogram, m.page) == (
        MessageKind.OA_SUBSCRIBE,
        "https://shop.example/o/1",
        MiniProgram("wx_mini", "pages/o"),
        None,
    )


def test_oa_subscribe_quota_defaults_to_the_template_one() -> None:
    assert APP.quota_for("oa_subscribe") == 100_000
    assert APP.quota_for("subscribe") == 10_000_000


def test_subscribe_fields_kept() -> None:
    m = message_from(
        body(kind=MessageKind.SUBSCRIBE, page="p/i", miniprogram_state="trial", lang="en_US"),
        APP,
        NOW,
        new_id(),
        None,
    )
    assert (m.kind, m.page, m.miniprogram_state, m.lang) == (
        MessageKind.SUBSCRIBE,
        "p/i",
        "trial",
        "en_US",
    )


def test_batch_recipient_data_overrides_shared() -> None:
    b = BatchIn(
        template_id="tpl",
        data={"a": "shared", "b": "shared"},
        recipients=[Recipient("o_1"), Recipient("o_2", {"b": "own"})],
    )
    batch, msgs = batch_from(b, APP, NOW, "batch1", 10)
    assert batch.total == 2 and {m.batch_id for m in msgs} == {"batch1"}
    assert msgs[0].data == {"a": {"value": "shared"}, "b": {"value": "shared"}}
    assert msgs[1].data == {"a": {"value": "shared"}, "b": {"value": "own"}}
    assert len({m.id for m in msgs}) == 2


def test_batch_limits_and_paths() -> None:
    many = BatchIn(template_id="t", recipients=[Recipient("o")] * 11)
    assert field_err(batch_from, many, APP, NOW, "b", 10) == "recipients"
    none = BatchIn(template_id="t", recipients=[])
    assert field_err(batch_from, none, APP, NOW, "b", 10) == "recipients"
    bad = BatchIn(template_id="t", recipients=[Recipient("o"), Recipient("o", {"k": None})])
    assert field_err(batch_from, bad, APP, NOW, "b", 10) == "recipients[1].data.k"


def test_new_ids_look_like_new_id() -> None:
    ids = new_ids(1000)
    assert len(set(ids)) == 1000
    assert all(len(i) == len(new_id()) and int(i, 16) >= 0 for i in ids)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"touser": 1}', "touser"),
        (b'{"template_id": "t", "data": {}}', "touser"),
        (b'{"touser": "a", "template_id": "t", "data": {}, "foo": 1}', "foo"),
        (
            b'{"touser": "a", "template_id": "t", "data": {}, "miniprogram": {"appid": 1}}',
            "miniprogram.appid",
        ),
        (b"[]", None),
    ],
)
def test_msgspec_error_paths(raw: bytes, field: str | None) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.json.decode(raw, type=MessageIn)
    assert field_of(info.value)[0] == field


def test_msgspec_nested_path() -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.json.decode(b'{"template_id":"t","recipients":[{"touser":5}]}', type=BatchIn)
    assert field_of(info.value)[0] == "recipients[0].touser"
