"""Callbacks: URL check, plain and AES pushes, receipts, and the hardened XML parser.

Known vectors are from wechatpy's tests/test_crypto.py (wechatpy/wechatpy, commit 3d56072,
CryptoTestCase: token "123456", EncodingAESKey "kWxPEV2U...", id "wx49f0ab532d5d035a"); the
scheme (random16 + length + msg + id, AES-256-CBC, 32-byte PKCS#7) is the same as the
Official Account safe mode.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from wxgate.errors import ConfigError
from wxgate.settings import AppSettings, callback_max_skew_s, from_dict
from wxgate.wechat import crypto
from wxgate.wechat.callback import (
    CallbackError,
    Receipt,
    normalise_status,
    open_push,
    parse_push,
    parse_xml,
    verify_url,
)

TOKEN = "cb_token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
NOW = 1_700_000_000
APP = AppSettings(name="shop", appid="wx_shop", secret="x", callback_token=TOKEN)
_APP_DICT = {"name": "shop", "appid": "wx_shop", "secret": "x", "callback_token": TOKEN}
AES_APP = AppSettings(
    name="shop", appid="wx_shop", secret="x", callback_token=TOKEN, encoding_aes_key=AES_KEY
)

# wechatpy tests/test_crypto.py, CryptoTestCase
WPY_TOKEN = "123456"
WPY_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
WPY_ID = "wx49f0ab532d5d035a"
WPY_REPLY = """<xml>
<MsgType><![CDATA[text]]></MsgType>
<Content><![CDATA[test]]></Content>
<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>
<ToUserName><![CDATA[messense]]></ToUserName>
<AgentID>1</AgentID>
<CreateTime>1411525903</CreateTime>
</xml>"""
WPY_REPLY_ENCRYPT = (
    "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBq"
    "GsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFh"
    "HZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX0"
    "5UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3"
    "WeK2XeFYFMNMpatF9XiKzHo3"
)
WPY_PUSH = (
    b"<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n<Encrypt><![CDATA["
    b"RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrs"
    b"TyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+B"
    b"iYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7v"
    b"XUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShy"
    b"qio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0="
    b"]]></Encrypt>\n<AgentID><![CDATA[1]]></AgentID>\n</xml>"
)


def _query(ts: int = NOW, nonce: str = "n0nce", token: str = TOKEN) -> dict[str, str]:
    return {
        "timestamp": str(ts),
        "nonce": nonce,
        "signature": crypto.signature(token, str(ts), nonce),
    }


def _template_push(
    status: str = "success", msgid_tag: str = "MsgID", msgid: int = 200163836
) -> bytes:
    return (
        "<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName>"
        "<FromUserName><![CDATA[o_user]]></FromUserName>"
        "<CreateTime>1395658920</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"
        f"<{msgid_tag}>{msgid}</{msgid_tag}>"
        f"<Status><![CDATA[{status}]]></Status></xml>"
    ).encode()


def _aes_query(encrypted: str, ts: int = NOW, nonce: str = "n0nce") -> dict[str, str]:
    return {
        "timestamp": str(ts),
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": crypto.signature(TOKEN, str(ts), nonce, encrypted),
        "signature": crypto.signature(TOKEN, str(ts), nonce),
    }


def _aes_body(encrypted: str) -> bytes:
    return (
        "<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    ).encode()


# ---------------------------------------------------------------- URL check


def test_verify_url_returns_echostr_verbatim() -> None:
    q = _query()
    echo = "  5837397749  +/= "
    assert verify_url(TOKEN, q["signature"], q["timestamp"], q["nonce"], echo) == echo


def test_verify_url_rejects_a_bad_signature() -> None:
    q = _query()
    with pytest.raises(CallbackError):
        verify_url("other", q["signature"], q["timestamp"], q["nonce"], "x")


# ---------------------------------------------------------------- plain pushes


def test_template_receipt() -> None:
    receipts = parse_push(APP, _query(), _template_push(), now=NOW)
    assert receipts == [
        Receipt(
            msgid=200163836,
            openid="o_user",
            status="success",
            event_key="o_user:1395658920:200163836",
            create_time=1395658920,
        )
    ]


def test_msgid_tag_is_case_insensitive_and_64_bit() -> None:
    big = 2**63 - 1
    [receipt] = parse_push(APP, _query(), _template_push(msgid_tag="MsgId", msgid=big), now=NOW)
    assert receipt.msgid == big


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("success", "success"),
        (" success\n", "success"),
        ("failed:user block", "failed:user block"),
        ("failed: user block", "failed:user block"),
        ("failed:  user   block ", "failed:user block"),
        ("failed: system failed", "failed: system failed"),
        ("failed:system failed", "failed: system failed"),
        ("failed", "failed"),
        ("something new", "something new"),
    ],
)
def test_status_normalisation(raw: str, expected: str) -> None:
    assert normalise_status(raw) == expected
    [receipt] = parse_push(APP, _query(), _template_push(status=raw), now=NOW)
    assert receipt.status == expected


def test_subscribe_msg_sent_event_single_and_repeated_list() -> None:
    body = (
        b"<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName>"
        b"<FromUserName><![CDATA[o_sub]]></FromUserName><CreateTime>1620963428</CreateTime>"
        b"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_sent_event]]></Event>"
        b"<SubscribeMsgSentEvent>"
        b"<List><TemplateId><![CDATA[t1]]></TemplateId><MsgID>1700827132819554304</MsgID>"
        b"<ErrorCode>0</ErrorCode><ErrorStatus><![CDATA[success]]></ErrorStatus></List>"
        b"<List><TemplateId><![CDATA[t2]]></TemplateId><MsgId>1700827132819554305</MsgId>"
        b"<ErrorCode>20001</ErrorCode><ErrorStatus><![CDATA[failed:user refuse]]></ErrorStatus>"
        b"</List><List><TemplateId>t3</TemplateId><MsgID>5</MsgID><ErrorCode>7</ErrorCode></List>"
        b"</SubscribeMsgSentEvent></xml>"
    )
    receipts = parse_push(APP, _query(), body, now=NOW)
    assert [(r.msgid, r.status) for r in receipts] == [
        (1700827132819554304, "success"),
        (1700827132819554305, "failed: user refuse"),
        (5, "failed: errorcode 7"),
    ]
    assert receipts[0].event_key == "o_sub:1620963428:1700827132819554304"
    assert {r.openid for r in receipts} == {"o_sub"}


def _json_sent_event(items: object) -> bytes:
    return json.dumps(
        {
            "ToUserName": "gh_sandbox",
            "FromUserName": "o_sub",
            "CreateTime": 1620963428,
            "MsgType": "event",
            "Event": "subscribe_msg_sent_event",
            "SubscribeMsgSentEvent": {"List": items},
        }
    ).encode()


def test_json_push_list_as_an_object_or_an_array() -> None:
    """Mini programs may choose JSON pushes: one item is an object, several an array."""
    one = {"TemplateId": "t1", "MsgID": "1700827132819554304", "ErrorCode": "0"}
    [r] = parse_push(APP, _query(), _json_sent_event(one), now=NOW)
    assert (r.msgid, r.status, r.openid, r.template_id) == (
        1700827132819554304,
        "success",
        "o_sub",
        "t1",
    )
    assert r.event_key == "o_sub:1620963428:1700827132819554304"
    two = [one, {"TemplateId": "t2", "MsgID": 5, "ErrorCode": 20001, "ErrorStatus": "failed"}]
    receipts = parse_push(APP, _query(), b"  " + _json_sent_event(two), now=NOW)
    assert [(r.msgid, r.template_id, r.status) for r in receipts] == [
        (1700827132819554304, "t1", "success"),
        (5, "t2", "failed"),
    ]


def test_json_and_xml_give_the_same_template_receipt() -> None:
    body = json.dumps(
        {
            "ToUserName": "gh_sandbox",
            "FromUserName": "o_user",
            "CreateTime": NOW,
            "MsgType": "event",
            "Event": "TEMPLATESENDJOBFINISH",
            "MsgID": 200163836,
            "Status": "success",
        }
    ).encode()
    [r] = parse_push(APP, _query(), body, now=NOW)
    assert (r.msgid, r.status, r.openid, r.template_id) == (200163836, "success", "o_user", None)


@pytest.mark.parametrize("body", [b"{not json", b'{"a": ', b"[1]", b'{"a": {"b": 1}} x'])
def test_malformed_json_is_rejected(body: bytes) -> None:
    with pytest.raises(CallbackError):
        parse_push(APP, _query(), body, now=NOW)


def test_deeply_nested_json_is_rejected() -> None:
    deep: object = "x"
    for _ in range(20):
        deep = {"k": deep}
    with pytest.raises(CallbackError, match="nested"):
        parse_push(APP, _query(), json.dumps({"MsgType": "event", "x": deep}).encode(), now=NOW)


@pytest.mark.parametrize(
    "body",
    [
        b"<xml><MsgType>event</MsgType><Event>subscribe</Event>"
        b"<FromUserName>o</FromUserName><CreateTime>1</CreateTime></xml>",
        b"<xml><MsgType>text</MsgType><Content>hi</Content></xml>",
        b"<xml/>",
    ],
)
def test_other_events_carry_no_receipts(body: bytes) -> None:
    assert parse_push(APP, _query(), body, now=NOW) == []


def test_receipt_without_msgid_is_rejected() -> None:
    body = _template_push().replace(b"<MsgID>200163836</MsgID>", b"")
    with pytest.raises(CallbackError, match="msgid"):
        parse_push(APP, _query(), body, now=NOW)


def test_bad_signature_is_rejected() -> None:
    q = _query()
    q["signature"] = "0" * 40
    with pytest.raises(CallbackError, match="signature"):
        parse_push(APP, q, _template_push(), now=NOW)
    with pytest.raises(CallbackError):
        parse_push(APP, {}, _template_push(), now=NOW)


def test_timestamp_window() -> None:
    old = _query(ts=NOW - 90_000)
    with pytest.raises(CallbackError, match="window"):
        parse_push(APP, old, _template_push(), now=NOW)
    future = _query(ts=NOW + 90_000)
    with pytest.raises(CallbackError, match="window"):
        parse_push(APP, future, _template_push(), now=NOW)
    assert parse_push(APP, old, _template_push(), now=NOW, max_age_s=None)
    assert parse_push(APP, _query(ts=NOW - 60), _template_push(), now=NOW, max_age_s=300)
    with pytest.raises(CallbackError):
        parse_push(APP, _query(ts=NOW - 301), _template_push(), now=NOW, max_age_s=300)


# ---------------------------------------------------------------- hardened XML

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<xml><MsgType>&lol2;</MsgType></xml>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<xml><FromUserName>&e;</FromUserName></xml>"""


@pytest.mark.parametrize(
    "body", [BILLION_LAUGHS, XXE, b"<!doctype xml><xml/>", b"<xml><!ENTITY x 'y'></xml>"]
)
def test_declarations_are_rejected(body: bytes) -> None:
    with pytest.raises(CallbackError, match="declarations"):
        parse_xml(body)
    with pytest.raises(CallbackError):
        parse_push(APP, _query(), body, now=NOW)


def test_utf16_cannot_smuggle_a_doctype() -> None:
    body = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x><xml/>'.encode("utf-16")
    with pytest.raises(CallbackError):
        parse_xml(body)


def test_size_is_bounded() -> None:
    with pytest.raises(CallbackError, match="bytes"):
        parse_xml(b"<xml>" + b"a" * 70_000 + b"</xml>")
    assert parse_xml(b"<xml>ok</xml>", max_bytes=100).text == "ok"


@pytest.mark.parametrize("body", [b"<xml>", b"not xml", b"\xff\xfe<xml/>", b""])
def test_malformed_is_rejected(body: bytes) -> None:
    with pytest.raises(CallbackError):
        parse_xml(body)


def test_cdata_and_comments_are_fine() -> None:
    root = parse_xml(b"<xml><!-- hi --><A><![CDATA[<b>&amp;]]></A></xml>")
    assert root.findtext("A") == "<b>&amp;"


# ---------------------------------------------------------------- AES safe mode


def test_aes_push_round_trip() -> None:
    encrypted = crypto.encrypt(AES_KEY, "wx_shop", _template_push(msgid=42))
    receipts = parse_push(AES_APP, _aes_query(encrypted), _aes_body(encrypted), now=NOW)
    assert [(r.msgid, r.status) for r in receipts] == [(42, "success")]


def test_aes_push_for_another_appid_is_rejected() -> None:
    encrypted = crypto.encrypt(AES_KEY, "wx_other", _template_push())
    with pytest.raises(CallbackError, match="decrypt"):
        parse_push(AES_APP, _aes_query(encrypted), _aes_body(encrypted), now=NOW)


def test_aes_push_with_a_bad_msg_signature_is_rejected() -> None:
    encrypted = crypto.encrypt(AES_KEY, "wx_shop", _template_push())
    q = _aes_query(encrypted)
    q["msg_signature"] = q["signature"]  # the plain signature does not cover Encrypt
    with pytest.raises(CallbackError, match="msg_signature"):
        parse_push(AES_APP, q, _aes_body(encrypted), now=NOW)


def test_aes_push_without_a_key_or_encrypt_is_rejected() -> None:
    encrypted = crypto.encrypt(AES_KEY, "wx_shop", _template_push())
    with pytest.raises(CallbackError, match="encoding_aes_key"):
        parse_push(APP, _aes_query(encrypted), _aes_body(encrypted), now=NOW)
    with pytest.raises(CallbackError, match="Encrypt"):
        parse_push(AES_APP, _aes_query(""), b"<xml><ToUserName>x</ToUserName></xml>", now=NOW)


def test_aes_inner_xml_is_hardened_too() -> None:
    encrypted = crypto.encrypt(AES_KEY, "wx_shop", BILLION_LAUGHS)
    with pytest.raises(CallbackError, match="declarations"):
        parse_push(AES_APP, _aes_query(encrypted), _aes_body(encrypted), now=NOW)


def test_known_vector_encrypt() -> None:
    encrypted = crypto.encrypt(WPY_KEY, WPY_ID, WPY_REPLY.encode(), nonce16=b"1234567890123456")
    assert encrypted == WPY_REPLY_ENCRYPT
    signature = crypto.signature(WPY_TOKEN, "1411525903", "461056294", encrypted)
    assert signature == "407518b7649e86ef23978113f92d27afa9296533"


def test_known_vector_decrypt_through_parse_push() -> None:
    app = AppSettings(
        name="wpy", appid=WPY_ID, secret="x", callback_token=WPY_TOKEN, encoding_aes_key=WPY_KEY
    )
    query = {
        "timestamp": "1411525903",
        "nonce": "461056294",
        "encrypt_type": "aes",
        "msg_signature": "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
    }
    # A text message, not an event: verified and decrypted, no receipts.
    assert parse_push(app, query, WPY_PUSH, now=1411525903) == []
    encrypted = WPY_PUSH.split(b"CDATA[")[2].split(b"]]")[0].decode()
    plain = crypto.decrypt(WPY_KEY, WPY_ID, encrypted)
    assert b"<Content><![CDATA[test]]></Content>" in plain
    assert b"<MsgId>4363689963896700987</MsgId>" in plain
    query["msg_signature"] = "74d92dfeb87ba7c714f89d98870ae5eb62dff26e"
    with pytest.raises(CallbackError):
        parse_push(app, query, WPY_PUSH, now=1411525903)


def test_our_encrypt_our_decrypt() -> None:
    for size in (0, 1, 31, 32, 33, 1000):
        message = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        assert crypto.decrypt(AES_KEY, "wx_shop", crypto.encrypt(AES_KEY, "wx_shop", message)) == (
            message
        )


# ---------------------------------------------------------------- issue 11: replay and forgery


def test_plain_push_to_an_aes_app_is_forbidden() -> None:
    with pytest.raises(CallbackError, match="AES safe mode") as info:
        parse_push(AES_APP, _query(), _template_push(), now=NOW)
    assert info.value.forbidden


def test_default_window_is_five_minutes_both_ways() -> None:
    assert parse_push(APP, _query(ts=NOW - 300), _template_push(), now=NOW)
    assert parse_push(APP, _query(ts=NOW + 300), _template_push(), now=NOW)
    for ts in (NOW - 301, NOW + 301):
        with pytest.raises(CallbackError, match="window") as info:
            parse_push(APP, _query(ts=ts), _template_push(), now=NOW)
        assert info.value.forbidden


def test_open_push_names_its_nonce_and_digest() -> None:
    push = open_push(APP, _query(nonce="n1"), _template_push(), now=NOW)
    again = open_push(APP, _query(nonce="n1"), _template_push(), now=NOW)
    forged = open_push(APP, _query(nonce="n1"), _template_push(status="failed: x"), now=NOW)
    assert (push.timestamp, push.nonce) == (NOW, "n1")
    assert push.digest == again.digest != forged.digest
    # In safe mode the digest is of the event inside: a re-encrypted retry matches.
    first = crypto.encrypt(AES_KEY, "wx_shop", _template_push())
    second = crypto.encrypt(AES_KEY, "wx_shop", _template_push())
    assert first != second
    a = open_push(AES_APP, _aes_query(first), _aes_body(first), now=NOW)
    b = open_push(AES_APP, _aes_query(second), _aes_body(second), now=NOW)
    assert a.digest == b.digest == push.digest


@pytest.mark.parametrize("msgid", ["18446744073709551616", "-1", "+1", "1_0", " ", "0x10"])
def test_msgid_outside_u64_is_rejected(msgid: str) -> None:
    body = _template_push().replace(b"200163836", msgid.encode())
    with pytest.raises(CallbackError, match="msgid") as info:
        parse_push(APP, _query(), body, now=NOW)
    assert not info.value.forbidden  # signed but unreadable: 400


@pytest.mark.parametrize("msgid", [0, 2**63, 2**64 - 1])
def test_every_u64_msgid_is_read(msgid: int) -> None:
    body = _template_push(msgid=msgid)
    assert [r.msgid for r in parse_push(APP, _query(), body, now=NOW)] == [msgid]


@pytest.mark.parametrize("signature", ["\u00e9" * 40, "\udcff", "0" * 39 + "\u0660"])
def test_non_ascii_signatures_do_not_raise(signature: str) -> None:
    assert not crypto.check_signature(signature, TOKEN, str(NOW), "n")
    q = {**_query(), "signature": signature}
    with pytest.raises(CallbackError, match="signature"):
        parse_push(APP, q, _template_push(), now=NOW)


@pytest.mark.parametrize(
    ("settings", "where"),
    [
        ({"server": {"callback_max_skew_s": 0}}, "server.callback_max_skew_s"),
        ({"server": {"callback_max_skew_s": 700_000}}, "server.callback_max_skew_s"),
        ({"apps": [{**_APP_DICT, "callback_max_skew_s": -1}]}, "apps.shop.callback_max_skew_s"),
    ],
)
def test_callback_window_settings_are_validated(settings: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        from_dict(settings)


def test_callback_window_per_app_or_server() -> None:
    s = from_dict(
        {
            "server": {"callback_max_skew_s": 120},
            "apps": [_APP_DICT, {**_APP_DICT, "name": "b", "callback_max_skew_s": 30}],
        }
    )
    assert [callback_max_skew_s(s, a) for a in s.apps] == [120, 30]
    assert callback_max_skew_s(from_dict({"apps": [_APP_DICT]}), APP) == 300


def test_receipt_without_fromusername_is_rejected() -> None:
    body = _template_push().replace(b"<FromUserName><![CDATA[o_user]]></FromUserName>", b"")
    with pytest.raises(CallbackError, match="FromUserName"):
        parse_push(APP, _query(), body, now=NOW)
