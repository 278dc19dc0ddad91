"""wxgate.sdk.protocol, the SDK's sans-IO core, with literals: what each call sends and how
answers decode (typed) or raise."""

from __future__ import annotations

import json

import pytest

from wxgate.models import Accepted, Status
from wxgate.sdk import GatewayError, protocol


def test_send_builds_a_post_with_a_generated_idempotency_key() -> None:
    call = protocol.send("o_u", "tpl", {"k": "v"}, app="a")
    assert (call.method, call.path, call.type, call.retry_safe) == (
        "POST", "/v1/messages", Accepted, True,
    )  # fmt: skip
    assert call.body is not None
    body = json.loads(call.body)
    assert body["touser"] == "o_u" and body["data"] == {"k": "v"} and body["app"] == "a"
    assert len(body["idempotency_key"]) == 32
    again = protocol.send("o_u", "tpl", {}, idempotency_key="mine")
    assert again.body is not None and json.loads(again.body)["idempotency_key"] == "mine"


def test_paths_escape_ids_and_drop_empty_filters() -> None:
    assert protocol.get_message("a/b").path == "/v1/messages/a%2Fb"
    assert protocol.batch_action("b 1", "pause").path == "/v1/batches/b%201/pause"
    assert protocol.dead_letters(None, 40003, None, 10).path == (
        "/v1/dead-letters?errcode=40003&limit=10"
    )
    upload = protocol.upload_batch("tpl", {"x": "1"}, app=None, rate_per_s=5)
    assert upload.path == "/v1/batches?template_id=tpl&rate_per_s=5&data=%7B%22x%22%3A%221%22%7D"
    assert not upload.retry_safe and not protocol.send_batch("tpl", ["o"], None).retry_safe


def test_parse_decodes_2xx_into_the_calls_type() -> None:
    call = protocol.cancel("m1")
    out = protocol.parse(call, 200, b'{"id":"m1","status":"cancelled"}', None)
    assert out == Accepted("m1", Status.CANCELLED)


def test_parse_raises_gateway_error_from_the_error_body_or_the_text() -> None:
    call = protocol.stats()
    body = b'{"error":"rate_limited","message":"slow down","field":null}'
    with pytest.raises(GatewayError) as info:
        protocol.parse(call, 429, body, "2.5")
    assert (info.value.status, info.value.error, info.value.retry_after_s) == (
        429, "rate_limited", 2.5,
    )  # fmt: skip
    with pytest.raises(GatewayError) as info:
        protocol.parse(call, 502, b"Bad Gateway", "soon")
    assert (info.value.error, info.value.message, info.value.retry_after_s) == (
        "http_502", "Bad Gateway", None,
    )  # fmt: skip
