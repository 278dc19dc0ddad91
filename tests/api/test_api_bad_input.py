"""Bad input: the right 4xx, a body naming the field, and nothing stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from support.api import AUTH, KEY, ApiRig, make_settings, msg_body, running_gateway

LIMIT = 2048
BATCH_LIMIT = 1_000_000


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[ApiRig]:
    """A gateway with a small body limit, to test 413 without megabytes of traffic."""
    settings = make_settings(max_body_bytes=LIMIT, max_batch_body_bytes=BATCH_LIMIT)
    async with running_gateway(tmp_path / "wx.db", settings) as g:
        yield g


def raw(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


MESSAGE_CASES: list[tuple[str, bytes, str | None]] = [
    ("malformed", b'{"touser": "a", ', None),
    ("not json", b"touser=a&template_id=t", None),
    ("empty", b"", None),
    ("array", b"[]", None),
    ("trailing garbage", raw(msg_body()) + b"}", None),
    ("not utf-8", b'{"touser": "\xff\xfe"}', None),
    ("wrong type", raw(msg_body(touser=12)), "touser"),
    ("empty touser", raw(msg_body(touser="")), "touser"),
    ("long touser", raw(msg_body(touser="o" * 129)), "touser"),
    ("missing field", raw({"touser": "a", "data": {}}), "template_id"),
    ("missing data", raw({"touser": "a", "template_id": "t"}), "data"),
    ("unknown field", raw(msg_body(colour="red")), "colour"),
    ("data not object", raw(msg_body(data="x")), "data"),
    ("data value null", raw(msg_body(data={"k": None})), "data.k"),
    ("data value list", raw(msg_body(data={"k": [1]})), "data.k"),
    ("data value bool", raw(msg_body(data={"k": {"value": False}})), "data.k.value"),
    ("data bad color", raw(msg_body(data={"k": {"value": "v", "color": 1}})), "data.k.color"),
    ("unknown app", raw(msg_body(app="nope")), "app"),
    ("bad kind", raw(msg_body(kind="sms")), "kind"),
    ("send_at string", raw(msg_body(send_at="tomorrow")), "send_at"),
    ("send_at huge", raw(msg_body(send_at=1e300)), "send_at"),
    ("bad miniprogram", raw(msg_body(miniprogram={"pagepath": "x"})), "miniprogram.appid"),
    ("page on template", raw(msg_body(page="pages/i")), "page"),
    ("idempotency key empty", raw(msg_body(idempotency_key="")), "idempotency_key"),
]


@pytest.mark.parametrize(
    ("name", "body", "field"), MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES]
)
async def test_bad_message_is_400_and_stores_nothing(
    rig: ApiRig, name: str, body: bytes, field: str | None
) -> None:
    before = await rig.snapshot()
    resp = await rig.client.post(
        "/v1/messages", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    got = await resp.json()
    assert resp.status == 400, got
    assert got["error"] == "invalid_request" and got["field"] == field and got["message"]
    if field is None and name in ("malformed", "not json", "trailing garbage"):
        assert got["message"].startswith("malformed JSON")
    assert await rig.snapshot() == before


async def test_header_idempotency_key_conflicting_with_body(rig: ApiRig) -> None:
    before = await rig.snapshot()
    status, got = await rig.post(
        "/v1/messages", msg_body(idempotency_key="a"), headers={"Idempotency-Key": "b"}
    )
    assert status == 400 and got["field"] == "idempotency_key"
    assert await rig.snapshot() == before


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": "Bearer "},
        {"Authorization": KEY},
    ],
)
async def test_missing_or_bad_key_is_401(rig: ApiRig, headers: dict[str, str]) -> None:
    before = await rig.snapshot()
    resp = await rig.client.post("/v1/messages", json=msg_body(), headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = await resp.json()
    assert body["error"] == "unauthorized"
    # It names the header and scheme to send, and never echoes what was sent.
    assert "Authorization: Bearer <key>" in body["message"]
    assert KEY not in body["message"] and "wrong-key" not in body["message"]
    for path in ("/v1/stats", "/v1/messages/x", "/v1/dead-letters", "/v1/batches/x"):
        assert (await rig.client.get(path, headers=headers)).status == 401
    assert await rig.snapshot() == before


async def test_xml_content_type_is_415(rig: ApiRig) -> None:
    before = await rig.snapshot()
    resp = await rig.client.post(
        "/v1/messages", data=raw(msg_body()), headers={**AUTH, "Content-Type": "text/xml"}
    )
    assert resp.status == 415 and (await resp.json())["error"] == "unsupported_media_type"
    assert await rig.snapshot() == before


async def test_lenient_content_types_are_accepted(rig: ApiRig) -> None:
    for ctype in (None, "application/json; charset=utf-8", "application/x-www-form-urlencoded"):
        headers = dict(AUTH)
        if ctype:
            headers["Content-Type"] = ctype
        resp = await rig.client.post("/v1/messages", data=raw(msg_body()), headers=headers)
        assert resp.status == 202, ctype


async def test_oversized_by_content_length_is_413(small: ApiRig) -> None:
    before = await small.snapshot()
    big = raw(msg_body(data={"k": "x" * LIMIT}))
    resp = await small.client.post("/v1/messages", data=big, headers=AUTH)
    assert resp.status == 413 and (await resp.json())["error"] == "payload_too_large"
    assert await small.snapshot() == before


async def _chunks(payload: bytes, size: int = 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(payload), size):
        yield payload[i : i + size]


@pytest.mark.parametrize("size", [LIMIT * 2, BATCH_LIMIT * 2])
async def test_oversized_chunked_is_413(small: ApiRig, size: int) -> None:
    """Over the route limit, and over the Application's client_max_size while reading."""
    before = await small.snapshot()
    big = raw(msg_body(data={"k": "x" * size}))
    resp = await small.client.post("/v1/messages", data=_chunks(big, 65536), headers=AUTH)
    assert resp.status == 413, await resp.text()
    assert (await resp.json())["error"] == "payload_too_large"
    assert await small.snapshot() == before


async def test_batch_over_recipient_limit(rig: ApiRig) -> None:
    before = await rig.snapshot()
    recipients = [{"touser": f"o_{i:06d}"} for i in range(10_001)]
    status, got = await rig.post(
        "/v1/batches", {"template_id": "tpl", "data": {"k": "v"}, "recipients": recipients}
    )
    assert status == 400 and got["field"] == "recipients" and "10000" in got["message"]
    assert await rig.snapshot() == before


BATCH_CASES: list[tuple[str, Any, str | None]] = [
    ("no recipients", {"template_id": "t", "recipients": []}, "recipients"),
    ("missing recipients", {"template_id": "t"}, "recipients"),
    (
        "bad recipient",
        {"template_id": "t", "recipients": [{"touser": "a"}, {"touser": 5}]},
        "recipients[1].touser",
    ),
    (
        "bad recipient data",
        {"template_id": "t", "recipients": [{"touser": "a", "data": {"k": []}}]},
        "recipients[0].data.k",
    ),
    (
        "unknown recipient field",
        {"template_id": "t", "recipients": [{"touser": "a", "x": 1}]},
        "recipients[0].x",
    ),
    ("unknown app", {"app": "x", "template_id": "t", "recipients": [{"touser": "a"}]}, "app"),
]


@pytest.mark.parametrize(("name", "body", "field"), BATCH_CASES, ids=[c[0] for c in BATCH_CASES])
async def test_bad_batch_is_400_and_stores_nothing(
    rig: ApiRig, name: str, body: Any, field: str | None
) -> None:
    before = await rig.snapshot()
    status, got = await rig.post("/v1/batches", body)
    assert status == 400 and got["field"] == field, got
    assert await rig.snapshot() == before


async def test_unknown_route_and_method(rig: ApiRig) -> None:
    resp = await rig.client.get("/v2/nothing", headers=AUTH)
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    resp = await rig.client.put("/v1/messages", json=msg_body(), headers=AUTH)
    assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"]


async def test_bad_query_and_requeue_input(rig: ApiRig) -> None:
    for query, field in (
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("errcode=x", "errcode"),
        ("app=nope", "app"),
    ):
        status, got = await rig.get(f"/v1/dead-letters?{query}")
        assert status == 400 and got["field"] == field, query
    status, got = await rig.post("/v1/dead-letters/requeue", {})
    assert status == 400 and got["field"] == "ids"
    status, got = await rig.post("/v1/dead-letters/requeue", {"ids": "abc"})
    assert status == 400 and got["field"] == "ids"
