"""WeChat errcode -> disposition (docs/wechat-api.md §4, docs/architecture.md §5.4).

Branch on errcode only: errmsg wording changes and carries a `rid`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from wxgate.errors import BadTokenEndpoint, Disposition, NotSent, OutcomeUnknown, TransportError

Context = Literal["send", "token"]

_OK = Disposition.OK
_REFRESH = Disposition.REFRESH_TOKEN
_RETRY = Disposition.RETRY
_THROTTLE = Disposition.THROTTLE
_DROP = Disposition.DROP
_CONFIG = Disposition.CONFIG


class _Entry(NamedTuple):
    send: Disposition  # answer from a message API (template/send, subscribe/send)
    token: Disposition  # answer from /cgi-bin/token or /cgi-bin/stable_token
    meaning: str


_TABLE: dict[int, _Entry] = {
    0: _Entry(_OK, _OK, "ok"),
    -1: _Entry(_RETRY, _RETRY, "system busy"),
    # Transport outcomes use negative codes of our own so they can be stored like errcodes.
    TransportError.errcode_value: _Entry(_RETRY, _RETRY, "no usable answer from WeChat"),
    NotSent.errcode_value: _Entry(_RETRY, _RETRY, "request not sent (connect failed)"),
    OutcomeUnknown.errcode_value: _Entry(
        _RETRY, _RETRY, "outcome unknown (timeout, reset or HTTP 5xx)"
    ),
    BadTokenEndpoint.errcode_value: _Entry(
        _CONFIG, _CONFIG, "token endpoint answered HTTP 404 or non-JSON (wechat.base_url?)"
    ),
    # The token is dead: refetch and retry once. From the token endpoint itself 40001 means the
    # AppSecret is wrong, and refetching cannot fix that.
    40001: _Entry(_REFRESH, _CONFIG, "access_token invalid or not latest / AppSecret wrong"),
    40014: _Entry(_REFRESH, _RETRY, "invalid access_token"),
    42001: _Entry(_REFRESH, _RETRY, "access_token expired"),
    40002: _Entry(_CONFIG, _CONFIG, "invalid grant_type"),
    40013: _Entry(_CONFIG, _CONFIG, "invalid appid"),
    40125: _Entry(_CONFIG, _CONFIG, "invalid AppSecret"),
    40164: _Entry(_CONFIG, _CONFIG, "caller IP not in the whitelist"),
    61004: _Entry(_CONFIG, _CONFIG, "caller IP not in the whitelist"),
    40243: _Entry(_CONFIG, _CONFIG, "AppSecret frozen"),
    41002: _Entry(_CONFIG, _CONFIG, "appid missing"),
    41004: _Entry(_CONFIG, _CONFIG, "secret missing"),
    45103: _Entry(_CONFIG, _CONFIG, "API withdrawn"),
    45109: _Entry(_CONFIG, _CONFIG, "API not allowed for this account (withdrawn)"),
    # Permanent for this message or recipient: dead-letter it, keep the app running.
    40003: _Entry(_DROP, _DROP, "invalid openid"),
    41028: _Entry(_DROP, _DROP, "invalid form_id (deprecated API)"),
    41029: _Entry(_DROP, _DROP, "form_id already used (deprecated API)"),
    43004: _Entry(_DROP, _DROP, "recipient does not follow the account"),
    43019: _Entry(_DROP, _DROP, "recipient is in the blacklist"),
    43101: _Entry(_DROP, _DROP, "user refused or cancelled the subscription"),
    50005: _Entry(_DROP, _DROP, "user not following the account"),
    47003: _Entry(_DROP, _DROP, "template data invalid"),
    # Empty body / malformed JSON are bugs on our side, but they show in one message's body:
    # dead-letter that message (with the errcode, for a human) rather than stop the whole app.
    44002: _Entry(_DROP, _DROP, "empty POST body"),
    47001: _Entry(_DROP, _DROP, "malformed JSON/XML body"),
    # A bad template or page is wrong for the messages that name it, not for the app: pausing
    # the app would let one caller's typo stop every other template's traffic. Dead-letter
    # them with the errcode; `requeue --errcode 40037` once the template is fixed.
    40036: _Entry(_DROP, _CONFIG, "invalid template_id length"),
    40037: _Entry(_DROP, _CONFIG, "invalid template_id"),
    41030: _Entry(_DROP, _CONFIG, "invalid page (not in the live mini program)"),
    # The app (or one of its templates) is misconfigured: pause the app, alert, keep messages.
    43100: _Entry(_CONFIG, _CONFIG, "template changed too frequently or gone"),
    48001: _Entry(_CONFIG, _CONFIG, "api unauthorized"),
    48004: _Entry(_CONFIG, _CONFIG, "api banned for violations"),
    50002: _Entry(_CONFIG, _CONFIG, "user limited (account banned)"),
    # Admin confirmation / IP rejected by the admin: paused for longer (CONFIG_PAUSES_S).
    89501: _Entry(_CONFIG, _CONFIG, "token call awaiting the admin's confirmation"),
    89503: _Entry(_CONFIG, _CONFIG, "token call needs the admin's confirmation"),
    89506: _Entry(_CONFIG, _CONFIG, "IP rejected by the admin for 24 h"),
    89507: _Entry(_CONFIG, _CONFIG, "IP rejected by the admin for 1 h"),
    # Quota windows: pause the app until the window resets; not counted as an attempt.
    45009: _Entry(_THROTTLE, _THROTTLE, "daily quota reached"),
    45011: _Entry(_THROTTLE, _THROTTLE, "minute quota reached, retry next minute"),
}

# An errcode we have never seen is most likely a new transient or platform-side condition, so
# it is retried with backoff: the message's bounded max_attempts dead-letters it eventually.
# `drop` would lose messages WeChat might still deliver, and `config` would stall a whole app
# on what may concern one recipient; a bounded retry costs a few calls and loses nothing.
_UNKNOWN = _Entry(_RETRY, _RETRY, "unknown errcode")


# A `config` answer pauses the app for CONFIG_PAUSE_S, unless its code says how long waiting
# must last (docs/wechat-api.md §4). 89501/89503: every token call may send the admin one more
# confirmation request, so the app waits long between tries; 89506/89507: WeChat refuses the
# IP for 24 h / 1 h, and trying sooner only costs calls.
CONFIG_PAUSE_S = 60.0
CONFIG_PAUSES_S: dict[int, float] = {
    89501: 900.0,
    89503: 900.0,
    89506: 86_400.0,
    89507: 3_600.0,
}


def config_pause_s(errcode: int) -> float:
    """How long a `config` answer with `errcode` pauses its app."""
    return CONFIG_PAUSES_S.get(errcode, CONFIG_PAUSE_S)


def disposition(errcode: int, context: Context = "send") -> Disposition:
    """What to do about `errcode`, answered by a message API ("send") or a token endpoint."""
    entry = _TABLE.get(errcode, _UNKNOWN)
    return entry.token if context == "token" else entry.send


def describe(errcode: int) -> str:
    """A short English meaning for dashboards and error bodies."""
    entry = _TABLE.get(errcode)
    return entry.meaning if entry is not None else f"unknown errcode {errcode}"


def known_codes() -> list[int]:
    """Every errcode with an explicit entry (for docs and tests)."""
    return sorted(_TABLE)
