"""Sans-IO protocol: request bodies and answer classification, with literals only."""

from __future__ import annotations

import json

import msgspec
import pytest

from wxgate.errors import Disposition, OutcomeUnknown, WeChatError
from wxgate.models import Message, MessageKind, MiniProgram, TokenEntry
from wxgate.settings import AppSettings
from wxgate.wechat import protocol
from wxgate.wechat.protocol import SendAnswer

APP = AppSettings(name="shop", appid="wx_shop", secret="s3cr3t")
DATA = {"thing1": {"value": "Order 42"}, "amount2": {"value": "9.90", "color": "#173177"}}


def _message(**kw: object) -> Message:
    fields: dict[str, object] = {
        "id": "018f00aa11bb22cc33dd44ee",
        "app": "shop",
        "touser": "o_user",
        "template_id": "tpl_order",
        "data": DATA,
        "created_at": 1.0,
        "not_before": 1.0,
    }
    fields.update(kw)
    return msgspec.convert(fields, Message)


def test_template_body_minimal() -> None:
    path, body = protocol.build_send(_message())
    assert path == "/cgi-bin/message/template/send"
    assert json.loads(body) == {
        "touser": "o_user",
        "template_id": "tpl_order",
        "data": DATA,
        "client_msg_id": "018f00aa11bb22cc33dd44ee",
    }


def test_template_body_with_url_and_miniprogram() -> None:
    msg = _message(url="https://example.com/o/42")
    msg.miniprogram = MiniProgram(appid="wx_mini", pagepath="pages/order?id=42")
    _, body = protocol.build_send(msg)
    decoded = json.loads(body)
    assert decoded["url"] == "https://example.com/o/42"
    assert decoded["miniprogram"] == {"appid": "wx_mini", "pagepath": "pages/order?id=42"}
    assert decoded["client_msg_id"] == msg.id


def test_subscribe_body_omits_none_and_has_no_client_msg_id() -> None:
    msg = _message(kind="subscribe", page="pages/index", lang="en_US")
    assert msg.kind is MessageKind.SUBSCRIBE
    path, body = protocol.build_send(msg)
    assert path == "/cgi-bin/message/subscribe/send"
    assert json.loads(body) == {
        "touser": "o_user",
        "template_id": "tpl_order",
        "data": DATA,
        "page": "pages/index",
        "lang": "en_US",
    }
    msg.miniprogram_state = "trial"
    assert json.loads(protocol.build_send(msg)[1])["miniprogram_state"] == "trial"


def test_oa_subscribe_body_sends_url_as_page_and_no_client_msg_id() -> None:
    msg = _message(kind="oa_subscribe", url="https://example.com/o/42")
    assert msg.kind is MessageKind.OA_SUBSCRIBE
    path, body = protocol.build_send(msg)
    assert path == "/cgi-bin/message/subscribe/bizsend"
    assert json.loads(body) == {
        "touser": "o_user",
        "template_id": "tpl_order",
        "data": DATA,
        "page": "https://example.com/o/42",
    }
    msg.miniprogram = MiniProgram(appid="wx_mini", pagepath="pages/o")
    decoded = json.loads(protocol.build_send(msg)[1])
    assert decoded["miniprogram"] == {"appid": "wx_mini", "pagepath": "pages/o"}


def test_answer_without_msgid_is_a_success_with_none() -> None:
    assert protocol.check_send(protocol.parse_send(200, b'{"errcode":0,"errmsg":"ok"}')) is None


def test_non_ascii_data_round_trips() -> None:
    msg = _message(data={"thing1": {"value": "订单已发货 📦"}})
    assert json.loads(protocol.build_send(msg)[1])["data"]["thing1"]["value"] == "订单已发货 📦"


def test_parse_ok_with_64_bit_msgid() -> None:
    big = 2**62 + 12345
    answer = protocol.parse_send(200, b'{"errcode":0,"errmsg":"ok","msgid":%d}' % big)
    assert answer == SendAnswer(errcode=0, errmsg="ok", msgid=big)
    assert protocol.check_send(answer) == big


def test_parse_msgid_as_string() -> None:
    answer = protocol.parse_send(200, b'{"errcode":0,"errmsg":"ok","msgid":"3147483648"}')
    assert answer.msgid == 3147483648


def test_parse_missing_errcode_is_zero() -> None:
    assert protocol.parse_send(200, b'{"msgid":7}') == SendAnswer(0, "", 7)


def test_parse_error_answer_and_check() -> None:
    answer = protocol.parse_send(200, b'{"errcode":43004,"errmsg":"require subscribe rid: x"}')
    assert answer.errcode == 43004 and answer.msgid is None
    with pytest.raises(WeChatError) as info:
        protocol.check_send(answer)
    assert info.value.disposition is Disposition.DROP
    assert info.value.errcode == 43004


def test_check_send_token_error_asks_for_refresh() -> None:
    with pytest.raises(WeChatError) as info:
        protocol.check_send(SendAnswer(42001, "access_token expired", None))
    assert info.value.disposition is Disposition.REFRESH_TOKEN


@pytest.mark.parametrize("status", [500, 502, 503, 504, 404, 302])
def test_non_200_is_outcome_unknown(status: int) -> None:
    with pytest.raises(OutcomeUnknown) as info:
        protocol.parse_send(status, b"<html>Bad Gateway</html>")
    assert info.value.disposition is Disposition.RETRY
    assert str(status) in info.value.errmsg


@pytest.mark.parametrize("body", [b"", b"<html>", b"[1,2]", b'{"errcode":"x"}', b"{"])
def test_unparseable_200_is_outcome_unknown(body: bytes) -> None:
    with pytest.raises(OutcomeUnknown):
        protocol.parse_send(200, body)


def test_error_for_uses_context() -> None:
    assert protocol.error_for(40001, "x").disposition is Disposition.REFRESH_TOKEN
    assert protocol.error_for(40001, "x", "token").disposition is Disposition.CONFIG


def test_classic_token_request() -> None:
    path, query = protocol.build_classic_token(APP)
    assert path == "/cgi-bin/token"
    assert query == {"grant_type": "client_credential", "appid": "wx_shop", "secret": "s3cr3t"}


@pytest.mark.parametrize("force", [False, True])
def test_stable_token_request(force: bool) -> None:
    path, body = protocol.build_stable_token(APP, force_refresh=force)
    assert path == "/cgi-bin/stable_token"
    assert json.loads(body) == {
        "grant_type": "client_credential",
        "appid": "wx_shop",
        "secret": "s3cr3t",
        "force_refresh": force,
    }


def test_parse_token_ok() -> None:
    entry = protocol.parse_token(200, b'{"access_token":"ACCESS","expires_in":7200}', now=1000.0)
    assert entry == TokenEntry(access_token="ACCESS", expires_at=8200.0, fetched_at=1000.0)
    assert "ACCESS" not in repr(entry)


def test_parse_token_wrong_secret_is_config() -> None:
    with pytest.raises(WeChatError) as info:
        protocol.parse_token(200, b'{"errcode":40001,"errmsg":"invalid credential"}', now=0.0)
    assert info.value.disposition is Disposition.CONFIG


def test_parse_token_quota_is_throttle() -> None:
    with pytest.raises(WeChatError) as info:
        protocol.parse_token(200, b'{"errcode":45009,"errmsg":"reach max api daily quota"}', 0.0)
    assert info.value.disposition is Disposition.THROTTLE


@pytest.mark.parametrize(
    "body", [b"{}", b'{"access_token":"","expires_in":7200}', b'{"access_token":"A"}']
)
def test_parse_token_incomplete_is_retry(body: bytes) -> None:
    with pytest.raises(WeChatError) as info:
        protocol.parse_token(200, body, now=0.0)
    assert info.value.disposition is Disposition.RETRY


def test_parse_token_5xx() -> None:
    with pytest.raises(OutcomeUnknown):
        protocol.parse_token(503, b"", now=0.0)
