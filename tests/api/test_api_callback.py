"""GET|POST /wechat/callback/{app}: URL check and receipts, plain and AES safe mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from support.api import AES_KEY, SHOP, ApiRig, make_settings, msg_body, running_gateway
from wxgate.models import SendResult
from wxgate.wechat import crypto

MSGID = 2**60 + 12345


def receipt_xml(msgid: int, status: str, create_time: int) -> bytes:
    return (
        "<xml><ToUserName><![CDATA[gh_shop]]></ToUserName>"
        "<FromUserName><![CDATA[o_user_1]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"
        f"<MsgID>{msgid}</MsgID><Status><![CDATA[{status}]]></Status></xml>"
    ).encode()


def signed(rig: ApiRig, token: str = SHOP.callback_token) -> dict[str, str]:
    ts, nonce = str(int(rig.clock.now())), "n0nce"
    return {"timestamp": ts, "nonce": nonce, "signature": crypto.signature(token, ts, nonce)}


@pytest.fixture
async def plain_gw(tmp_path: Path) -> AsyncIterator[ApiRig]:
    """The shop app in WeChat's plain mode (no encoding_aes_key): an app with a key takes AES
    pushes only, so plain pushes are tested here."""
    plain = msgspec.structs.replace(SHOP, encoding_aes_key=None)
    async with running_gateway(tmp_path / "plain.db", make_settings([plain])) as g:
        yield g


async def _sent_message(rig: ApiRig) -> str:
    _, body = await rig.post("/v1/messages", msg_body())
    [m] = await rig.store.lease(10, 30.0, rig.clock.now())
    assert await rig.store.ack(m.id, m.lease_token, SendResult(MSGID, rig.clock.now()))
    return str(body["id"])


async def test_url_verification(rig: ApiRig) -> None:
    q = {**signed(rig), "echostr": "echo 123"}
    resp = await rig.client.get("/wechat/callback/shop", params=q)
    assert resp.status == 200 and await resp.text() == "echo 123"
    assert resp.content_type == "text/plain"
    bad = {**q, "signature": "0" * 40}
    resp = await rig.client.get("/wechat/callback/shop", params=bad)
    assert resp.status == 403 and "echo" not in await resp.text()
    resp = await rig.client.get("/wechat/callback/nope", params=q)
    assert resp.status == 404


async def test_plain_receipt_marks_delivered(plain_gw: ApiRig) -> None:
    msg_id = await _sent_message(plain_gw)
    body = receipt_xml(MSGID, "success", int(plain_gw.clock.now()))
    resp = await plain_gw.client.post("/wechat/callback/shop", params=signed(plain_gw), data=body)
    assert resp.status == 200 and await resp.text() == "success"
    _, got = await plain_gw.get(f"/v1/messages/{msg_id}")
    assert got["status"] == "delivered" and got["receipt"] == "success"
    # WeChat retries the same push: still "success", nothing changes.
    resp = await plain_gw.client.post("/wechat/callback/shop", params=signed(plain_gw), data=body)
    assert resp.status == 200 and await resp.text() == "success"


async def test_aes_receipt_marks_blocked(rig: ApiRig) -> None:
    msg_id = await _sent_message(rig)
    inner = receipt_xml(MSGID, "failed:user block", int(rig.clock.now()))
    encrypted = crypto.encrypt(AES_KEY, SHOP.appid, inner)
    ts, nonce = str(int(rig.clock.now())), "n2"
    query = {
        "timestamp": ts,
        "nonce": nonce,
        "encrypt_type": "aes",
        "signature": crypto.signature(SHOP.callback_token, ts, nonce),
        "msg_signature": crypto.signature(SHOP.callback_token, ts, nonce, encrypted),
    }
    outer = f"<xml><ToUserName>gh_shop</ToUserName><Encrypt>{encrypted}</Encrypt></xml>".encode()
    resp = await rig.client.post("/wechat/callback/shop", params=query, data=outer)
    assert resp.status == 200 and await resp.text() == "success"
    _, got = await rig.get(f"/v1/messages/{msg_id}")
    assert got["status"] == "blocked"


async def test_bad_signature_is_403_and_records_nothing(plain_gw: ApiRig) -> None:
    msg_id = await _sent_message(plain_gw)
    before = await plain_gw.snapshot()
    body = receipt_xml(MSGID, "success", int(plain_gw.clock.now()))
    forged = signed(plain_gw, token="not_the_token")
    resp = await plain_gw.client.post("/wechat/callback/shop", params=forged, data=body)
    assert resp.status == 403
    assert await plain_gw.snapshot() == before
    _, got = await plain_gw.get(f"/v1/messages/{msg_id}")
    assert got["status"] == "sent"


async def test_malformed_xml_is_400_and_unknown_app_404(plain_gw: ApiRig) -> None:
    before = await plain_gw.snapshot()
    resp = await plain_gw.client.post(
        "/wechat/callback/shop", params=signed(plain_gw), data=b"<xml><oops"
    )
    assert resp.status == 400
    resp = await plain_gw.client.post(
        "/wechat/callback/nope", params=signed(plain_gw), data=b"<xml/>"
    )
    assert resp.status == 404
    doctype = b'<!DOCTYPE x [<!ENTITY a "b">]><xml>&a;</xml>'
    resp = await plain_gw.client.post(
        "/wechat/callback/shop", params=signed(plain_gw), data=doctype
    )
    assert resp.status == 400
    assert await plain_gw.snapshot() == before


async def test_other_events_are_acknowledged(plain_gw: ApiRig) -> None:
    body = (
        b"<xml><FromUserName>o_1</FromUserName><CreateTime>1</CreateTime>"
        b"<MsgType>event</MsgType><Event>subscribe</Event></xml>"
    )
    resp = await plain_gw.client.post("/wechat/callback/shop", params=signed(plain_gw), data=body)
    assert resp.status == 200 and await resp.text() == "success"


async def test_oversized_callback_is_413(rig: ApiRig) -> None:
    before = await rig.snapshot()
    big = b"<xml>" + b"x" * 70_000 + b"</xml>"
    resp = await rig.client.post("/wechat/callback/shop", params=signed(rig), data=big)
    assert resp.status == 413
    assert await rig.snapshot() == before
