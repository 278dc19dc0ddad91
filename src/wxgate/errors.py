"""The error tree. Every failure wxgate raises is a WxgateError:

WxgateError
├── ConfigError              settings invalid or an app misconfigured
├── ValidationError          bad input from a caller (field + reason)
├── NotFound                 unknown message, batch or app
├── Conflict                 a state change that is no longer allowed (cancel of a sent message)
├── StoreError               the store failed
│   └── StoreUnavailable     the store cannot be reached right now (HTTP 503)
│       └── StoreTimeout     no answer within the request deadline: a write's outcome is unknown
└── WeChatError              WeChat answered with a non-zero errcode (knows its disposition)
    └── TransportError       no usable answer from WeChat
        ├── NotSent          the request never left (connect failed): safe to resend
        └── OutcomeUnknown   the request was written but no answer came: resend with the
                             same client_msg_id so WeChat drops the duplicate
"""

from __future__ import annotations

from enum import StrEnum


class Disposition(StrEnum):
    """What to do about one WeChat answer (docs/architecture.md §1, principle 3)."""

    OK = "ok"
    REFRESH_TOKEN = "refresh_token"
    RETRY = "retry"
    THROTTLE = "throttle"
    DROP = "drop"
    CONFIG = "config"


class WxgateError(Exception):
    """Root of every error wxgate raises."""


class ConfigError(WxgateError):
    """Settings are invalid, or an app is misconfigured on the WeChat side."""


class ValidationError(WxgateError):
    """A caller sent something we cannot accept; `field` names where."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(WxgateError):
    """The thing asked for does not exist."""


class Conflict(WxgateError):
    """The requested state change is no longer possible."""


class StoreError(WxgateError):
    """The store failed to do what was asked."""


class StoreUnavailable(StoreError):
    """The store cannot be reached; callers should get 503 and try again."""


class StoreTimeout(StoreUnavailable):
    """A store call did not complete within its deadline (server.store_timeout_s). The command
    may still reach the store and apply: for a write, the outcome is unknown."""

    def __init__(self, deadline_s: float) -> None:
        super().__init__(f"the store did not answer within {deadline_s:g} s")
        self.deadline_s = deadline_s


class WeChatError(WxgateError):
    """A non-zero errcode from WeChat, with the disposition that decides what happens next."""

    def __init__(
        self, errcode: int, errmsg: str, disposition: Disposition = Disposition.RETRY
    ) -> None:
        super().__init__(f"WeChat errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.disposition = disposition


class TransportError(WeChatError):
    """No usable answer from WeChat; always retried with the same client_msg_id."""

    errcode_value = -2

    def __init__(self, errmsg: str) -> None:
        super().__init__(self.errcode_value, errmsg, Disposition.RETRY)


class NotSent(TransportError):
    """The request never reached WeChat (connect failed or refused)."""

    errcode_value = -3


class OutcomeUnknown(TransportError):
    """The request was written but no answer came (timeout, reset, 5xx)."""

    errcode_value = -4


class TokenAnswer(WeChatError):
    """An errcode from a token endpoint (/cgi-bin/token, stable_token): about the app (its
    secret, IP whitelist, the admin's confirmation), never about one message or recipient."""


class BadTokenEndpoint(WeChatError):
    """A token endpoint answered something that is not WeChat's JSON (an HTTP 404, an HTML
    page): `wechat.base_url` points at the wrong host or path, which no retry can fix."""

    errcode_value = -6

    def __init__(self, errmsg: str) -> None:
        super().__init__(self.errcode_value, errmsg, Disposition.CONFIG)
