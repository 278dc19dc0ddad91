"""The errcode table: every code in docs/wechat-api.md §4 lands on its disposition
(docs/architecture.md §5.4)."""

from __future__ import annotations

import pytest

from wxgate.errors import BadTokenEndpoint, NotSent, OutcomeUnknown, TransportError
from wxgate.errors import Disposition as D
from wxgate.policy.errcodes import config_pause_s, describe, disposition, known_codes

SEND_TABLE = {
    0: D.OK,
    -1: D.RETRY,
    40001: D.REFRESH_TOKEN,
    40014: D.REFRESH_TOKEN,
    42001: D.REFRESH_TOKEN,
    45009: D.THROTTLE,
    45011: D.THROTTLE,
    40003: D.DROP,
    43004: D.DROP,
    43019: D.DROP,
    43101: D.DROP,
    47003: D.DROP,
    41028: D.DROP,
    41029: D.DROP,
    44002: D.DROP,
    47001: D.DROP,
    40036: D.DROP,
    40037: D.DROP,
    41030: D.DROP,
    48001: D.CONFIG,
    48004: D.CONFIG,
    50002: D.CONFIG,
    40164: D.CONFIG,
    40013: D.CONFIG,
    40125: D.CONFIG,
    40002: D.CONFIG,
    43100: D.CONFIG,
    40243: D.CONFIG,
    61004: D.CONFIG,
    41002: D.CONFIG,
    41004: D.CONFIG,
    45103: D.CONFIG,
    45109: D.CONFIG,
    89501: D.CONFIG,
    89503: D.CONFIG,
    89506: D.CONFIG,
    89507: D.CONFIG,
    50005: D.DROP,
    -6: D.CONFIG,
}


@pytest.mark.parametrize(("errcode", "expected"), sorted(SEND_TABLE.items()))
def test_send_context(errcode: int, expected: D) -> None:
    assert disposition(errcode) is expected
    assert disposition(errcode, "send") is expected


def test_40001_from_the_token_endpoint_is_a_wrong_secret_not_a_refresh() -> None:
    assert disposition(40001, "token") is D.CONFIG


@pytest.mark.parametrize("errcode", [40014, 42001])
def test_token_codes_never_ask_the_token_endpoint_to_refresh_itself(errcode: int) -> None:
    assert disposition(errcode, "token") is not D.REFRESH_TOKEN


@pytest.mark.parametrize(
    ("errcode", "expected"),
    [
        (0, D.OK),
        (-1, D.RETRY),
        (40013, D.CONFIG),
        (40125, D.CONFIG),
        (40164, D.CONFIG),
        (40002, D.CONFIG),
        (45009, D.THROTTLE),
        (45011, D.THROTTLE),
    ],
)
def test_token_context(errcode: int, expected: D) -> None:
    assert disposition(errcode, "token") is expected


@pytest.mark.parametrize("errcode", [12345, 99999, -7, 45065])
def test_unknown_codes_retry_with_bounded_attempts(errcode: int) -> None:
    assert disposition(errcode) is D.RETRY
    assert disposition(errcode, "token") is D.RETRY
    assert describe(errcode) == f"unknown errcode {errcode}"


def test_transport_codes_retry() -> None:
    for cls in (TransportError, NotSent, OutcomeUnknown):
        assert disposition(cls.errcode_value) is D.RETRY
        assert not describe(cls.errcode_value).startswith("unknown")


def test_every_known_code_has_a_meaning() -> None:
    for code in known_codes():
        text = describe(code)
        assert text and not text.startswith("unknown errcode")
    assert describe(45009) == "daily quota reached"
    assert set(SEND_TABLE) <= set(known_codes())


@pytest.mark.parametrize(
    ("errcode", "at_least_s"),
    [(89501, 600.0), (89503, 600.0), (89506, 86_400.0), (89507, 3_600.0), (40164, 60.0)],
)
def test_config_pauses_last_as_long_as_the_code_says(errcode: int, at_least_s: float) -> None:
    assert config_pause_s(errcode) >= at_least_s
    assert disposition(errcode, "token") is D.CONFIG


def test_a_token_endpoint_that_is_not_wechat_is_config_not_a_retry() -> None:
    assert disposition(BadTokenEndpoint.errcode_value, "token") is D.CONFIG
