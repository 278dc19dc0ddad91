"""The bodies WeChat answers with, worded like the real ones (errmsg ends in " rid: <hex>").

Success bodies are pre-encoded; errors carry a fresh rid so logs can tell requests apart.
"""

from __future__ import annotations

import itertools
import os
import time

import msgspec

ERRMSG: dict[int, str] = {
    -1: "system error",
    40001: (
        "invalid credential, access_token is invalid or not latest, "
        "could get access_token by getStableAccessToken"
    ),
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40014: "invalid access_token",
    40036: "invalid template_id size",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41030: "invalid page",
    42001: "access_token expired",
    43002: "require POST method",
    43004: "require subscribe",
    43019: "require remove blacklist",
    43101: "user refuse to accept the msg",
    44002: "empty post data",
    45009: "api freq out of limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    47001: "data format error",
    47003: "argument invalid!",
    48001: "api unauthorized",
    48004: "api forbidden for irregularities",
    48006: "forbid to clear quota because of reaching the limit",
    50002: "user limited",
    50005: "user unsubscribed",
    40243: "AppSecret is frozen",
    40164: "invalid ip, not in whitelist",
    61004: "access clientip is not registered",
    45103: "This API has been unsupported",
    45109: "The api has been withdrawn",
    89501: "waiting for the administrator's confirmation",
    89503: "this call needs the administrator's confirmation",
    89506: "the administrator rejected this IP for 24 hours",
    89507: "the administrator rejected this IP for 1 hour",
    76003: "invalid cgi_path",
}

# What a wrong secret means at each token endpoint.
SECRET_MSG = "invalid credential, AppSecret error or AppSecret does not belong to this appid"

_rid_seq = itertools.count(int.from_bytes(os.urandom(3), "big"))
_encoder = msgspec.json.Encoder()


def rid() -> str:
    """A request id shaped like WeChat's: time-random-sequence in hex."""
    return f"{int(time.time()):08x}-{os.urandom(4).hex()}-{next(_rid_seq) & 0xFFFFFFFF:08x}"


def error_body(errcode: int, detail: str | None = None) -> bytes:
    msg = detail if detail is not None else ERRMSG.get(errcode, "unknown error")
    return _encoder.encode({"errcode": errcode, "errmsg": f"{msg} rid: {rid()}"})


OK_PREFIX = b'{"errcode":0,"errmsg":"ok","msgid":'
OK_PLAIN = b'{"errcode":0,"errmsg":"ok"}'


def ok_send(msgid: int) -> bytes:
    return OK_PREFIX + str(msgid).encode() + b"}"


def token_body(token: str, expires_in: int) -> bytes:
    return _encoder.encode({"access_token": token, "expires_in": expires_in})


def encode(obj: object) -> bytes:
    return _encoder.encode(obj)


_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def html_error(status: int) -> bytes:
    """What the load balancer in front of WeChat serves when the backend is gone."""
    title = f"{status} {_REASONS.get(status, 'Error')}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
