"""Secrets never leave the client in error text."""

from __future__ import annotations

from wxgate.wechat.client import scrub


def test_scrub_access_token_and_secret() -> None:
    text = (
        "Cannot connect to http://h/cgi-bin/message/template/send?access_token=ABC.def-123&x=1 "
        "and /cgi-bin/token?grant_type=client_credential&appid=wx1&secret=S3CR3T"
    )
    cleaned = scrub(text)
    assert "ABC.def-123" not in cleaned and "S3CR3T" not in cleaned
    assert "access_token=***&x=1" in cleaned
    assert "appid=wx1&secret=***" in cleaned


def test_scrub_leaves_other_text() -> None:
    assert scrub("Connection reset by peer") == "Connection reset by peer"
