"""wxgate.wechat.protocol: building a send, parsing and classifying the answer (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import make_message
from wxgate.models import MessageKind
from wxgate.settings import AppSettings
from wxgate.wechat import protocol

OK_ANSWER = b'{"errcode":0,"errmsg":"ok","msgid":1795732461481001}'
ERR_ANSWER = b'{"errcode":43004,"errmsg":"require subscribe rid: 6573a1b2-1f2e3d4c-5b6a7980"}'
TOKEN_ANSWER = b'{"access_token":"ACCESS_TOKEN_0123456789abcdef0123456789abcdef","expires_in":7200}'
APP = AppSettings(name="bench", appid="wx_bench", secret="bench_secret")


@pytest.mark.benchmark(group="protocol")
def test_build_send_template(benchmark: Any) -> None:
    message = make_message(1)
    path, body = benchmark(protocol.build_send, message)
    assert path == protocol.TEMPLATE_SEND_PATH and message.id.encode() in body


@pytest.mark.benchmark(group="protocol")
def test_build_send_subscribe(benchmark: Any) -> None:
    message = make_message(1, MessageKind.SUBSCRIBE)
    path, _ = benchmark(protocol.build_send, message)
    assert path == protocol.SUBSCRIBE_SEND_PATH


@pytest.mark.benchmark(group="protocol")
def test_parse_and_check_ok(benchmark: Any) -> None:
    def parse() -> int | None:
        return protocol.check_send(protocol.parse_send(200, OK_ANSWER))

    assert benchmark(parse) == 1795732461481001


@pytest.mark.benchmark(group="protocol")
def test_parse_and_classify_error(benchmark: Any) -> None:
    def parse() -> object:
        try:
            protocol.check_send(protocol.parse_send(200, ERR_ANSWER))
        except protocol.WeChatError as exc:
            return exc.disposition
        raise AssertionError("no error raised")

    assert benchmark(parse) is not None


@pytest.mark.benchmark(group="protocol")
def test_build_stable_token(benchmark: Any) -> None:
    path, _ = benchmark(protocol.build_stable_token, APP, False)
    assert path == protocol.STABLE_TOKEN_PATH


@pytest.mark.benchmark(group="protocol")
def test_parse_token(benchmark: Any) -> None:
    entry = benchmark(protocol.parse_token, 200, TOKEN_ANSWER, 1_700_000_000.0)
    assert entry.expires_at == 1_700_007_200.0
